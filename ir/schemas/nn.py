"""Schemas of the layer ops: convolution, pooling, normalization, dense, softmax (NCHW).

Pads are ``(top, left, bottom, right)`` as in ONNX. Conv, ConvTranspose, Gemm, Scale (and
Add, in elementwise) carry a fused ``activation`` (``""`` = none) with its parameters
``act_alpha``/``act_beta``; ``fc.ir.activations`` lists what they may be. Weights and biases
carry their roles (``fc.ir.schema``), with the axis of the output channels.
"""

from __future__ import annotations

from fc.ir.activations import ACTIVATION_ATTRS, ACTIVATIONS
from fc.ir.schema import BIAS, FLOAT, INT, INTS, PARAM, WEIGHT, Attr, TensorType, register_op
from fc.ir.schemas._rules import broadcast, check, conv_out, norm_axis, pool_out

__all__ = ["ACTIVATION_ATTRS", "FUSED_ACTIVATIONS", "check_activation"]

#: activation name -> its formula ("" = none); derived from ``fc.ir.activations.ACTIVATIONS``
FUSED_ACTIVATIONS: dict[str, str] = {"": "none", **{a.name: a.formula for a in ACTIVATIONS.values()}}


def check_activation(activation: str) -> None:
    """A shape rule's check of a fused ``activation`` attribute."""
    check(activation in FUSED_ACTIVATIONS,
          f"activation {activation!r} not one of {sorted(FUSED_ACTIVATIONS)}")


_LAYER_ROLES = {"W": WEIGHT, "B": BIAS}


def _spatial(attr: str, values: tuple[int, ...], n: int) -> None:
    check(len(values) == n, f"{attr}={list(values)} needs {n} values")


@register_op(
    "Conv",
    inputs=("X", "W", "B?"),
    roles=_LAYER_ROLES,
    weight_axis=0,
    attrs={
        "strides": Attr(INTS, (1, 1)),
        "pads": Attr(INTS, (0, 0, 0, 0)),
        "dilations": Attr(INTS, (1, 1)),
        "group": Attr(INT, 1),
        **ACTIVATION_ATTRS,
    },
)
def conv(x, w, b=None, *, strides, pads, dilations, group, activation, act_alpha, act_beta):
    """2-D convolution (cross-correlation), W is (M, C/group, kH, kW)."""
    check(x.rank == 4 and w.rank == 4, f"X {x.shape} and W {w.shape} must be 4-D (NCHW)")
    _spatial("strides", strides, 2), _spatial("dilations", dilations, 2), _spatial("pads", pads, 4)
    check_activation(activation)
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    check(group >= 1 and c % group == 0,
          f"attribute 'group'={group} does not divide input channels {c}")
    check(cg * group == c, f"W {w.shape} expects {cg * group} input channels, X has {c}")
    check(m % group == 0, f"attribute 'group'={group} does not divide output channels {m}")
    if b is not None:
        check(b.shape == (m,), f"B {b.shape} must be ({m},)")
    ho = conv_out(h, kh, strides[0], pads[0], pads[2], dilations[0])
    wo = conv_out(wd, kw, strides[1], pads[1], pads[3], dilations[1])
    return TensorType((n, m, ho, wo), x.dtype)


@register_op(
    "ConvTranspose",
    inputs=("X", "W", "B?"),
    roles=_LAYER_ROLES,
    weight_axis=1,  # W is (C, M/group, kH, kW): output channels within each group's block
    weight_groups=lambda attrs: attrs["group"],
    attrs={
        "strides": Attr(INTS, (1, 1)),
        "pads": Attr(INTS, (0, 0, 0, 0)),
        "dilations": Attr(INTS, (1, 1)),
        "output_padding": Attr(INTS, (0, 0)),
        "group": Attr(INT, 1),
        **ACTIVATION_ATTRS,
    },
)
def conv_transpose(x, w, b=None, *, strides, pads, dilations, output_padding, group, activation,
                   act_alpha, act_beta):
    """2-D transposed convolution, W is (C, M/group, kH, kW)."""
    check(x.rank == 4 and w.rank == 4, f"X {x.shape} and W {w.shape} must be 4-D (NCHW)")
    _spatial("strides", strides, 2), _spatial("dilations", dilations, 2), _spatial("pads", pads, 4)
    _spatial("output_padding", output_padding, 2)
    check_activation(activation)
    n, c, h, wd = x.shape
    check(w.shape[0] == c, f"W {w.shape} expects {w.shape[0]} input channels, X has {c}")
    check(group >= 1 and c % group == 0,
          f"attribute 'group'={group} does not divide input channels {c}")
    m = w.shape[1] * group
    if b is not None:
        check(b.shape == (m,), f"B {b.shape} must be ({m},)")
    out = []
    for i, size in enumerate((h, wd)):
        o = (strides[i] * (size - 1) + output_padding[i] + dilations[i] * (w.shape[2 + i] - 1) + 1
             - pads[i] - pads[i + 2])
        check(o > 0, f"output size {o} <= 0")
        out.append(o)
    return TensorType((n, m, *out), x.dtype)


@register_op(
    "BatchNormalization",
    inputs=("X", "scale", "B", "mean", "var"),
    roles={"scale": PARAM, "B": PARAM, "mean": PARAM, "var": PARAM},
    attrs={"epsilon": Attr(FLOAT, 1e-5)},
)
def batch_norm(x, scale, b, mean, var, *, epsilon):
    """Inference batch norm over axis 1: (x - mean) / sqrt(var + eps) * scale + B."""
    check(x.rank >= 2, f"X {x.shape} needs a channel axis")
    c = x.shape[1]
    for name, t in (("scale", scale), ("B", b), ("mean", mean), ("var", var)):
        check(t.shape == (c,), f"{name} {t.shape} must be ({c},)")
    return TensorType(x.shape, x.dtype)


@register_op(
    "Gemm",
    inputs=("A", "B", "C?"),
    roles={"B": WEIGHT, "C": BIAS},
    weight_axis=lambda attrs: 0 if attrs["transB"] else 1,  # B' = B.T is (K, N) either way
    attrs={
        "alpha": Attr(FLOAT, 1.0),
        "beta": Attr(FLOAT, 1.0),
        "transA": Attr(INT, 0),
        "transB": Attr(INT, 0),
        **ACTIVATION_ATTRS,
    },
)
def gemm(a, b, c=None, *, alpha, beta, transA, transB, activation, act_alpha, act_beta):
    """alpha * A' @ B' + beta * C, A' = A.T if transA (2-D only)."""
    check(a.rank == 2 and b.rank == 2, f"A {a.shape} and B {b.shape} must be 2-D")
    check_activation(activation)
    m, k = a.shape[::-1] if transA else a.shape
    k2, n = b.shape[::-1] if transB else b.shape
    check(k == k2, f"inner dimensions differ: A' is ({m}, {k}), B' is ({k2}, {n})")
    if c is not None:
        check(broadcast(c.shape, (m, n)) == (m, n), f"C {c.shape} does not broadcast to ({m}, {n})")
    return TensorType((m, n), a.dtype)


@register_op("MatMul", inputs=("A", "B"), roles={"B": WEIGHT}, weight_axis=-1)
def matmul(a, b):
    """numpy.matmul semantics (1-D promotion, batch broadcasting)."""
    check(a.rank >= 1 and b.rank >= 1, "MatMul inputs must be at least 1-D")
    sa = (1, *a.shape) if a.rank == 1 else a.shape
    sb = (*b.shape, 1) if b.rank == 1 else b.shape
    check(sa[-1] == sb[-2], f"inner dimensions differ: {a.shape} @ {b.shape}")
    shape = (*broadcast(sa[:-2], sb[:-2]), sa[-2], sb[-1])
    if a.rank == 1:
        shape = shape[:-2] + shape[-1:]
    if b.rank == 1:
        shape = shape[:-1]
    return TensorType(shape, a.dtype)


def _pool(x, kernel_shape, strides, pads, dilations, ceil_mode):
    check(x.rank == 4, f"X {x.shape} must be 4-D (NCHW)")
    _spatial("kernel_shape", kernel_shape, 2), _spatial("strides", strides, 2)
    _spatial("pads", pads, 4), _spatial("dilations", dilations, 2)
    for i in range(2):
        check(pads[i] < kernel_shape[i] and pads[i + 2] < kernel_shape[i],
              f"pads {list(pads)} must be smaller than kernel_shape {list(kernel_shape)}")
    n, c, h, w = x.shape
    ho = pool_out(h, kernel_shape[0], strides[0], pads[0], pads[2], dilations[0], ceil_mode)
    wo = pool_out(w, kernel_shape[1], strides[1], pads[1], pads[3], dilations[1], ceil_mode)
    return TensorType((n, c, ho, wo), x.dtype)


@register_op(
    "MaxPool",
    inputs=("X",),
    attrs={
        "kernel_shape": Attr(INTS),
        "strides": Attr(INTS, (1, 1)),
        "pads": Attr(INTS, (0, 0, 0, 0)),
        "dilations": Attr(INTS, (1, 1)),
        "ceil_mode": Attr(INT, 0),
    },
)
def max_pool(x, *, kernel_shape, strides, pads, dilations, ceil_mode):
    """Max over windows; padding never wins (it is -inf)."""
    return _pool(x, kernel_shape, strides, pads, dilations, ceil_mode)


@register_op(
    "AveragePool",
    inputs=("X",),
    attrs={
        "kernel_shape": Attr(INTS),
        "strides": Attr(INTS, (1, 1)),
        "pads": Attr(INTS, (0, 0, 0, 0)),
        "ceil_mode": Attr(INT, 0),
        "count_include_pad": Attr(INT, 0),
    },
)
def average_pool(x, *, kernel_shape, strides, pads, ceil_mode, count_include_pad):
    """Mean over windows; count_include_pad=1 divides by the window size including pads
    (never the part of a ceil_mode window beyond the padded input)."""
    return _pool(x, kernel_shape, strides, pads, (1, 1), ceil_mode)


@register_op("GlobalAveragePool", inputs=("X",))
def global_average_pool(x):
    check(x.rank >= 3, f"X {x.shape} needs spatial axes")
    return TensorType(x.shape[:2] + (1,) * (x.rank - 2), x.dtype)


@register_op("GlobalMaxPool", inputs=("X",))
def global_max_pool(x):
    check(x.rank >= 3, f"X {x.shape} needs spatial axes")
    return TensorType(x.shape[:2] + (1,) * (x.rank - 2), x.dtype)


@register_op(
    "LRN",
    inputs=("X",),
    attrs={
        "size": Attr(INT),
        "alpha": Attr(FLOAT, 1e-4),
        "beta": Attr(FLOAT, 0.75),
        "bias": Attr(FLOAT, 1.0),
    },
)
def lrn(x, *, size, alpha, beta, bias):
    """Across-channel LRN: x / (bias + alpha / size * sum(x^2 over size channels)) ** beta."""
    check(x.rank >= 3 and size >= 1, f"X {x.shape}, size {size}")
    return TensorType(x.shape, x.dtype)


@register_op(
    "LayerNormalization",
    inputs=("X", "Scale", "B?"),
    roles={"Scale": PARAM, "B": PARAM},
    attrs={"axis": Attr(INT, -1), "epsilon": Attr(FLOAT, 1e-5)},
)
def layer_norm(x, scale, b=None, *, axis, epsilon):
    """Normalize over axes [axis, rank): (x - mean) / sqrt(var + eps) * Scale + B."""
    norm_axis(axis, x.rank)
    return TensorType(x.shape, x.dtype)


@register_op(
    "InstanceNormalization",
    inputs=("X", "scale", "B"),
    roles={"scale": PARAM, "B": PARAM},
    attrs={"epsilon": Attr(FLOAT, 1e-5)},
)
def instance_norm(x, scale, b, *, epsilon):
    """Normalize each (n, c) plane over its spatial axes, then per-channel scale + B."""
    check(x.rank >= 3, f"X {x.shape} needs spatial axes")
    c = x.shape[1]
    check(scale.shape == (c,) and b.shape == (c,), f"scale {scale.shape}/B {b.shape} must be ({c},)")
    return TensorType(x.shape, x.dtype)


@register_op("Softmax", inputs=("X",), attrs={"axis": Attr(INT, -1)})
def softmax(x, *, axis):
    """exp(x) / sum(exp(x)) along one axis (ONNX opset-13 semantics)."""
    norm_axis(axis, x.rank)
    return TensorType(x.shape, x.dtype)


@register_op("LogSoftmax", inputs=("X",), attrs={"axis": Attr(INT, -1)})
def log_softmax(x, *, axis):
    """x - log(sum(exp(x))) along one axis."""
    norm_axis(axis, x.rank)
    return TensorType(x.shape, x.dtype)


@register_op(
    "Scale",
    inputs=("X", "scale", "B?"),
    roles={"scale": WEIGHT, "B": BIAS},
    weight_axis=0,
    attrs={**ACTIVATION_ATTRS},
)
def scale(x, s, b=None, *, activation, act_alpha, act_beta):
    """Per-channel affine over axis 1: X * scale[c] + B[c] (a BatchNormalization with no
    preceding layer to fold into), with a fused activation."""
    check(x.rank >= 2, f"X {x.shape} needs a channel axis")
    check_activation(activation)
    c = x.shape[1]
    check(s.shape == (c,), f"scale {s.shape} must be ({c},)")
    if b is not None:
        check(b.shape == (c,), f"B {b.shape} must be ({c},)")
    return TensorType(x.shape, x.dtype)
