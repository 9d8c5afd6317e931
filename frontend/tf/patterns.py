"""Keras layers recognised from the ops TensorFlow traced them into.

A frozen Keras 3 graph has no BatchNormalization, LayerNormalization, GELU or swish op:
each is a handful of elementwise ops. Converting those ops one by one is already correct;
recognising the layer gives the IR the one node the hardware and the reconstructors know
(and the trainable IR a batch norm with its four parameters). Each matcher runs in the
converter of the pattern's *last* op, reads the source graph (``ctx.view``) and the IR values
already emitted, and returns the layer's fc value, or ``None`` to let the op convert as it
is. The ops of a recognised pattern were converted already; nothing reads their fc nodes
any more, and the importer's dead-code pass drops them. A pattern whose intermediate result
is read elsewhere is not recognised (those nodes must stay).

The patterns (``x`` is the layer's input; constants are folded values):

- batch norm, ``AddV2(Mul(x, M), B)`` with ``M = Rsqrt(AddV2(var, eps)) [* gamma]`` and
  ``B = beta - mean * M`` (or ``-(mean * M)``): Keras' ``batch_normalization``;
- layer norm, ``AddV2(Mul(x, M), AddV2(Mul(Neg(mean), M), beta))`` with
  ``M = Rsqrt(AddV2(variance, eps)) * gamma``, ``mean = Mean(x, axes)`` and
  ``variance = Mean(SquaredDifference(x, StopGradient(mean)), axes)`` over trailing axes;
- GELU, exact ``Mul(Mul(0.5, x), Erfc(Mul(Neg(x), 1/sqrt(2))))`` and tanh
  ``Mul(Mul(0.5, x), AddV2(1, Tanh(Mul(sqrt(2/pi), AddV2(x, Mul(0.044715, Pow(x, 3)))))))``;
- swish ``Mul(x, Sigmoid(x))`` (Keras' ``Mul(1.0, x)`` before the sigmoid converts to ``x``);
- hard sigmoid ``Relu6(x + 3) / 6`` (or ``* (1/6)``), hard swish ``x * hard_sigmoid(x)``
  and ``x * Relu6(x + 3) / 6``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fc.frontend.tf.context import NCHW_TO_NHWC, NHWC_TO_NCHW, GraphView, TFContext
from fc.ir.core import Node, Value

__all__ = ["batch_norm", "layer_norm", "gelu", "silu", "hard_sigmoid", "hard_swish"]


# -- helpers on the source graph -------------------------------------------------------------
def _node(ctx: TFContext, tensor: str) -> Any | None:
    return ctx.view.producer(tensor)


def _inputs(node: Any) -> list[str]:
    return GraphView.data_inputs(node)


def _scalar(ctx: TFContext, tensor: str) -> float | None:
    c = ctx.view.const_of(tensor)
    return float(c.ravel()[0]) if c is not None and c.size == 1 else None


def _near(a: float | None, b: float, rtol: float = 1e-6) -> bool:
    return a is not None and abs(a - b) <= rtol * abs(b)


def _split(ctx: TFContext, node: Any) -> tuple[str, np.ndarray] | None:
    """``(computed input, constant input)`` of a binary node with exactly one constant."""
    a, b = _inputs(node)
    ca, cb = ctx.view.const_of(a), ctx.view.const_of(b)
    if (ca is None) == (cb is None):
        return None
    return (b, ca) if ca is not None else (a, cb)


def _private(ctx: TFContext, node: Any) -> bool:
    """Whether ``node``'s outputs are read by one node only (the pattern's next op)."""
    return ctx.view.only_reader(node.name) is not None


def _value(ctx: TFContext, tensor: str) -> Value | None:
    entry = ctx.view.env.get(tensor)
    return entry if isinstance(entry, Value) else None


def _channel_first(rank: int) -> tuple[int, ...]:
    """The permutation moving the last axis to 1 (NHWC -> NCHW for rank 4)."""
    return (0, rank - 1, *range(1, rank - 1))


# -- batch norm ------------------------------------------------------------------------------
def _bn_scale(ctx: TFContext, m_tensor: str) -> tuple[np.ndarray, np.ndarray, float, dict[str, str]] | None:
    """``(gamma, var, eps, tensor names)`` of ``M = Rsqrt(AddV2(var, eps)) [* gamma]``."""
    m = _node(ctx, m_tensor)
    gamma = None
    names: dict[str, str] = {}
    if m is not None and m.op == "Mul":
        a, b = _inputs(m)
        ra, rb = _node(ctx, a), _node(ctx, b)
        if ra is not None and ra.op == "Rsqrt":
            m, names["gamma"] = ra, b
        elif rb is not None and rb.op == "Rsqrt":
            m, names["gamma"] = rb, a
        else:
            return None
        gamma = ctx.view.const_of(names["gamma"])
        if gamma is None:
            return None
    if m is None or m.op != "Rsqrt":
        return None
    add = _node(ctx, _inputs(m)[0])
    if add is None or add.op not in ("AddV2", "Add"):
        return None
    var, eps = (ctx.view.const_of(t) for t in _inputs(add))  # Keras: var + eps
    if var is None or eps is None or eps.size != 1:
        return None
    names["moving_variance"] = _inputs(add)[0]
    if gamma is None:
        gamma = np.ones_like(var)
    return gamma, var, float(eps.ravel()[0]), names


def batch_norm(ctx: TFContext) -> Value | None:
    """Keras' inference batch norm ending in this AddV2 (see the module docstring)."""
    if ctx.num_inputs != 2:
        return None
    for i in (0, 1):
        mul, b_tensor = _node(ctx, ctx.input_name(i)), ctx.input_name(1 - i)
        if mul is None or mul.op != "Mul" or ctx.view.const_of(b_tensor) is None:
            continue
        split = _split(ctx, mul)
        if split is None or not _private(ctx, mul):
            continue
        x_tensor, _ = split
        m_tensor = next(t for t in _inputs(mul) if t != x_tensor)
        scale = _bn_scale(ctx, m_tensor)
        shift = _node(ctx, b_tensor)
        if scale is None or shift is None:
            continue
        gamma, var, eps, names = scale
        beta = None
        if shift.op == "Sub":  # beta - mean * M
            beta_t, prod_t = _inputs(shift)
            beta = ctx.view.const_of(beta_t)
            names["beta"] = beta_t
            prod = _node(ctx, prod_t)
        elif shift.op == "Neg":  # -(mean * M)
            prod = _node(ctx, _inputs(shift)[0])
        else:  # (-mean) * M, as Keras writes a batch norm without centre
            prod = shift
        if prod is None or prod.op != "Mul" or m_tensor not in _inputs(prod):
            continue
        mean_t = next((t for t in _inputs(prod) if t != m_tensor), m_tensor)
        neg = _node(ctx, mean_t) if shift is prod else None
        if shift is prod:
            if neg is None or neg.op != "Neg":
                continue
            mean_t = _inputs(neg)[0]
        names["moving_mean"] = mean_t
        mean = ctx.view.const_of(mean_t)
        x = _value(ctx, x_tensor)
        if x is None or x.shape is None or mean is None:
            continue
        made = _emit_bn(ctx, x, gamma, beta, mean, var, eps, names)
        if made is not None:
            return made
    return None


def _param_name(ctx: TFContext, tensor: str | None, fallback: str) -> str:
    """A parameter's weight name: its variable's (Keras' ``"bn/gamma"``) when known."""
    return ctx.view.weight_name(tensor) if tensor else f"{ctx.name}_{fallback}"


def _emit_bn(ctx: TFContext, x: Value, gamma: np.ndarray, beta: np.ndarray | None,
             mean: np.ndarray, var: np.ndarray, eps: float, names: dict[str, str]
             ) -> Value | None:
    rank = len(x.shape)
    shapes = {a.shape for a in (gamma, mean, var) + (() if beta is None else (beta,))}
    if rank < 2 or len(shapes) != 1:
        return None
    pshape = shapes.pop()
    c_last = x.shape[-1]
    if pshape in ((c_last,), (1,) * (rank - 1) + (c_last,)):
        axis = rank - 1
    elif len(pshape) == rank and pshape[1] == x.shape[1] and all(
            d == 1 for i, d in enumerate(pshape) if i != 1):
        axis = 1
    else:
        return None
    c = x.shape[axis]
    dt = np.dtype(x.dtype)
    params = [ctx.const_value(np.ascontiguousarray(a.reshape(c), dt),
                              _param_name(ctx, names.get(n), n))
              for n, a in (("gamma", gamma), ("beta", np.zeros(c, dt) if beta is None else beta),
                           ("moving_mean", mean), ("moving_variance", var))]
    attrs = {"epsilon": eps}
    if axis == 1 or rank == 2:
        return ctx.add_node("BatchNormalization", [x, *params], attrs).output
    perm = NHWC_TO_NCHW if rank == 4 else _channel_first(rank)
    back = NCHW_TO_NHWC if rank == 4 else tuple(np.argsort(perm))
    t = ctx.add_node("Transpose", [x], {"perm": perm}, suffix="to_nchw", final=False).output
    y = ctx.add_node("BatchNormalization", [t, *params], attrs).output
    return ctx.add_node("Transpose", [y], {"perm": tuple(int(p) for p in back)},
                        suffix="to_nhwc", final=False).output


# -- layer norm ------------------------------------------------------------------------------
def layer_norm(ctx: TFContext) -> Value | None:
    """Keras' layer norm ending in this AddV2 (see the module docstring)."""
    if ctx.num_inputs != 2:
        return None
    for i in (0, 1):
        mul2, add1 = _node(ctx, ctx.input_name(i)), _node(ctx, ctx.input_name(1 - i))
        if mul2 is None or add1 is None or mul2.op != "Mul" or add1.op not in ("AddV2", "Add"):
            continue
        found = _layer_norm_parts(ctx, mul2, add1)
        if found is not None:
            return found
    return None


def _layer_norm_parts(ctx: TFContext, mul2: Any, add1: Any) -> Value | None:
    view = ctx.view
    # add_1 = Mul(Neg(mean), M) + beta
    split = _split(ctx, add1)
    if split is None:
        return None
    mul1_t, beta = split
    split_beta = next(t for t in _inputs(add1) if t != mul1_t)
    mul1 = _node(ctx, mul1_t)
    if mul1 is None or mul1.op != "Mul":
        return None
    neg = next((n for n in map(lambda t: _node(ctx, t), _inputs(mul1)) if n is not None
                and n.op == "Neg"), None)
    if neg is None:
        return None
    m_t = next(t for t in _inputs(mul1) if _node(ctx, t) is not neg)
    if m_t not in _inputs(mul2):
        return None
    x_t = next(t for t in _inputs(mul2) if t != m_t)
    mean = _node(ctx, _inputs(neg)[0])
    m = _node(ctx, m_t)
    if mean is None or mean.op != "Mean" or m is None or m.op != "Mul":
        return None
    rs = next((n for n in map(lambda t: _node(ctx, t), _inputs(m)) if n is not None
               and n.op == "Rsqrt"), None)
    if rs is None:
        return None
    gamma = view.const_of(next(t for t in _inputs(m) if _node(ctx, t) is not rs))
    add = _node(ctx, _inputs(rs)[0])
    if gamma is None or add is None or add.op not in ("AddV2", "Add"):
        return None
    split = _split(ctx, add)
    if split is None or split[1].size != 1:
        return None
    variance = _node(ctx, split[0])
    eps = float(split[1].ravel()[0])
    if variance is None or variance.op != "Mean":
        return None
    sq = _node(ctx, _inputs(variance)[0])
    if sq is None or sq.op != "SquaredDifference":
        return None
    x = _value(ctx, x_t)
    same_x = [_value(ctx, _inputs(mean)[0]), _value(ctx, _inputs(sq)[0])]
    if x is None or x.shape is None or any(v is not x for v in same_x):
        return None
    if _node(ctx, _inputs(sq)[1]) is not mean:
        return None
    rank = len(x.shape)
    axes = sorted(int(a) % rank for a in np.ravel(view.const_of(_inputs(mean)[1])))
    axes2 = sorted(int(a) % rank for a in np.ravel(view.const_of(_inputs(variance)[1])))
    if axes != axes2 or axes != list(range(axes[0], rank)):
        return None
    norm_shape = x.shape[axes[0]:]
    size = int(np.prod(norm_shape))
    if gamma.size != size or beta.size != size:  # (parameters broadcast along other axes)
        return None
    g, b = gamma.reshape(norm_shape), beta.reshape(norm_shape)
    dt = np.dtype(x.dtype)
    scale = ctx.const_value(np.ascontiguousarray(g.reshape(norm_shape), dt),
                            _param_name(ctx, next(t for t in _inputs(m) if _node(ctx, t) is not rs),
                                        "gamma"))
    bias = ctx.const_value(np.ascontiguousarray(b, dt), _param_name(ctx, split_beta, "beta"))
    return ctx.add_node("LayerNormalization", [x, scale, bias],
                        {"axis": axes[0], "epsilon": eps}).output


# -- activations -----------------------------------------------------------------------------
def _producer(v: Value | None, op: str) -> Node | None:
    return v.producer if v is not None and v.producer is not None and \
        v.producer.op_type == op else None


def silu(ctx: TFContext, a: Value, b: Value) -> Value | None:
    """``a * sigmoid(a)`` (either order)."""
    for x, s in ((a, b), (b, a)):
        sig = _producer(s, "Sigmoid")
        if sig is not None and sig.inputs[0] is x:
            return ctx.add_node("SiLU", [x]).output
    return None


def _relu6_of_x_plus_3(v: Value | None) -> Value | None:
    """``x`` of ``Clip(Add(x, 3), 0, 6)``."""
    clip = _producer(v, "Clip")
    if clip is None or (clip.attrs["min"], clip.attrs["max"]) != (0.0, 6.0):
        return None
    add = _producer(clip.inputs[0], "Add")
    if add is None or add.attrs["activation"]:
        return None
    for x, c in (add.inputs, add.inputs[::-1]):
        if c.const is not None and c.const.size == 1 and float(c.const.ravel()[0]) == 3.0:
            return x
    return None


def hard_sigmoid(ctx: TFContext, num: Value, divisor: float) -> Value | None:
    """``Relu6(x + 3) / divisor`` with divisor 6: ``HardSigmoid(x, 1/6, 1/2)``."""
    x = _relu6_of_x_plus_3(num)
    if x is None or not _near(divisor, 6.0):
        return None
    return ctx.add_node("HardSigmoid", [x], {"alpha": 1.0 / 6.0, "beta": 0.5}).output


def hard_swish(ctx: TFContext, a: Value, b: Value, divisor: float = 1.0) -> Value | None:
    """``x * HardSigmoid(x)``, or ``(x * Relu6(x + 3)) / 6`` (``divisor`` 6)."""
    for x, h in ((a, b), (b, a)):
        if divisor == 1.0:
            hs = _producer(h, "HardSigmoid")
            if hs is not None and hs.inputs[0] is x and _near(hs.attrs["alpha"], 1 / 6) \
                    and _near(hs.attrs["beta"], 0.5):
                return ctx.add_node("HardSwish", [x]).output
        elif _near(divisor, 6.0) and _relu6_of_x_plus_3(h) is x:
            return ctx.add_node("HardSwish", [x]).output
    return None


def hard_swish_scaled(ctx: TFContext, prod: Value, divisor: float, tensor: str
                      ) -> Value | None:
    """``Mul(x, Relu6(x + 3)) / 6`` or ``* (1/6)``: the product node ``prod``, the source
    tensor ``tensor``. The product must be read by this node only: in the source graph
    (the fc node of this op does not exist yet, so ``prod.uses`` cannot tell)."""
    mul = _producer(prod, "Mul")
    source = _node(ctx, tensor)
    if mul is None or prod.uses or source is None or not _private(ctx, source):
        return None
    return hard_swish(ctx, mul.inputs[0], mul.inputs[1], divisor)


def gelu(ctx: TFContext) -> Value | None:
    """GELU ending in this Mul: ``Mul(Mul(0.5, x), erfc-or-tanh part)``."""
    if ctx.num_inputs != 2:
        return None
    for i in (0, 1):
        half, rest = _node(ctx, ctx.input_name(i)), _node(ctx, ctx.input_name(1 - i))
        if half is None or rest is None or half.op != "Mul":
            continue
        split = _split(ctx, half)
        if split is None or not _near(float(split[1].ravel()[0]) if split[1].size == 1 else None,
                                      0.5):
            continue
        x = _value(ctx, split[0])
        if x is None:
            continue
        if rest.op == "Erfc" and _gelu_erfc_arg(ctx, rest, x):
            return ctx.add_node("Gelu", [x]).output
        if rest.op in ("AddV2", "Add") and _gelu_tanh_arg(ctx, rest, x):
            return ctx.add_node("Gelu", [x], {"approximate": "tanh"}).output
    return None


def _gelu_erfc_arg(ctx: TFContext, erfc: Any, x: Value) -> bool:
    """``Erfc(Mul(Neg(x), 1/sqrt(2)))``."""
    mul = _node(ctx, _inputs(erfc)[0])
    if mul is None or mul.op != "Mul":
        return False
    split = _split(ctx, mul)
    if split is None or split[1].size != 1 or not _near(float(split[1].ravel()[0]),
                                                         1 / math.sqrt(2), 1e-6):
        return False
    neg = _node(ctx, split[0])
    return neg is not None and neg.op == "Neg" and _value(ctx, _inputs(neg)[0]) is x


def _gelu_tanh_arg(ctx: TFContext, add1: Any, x: Value) -> bool:
    """``AddV2(1, Tanh(Mul(sqrt(2/pi), AddV2(x, Mul(0.044715, Pow(x, 3))))))``."""
    split = _split(ctx, add1)
    if split is None or split[1].size != 1 or float(split[1].ravel()[0]) != 1.0:
        return False
    tanh = _node(ctx, split[0])
    if tanh is None or tanh.op != "Tanh":
        return False
    mul = _node(ctx, _inputs(tanh)[0])
    if mul is None or mul.op != "Mul":
        return False
    split = _split(ctx, mul)
    if split is None or split[1].size != 1 or not _near(float(split[1].ravel()[0]),
                                                         math.sqrt(2 / math.pi), 1e-6):
        return False
    inner = _node(ctx, split[0])
    if inner is None or inner.op not in ("AddV2", "Add"):
        return False
    a, b = _inputs(inner)
    for xt, cube_t in ((a, b), (b, a)):
        if _value(ctx, xt) is not x:
            continue
        cube_mul = _node(ctx, cube_t)
        if cube_mul is None or cube_mul.op != "Mul":
            continue
        split = _split(ctx, cube_mul)
        if split is None or split[1].size != 1 or not _near(float(split[1].ravel()[0]), 0.044715):
            continue
        pw = _node(ctx, split[0])
        if pw is not None and pw.op == "Pow" and _value(ctx, _inputs(pw)[0]) is x and \
                _scalar(ctx, _inputs(pw)[1]) == 3.0:
            return True
    return False
