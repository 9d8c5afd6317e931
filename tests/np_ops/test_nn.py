"""Layer kernels (np_ops/nn.py) against torch.nn.functional and onnxruntime.

torch is the oracle where its semantics are ONNX's (symmetric pads, odd LRN sizes);
onnxruntime one-node models where only ONNX defines the behaviour: asymmetric pooling pads,
ceil_mode windows that hang past the input, count_include_pad with those, even LRN sizes,
a dilated MaxPool window that reads only padding, ConvTranspose with asymmetric pads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from onnx import helper

import fc.np_ops
import fc.np_ops.conv
import fc.np_ops.nn
from fc.ir.schemas.nn import FUSED_ACTIVATIONS
from fc.testing import check_close

ort.set_default_logger_severity(3)
T = torch.from_numpy


def rand(seed: int, *shape: int, scale: float = 1.0) -> np.ndarray:
    return np.asarray(np.random.default_rng(seed).standard_normal(shape) * scale, np.float32)


def run_ort(op: str, inputs: Sequence[np.ndarray | None], attrs: dict[str, Any],
            opset: int = 18) -> np.ndarray:
    """``op`` as a one-node ONNX model in onnxruntime; ``None`` inputs are omitted optionals."""
    names = ["" if x is None else f"in{i}" for i, x in enumerate(inputs)]
    feeds = {n: np.asarray(x) for n, x in zip(names, inputs) if x is not None}
    graph = helper.make_graph(
        [helper.make_node(op, names, ["y"], **attrs)], "one_node",
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
         for n, a in feeds.items()],
        [helper.make_tensor_value_info("y", helper.np_dtype_to_tensor_dtype(np.dtype("float32")),
                                       None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 9
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)[0]


def onnx_attrs(**attrs: Any) -> dict[str, Any]:
    """fc attributes as ONNX ones (tuples -> lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in attrs.items()}


# -- Conv ---------------------------------------------------------------------------------

def torch_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, strides=(1, 1),
               pads=(0, 0, 0, 0), dilations=(1, 1), group=1) -> torch.Tensor:
    """Asymmetric pads as an explicit zero F.pad (left, right, top, bottom) first."""
    xt = F.pad(T(x), (pads[1], pads[3], pads[0], pads[2]))
    return F.conv2d(xt, torch.tensor(w), None if b is None else T(b), strides, 0, dilations, group)


# (x shape, w shape, bias, attrs)
CONV_CASES = [
    pytest.param((1, 4, 8, 8), (6, 4, 3, 3), True, {"pads": (1, 1, 1, 1)}, id="3x3_pad1"),
    pytest.param((1, 4, 9, 9), (6, 4, 3, 3), True, {"strides": (2, 2), "pads": (1, 1, 1, 1)},
                 id="stride2"),
    pytest.param((1, 4, 10, 10), (5, 4, 3, 3), True, {"dilations": (2, 2), "pads": (2, 2, 2, 2)},
                 id="dilation2"),
    pytest.param((1, 3, 7, 8), (4, 3, 3, 3), True, {"pads": (1, 0, 2, 1)}, id="asymmetric_pads"),
    pytest.param((2, 6, 7, 7), (8, 3, 3, 3), True, {"group": 2, "pads": (1, 1, 1, 1)}, id="group2"),
    pytest.param((2, 6, 9, 9), (6, 1, 3, 3), True, {"group": 6, "pads": (1, 1, 1, 1)},
                 id="depthwise"),
    pytest.param((1, 4, 9, 8), (8, 1, 3, 3), False,
                 {"group": 4, "strides": (2, 2), "dilations": (1, 2), "pads": (0, 1, 2, 1)},
                 id="depthwise_multiplier2_stride2_asym"),
    pytest.param((2, 8, 5, 6), (4, 8, 1, 1), True, {}, id="1x1"),
    pytest.param((2, 8, 7, 6), (4, 8, 1, 1), True, {"strides": (2, 2)}, id="1x1_stride2"),
    pytest.param((1, 8, 5, 5), (4, 8, 1, 1), True, {"pads": (1, 0, 0, 1)}, id="1x1_padded"),
    pytest.param((2, 8, 5, 6), (6, 4, 1, 1), True, {"group": 2}, id="1x1_group2"),
    pytest.param((1, 4, 5, 5), (4, 1, 1, 1), True, {"group": 4, "strides": (2, 2)},
                 id="1x1_depthwise"),
    pytest.param((1, 4, 6, 6), (5, 4, 3, 3), False, {}, id="no_bias"),
    pytest.param((3, 4, 6, 5), (5, 4, 3, 3), True, {"pads": (1, 1, 1, 1)}, id="batch3"),
    pytest.param((1, 3, 11, 7), (4, 3, 5, 2), True, {"strides": (3, 1), "pads": (2, 1, 1, 0)},
                 id="nonsquare"),
    pytest.param((1, 64, 10, 10), (32, 64, 3, 3), True, {"pads": (1, 1, 1, 1)}, id="k576"),
    pytest.param((1, 3, 30, 30), (8, 3, 7, 7), True, {"strides": (2, 2), "pads": (3, 3, 3, 3)},
                 id="stem_7x7_stride2"),
    pytest.param((1, 4, 3, 3), (2, 4, 3, 3), True, {}, id="kernel_equals_input"),
]


@pytest.mark.parametrize(("xs", "ws", "bias", "attrs"), CONV_CASES)
def test_conv(xs, ws, bias, attrs):
    # Weights at the 1/sqrt(fan_in) scale of real networks keep outputs O(1), where the
    # table's atol is meaningful (K = 576 with unit weights gives |y| ~ 25).
    x, w = rand(0, *xs), rand(1, *ws, scale=float(np.prod(ws[1:])) ** -0.5)
    b = rand(2, ws[0]) if bias else None
    y = fc.np_ops.call("Conv", *([x, w] if b is None else [x, w, b]), **attrs)
    check_close(y, torch_conv(x, w, b, **attrs).numpy(), op="Conv")


@pytest.mark.parametrize(("fold_hw", "cols_bytes"), [
    pytest.param(1, 64 << 20, id="per_image_gemm"),
    pytest.param(1 << 20, 64 << 20, id="batch_folded_gemm"),
    pytest.param(1, 1, id="per_image_chunks"),
    pytest.param(1 << 20, 30_000, id="folded_chunks_of_2"),
])
@pytest.mark.parametrize(("ws", "attrs"), [
    pytest.param((6, 2, 3, 3), {"pads": (1, 1, 1, 1), "group": 2}, id="im2col"),
    pytest.param((6, 2, 1, 1), {"strides": (2, 1), "group": 2}, id="1x1"),
])
def test_grouped_conv_batch_paths(monkeypatch, fold_hw, cols_bytes, ws, attrs):
    """A grouped conv's batch runs as per-image GEMMs or one folded GEMM, in memory-bounded
    chunks."""
    monkeypatch.setattr(fc.np_ops.conv, "_FOLD_HW", fold_hw)
    monkeypatch.setattr(fc.np_ops.conv, "_COLS_BYTES", cols_bytes)
    x, w, b = rand(0, 5, 4, 11, 9), rand(1, *ws), rand(2, ws[0])
    check_close(fc.np_ops.call("Conv", x, w, b, **attrs), torch_conv(x, w, b, **attrs).numpy(),
                op="Conv")


# activation -> (act_alpha, act_beta, torch oracle)
TORCH_ACTIVATIONS: dict[str, tuple[float, float, Callable[[torch.Tensor], torch.Tensor]]] = {
    "": (0.0, 0.0, lambda y: y),
    "relu": (0.0, 0.0, F.relu),
    "clip": (-0.5, 1.5, lambda y: torch.clamp(y, -0.5, 1.5)),
    "leaky_relu": (0.1, 0.0, lambda y: F.leaky_relu(y, 0.1)),
    "elu": (0.7, 0.0, lambda y: F.elu(y, 0.7)),
    "sigmoid": (0.0, 0.0, torch.sigmoid),
    "tanh": (0.0, 0.0, torch.tanh),
    "hard_sigmoid": (0.2, 0.5, lambda y: torch.clamp(0.2 * y + 0.5, 0, 1)),
    "hard_swish": (0.0, 0.0, F.hardswish),
    "silu": (0.0, 0.0, F.silu),
    "gelu": (0.0, 0.0, F.gelu),
    "gelu_tanh": (1.0, 0.0, lambda y: F.gelu(y, approximate="tanh")),
}


def test_activation_table_covers_schema():
    assert set(FUSED_ACTIVATIONS) <= set(TORCH_ACTIVATIONS)


@pytest.mark.parametrize("name", [pytest.param(a, id=a or "none") for a in TORCH_ACTIVATIONS])
def test_conv_fused_activation(name):
    activation = name.removesuffix("_tanh")
    alpha, beta, act = TORCH_ACTIVATIONS[name]
    x, w, b = rand(0, 1, 3, 6, 6, scale=2.0), rand(1, 4, 3, 3, 3), rand(2, 4)
    y = fc.np_ops.call("Conv", x, w, b, pads=(1, 1, 1, 1), activation=activation,
                       act_alpha=alpha, act_beta=beta)
    check_close(y, act(torch_conv(x, w, b, pads=(1, 1, 1, 1))).numpy(), op="Conv")


# -- ConvTranspose ------------------------------------------------------------------------

CONVT_CASES = [
    pytest.param((1, 4, 5, 5), (4, 3, 3, 3), True,
                 {"strides": (2, 2), "pads": (1, 1, 1, 1), "output_padding": (1, 1)},
                 id="stride2_output_padding"),
    pytest.param((2, 4, 5, 6), (4, 3, 3, 3), True, {"group": 2}, id="group2"),
    pytest.param((1, 3, 4, 5), (3, 2, 3, 2), True, {"dilations": (2, 1), "pads": (1, 0, 1, 0)},
                 id="dilation2_nonsquare"),
    pytest.param((1, 4, 6, 6), (4, 1, 3, 3), False, {"group": 4, "strides": (2, 2)},
                 id="depthwise_stride2_nobias"),
    pytest.param((3, 5, 4, 4), (5, 2, 1, 1), True, {"strides": (2, 2)}, id="1x1_stride2_batch3"),
    pytest.param((1, 3, 4, 4), (3, 2, 4, 4), True,
                 {"strides": (2, 3), "pads": (1, 2, 1, 2), "output_padding": (1, 2)},
                 id="kernel4_stride2x3_output_padding"),
]


@pytest.mark.parametrize(("xs", "ws", "bias", "attrs"), CONVT_CASES)
def test_conv_transpose(xs, ws, bias, attrs):
    x, w = rand(3, *xs), rand(4, *ws)
    group = attrs.get("group", 1)
    b = rand(5, ws[1] * group) if bias else None
    y = fc.np_ops.call("ConvTranspose", *([x, w] if b is None else [x, w, b]), **attrs)
    pads = attrs.get("pads", (0, 0, 0, 0))
    ref = F.conv_transpose2d(T(x), T(w), None if b is None else T(b), attrs.get("strides", 1),
                             pads[:2], attrs.get("output_padding", 0), group,
                             attrs.get("dilations", 1))
    check_close(y, ref.numpy(), op="ConvTranspose")


@pytest.mark.parametrize("attrs", [
    pytest.param({"strides": (2, 2), "pads": (0, 1, 2, 0)}, id="asymmetric_pads"),
    pytest.param({"strides": (2, 1), "pads": (1, 0, 0, 1), "output_padding": (1, 0),
                  "dilations": (1, 2)}, id="asym_pads_output_padding_dilation"),
])
def test_conv_transpose_asymmetric_pads_vs_ort(attrs):
    x, w, b = rand(6, 1, 4, 5, 4), rand(7, 4, 3, 3, 3), rand(8, 3)
    y = fc.np_ops.call("ConvTranspose", x, w, b, **attrs)
    check_close(y, run_ort("ConvTranspose", [x, w, b], onnx_attrs(**attrs)), op="ConvTranspose")


@pytest.mark.parametrize("name", ["relu", "leaky_relu"])
def test_conv_transpose_fused_activation(name):
    alpha, beta, act = TORCH_ACTIVATIONS[name]
    x, w, b = rand(9, 1, 2, 4, 4), rand(10, 2, 3, 3, 3), rand(11, 3)
    y = fc.np_ops.call("ConvTranspose", x, w, b, strides=(2, 2), activation=name,
                       act_alpha=alpha, act_beta=beta)
    check_close(y, act(F.conv_transpose2d(T(x), T(w), T(b), 2)).numpy(), op="ConvTranspose")


# -- BatchNormalization, Gemm, MatMul ---------------------------------------------------------

@pytest.mark.parametrize("shape", [pytest.param((2, 5, 4, 3), id="nchw"),
                                   pytest.param((3, 5), id="nc"),
                                   pytest.param((2, 5, 7), id="ncl")])
def test_batch_norm(shape):
    c = shape[1]
    x = rand(12, *shape)
    scale, b, mean = rand(13, c), rand(14, c), rand(15, c, scale=0.5)
    var = np.abs(rand(16, c)) + 0.1
    y = fc.np_ops.call("BatchNormalization", x, scale, b, mean, var, epsilon=1e-3)
    ref = F.batch_norm(T(x), T(mean), T(var), T(scale), T(b), training=False, eps=1e-3)
    check_close(y, ref.numpy(), op="BatchNormalization")


GEMM_CASES = [
    pytest.param((4, 6), (6, 5), (5,), {}, id="c_vector"),
    pytest.param((6, 4), (6, 5), (4, 5), {"transA": 1}, id="transA_c_matrix"),
    pytest.param((4, 6), (5, 6), (1, 5), {"transB": 1}, id="transB_c_row"),
    pytest.param((6, 4), (5, 6), (4, 1), {"transA": 1, "transB": 1}, id="transAB_c_column"),
    pytest.param((4, 6), (6, 5), (), {"alpha": 0.5, "beta": 2.0}, id="alpha_beta_c_scalar"),
    pytest.param((4, 6), (6, 5), (1,), {"beta": -1.0}, id="c_one_element"),
    pytest.param((4, 6), (6, 5), None, {"alpha": 3.0}, id="no_c"),
    pytest.param((4, 6), (6, 5), (5,), {"beta": 0.0}, id="beta0"),
    pytest.param((3, 16), (40, 16), (40,), {"transB": 1, "alpha": 2.0}, id="few_rows_wide"),
    pytest.param((16, 2), (16, 40), (2, 40), {"transA": 1}, id="few_rows_wide_transA"),
]


@pytest.mark.parametrize(("sa", "sb", "sc", "attrs"), GEMM_CASES)
def test_gemm(sa, sb, sc, attrs):
    a, b = rand(17, *sa), rand(18, *sb)
    c = None if sc is None else rand(19, *sc)
    y = fc.np_ops.call("Gemm", *([a, b] if c is None else [a, b, c]), **attrs)
    at = T(a).T if attrs.get("transA") else T(a)
    bt = T(b).T if attrs.get("transB") else T(b)
    ref = attrs.get("alpha", 1.0) * (at @ bt)
    if c is not None:
        ref = ref + attrs.get("beta", 1.0) * T(c)
    check_close(y, ref.numpy(), op="Gemm")


@pytest.mark.parametrize("name", ["relu", "tanh"])
def test_gemm_fused_activation(name):
    alpha, beta, act = TORCH_ACTIVATIONS[name]
    a, b, c = rand(20, 3, 8), rand(21, 6, 8), rand(22, 6)
    y = fc.np_ops.call("Gemm", a, b, c, transB=1, activation=name, act_alpha=alpha, act_beta=beta)
    check_close(y, act(F.linear(T(a), T(b), T(c))).numpy(), op="Gemm")


@pytest.mark.parametrize(("sa", "sb"), [
    pytest.param((4, 6), (6, 5), id="2d"),
    pytest.param((2, 6), (6, 30), id="2d_few_rows_wide"),
    pytest.param((3, 4, 6), (3, 6, 5), id="batched"),
    pytest.param((2, 1, 4, 6), (3, 6, 5), id="broadcast_batch"),
    pytest.param((6,), (3, 6, 5), id="1d_left"),
    pytest.param((3, 4, 6), (6,), id="1d_right"),
    pytest.param((6,), (6,), id="1d_both"),
])
def test_matmul(sa, sb):
    a, b = rand(23, *sa), rand(24, *sb)
    y = fc.np_ops.call("MatMul", a, b)
    assert isinstance(y, np.ndarray)
    check_close(y, torch.matmul(T(a), T(b)).numpy(), op="MatMul")


# -- pooling --------------------------------------------------------------------------------

@pytest.mark.parametrize(("xs", "attrs"), [
    pytest.param((1, 2, 8, 8), {"kernel_shape": (2, 2), "strides": (2, 2)}, id="2x2_stride2"),
    pytest.param((2, 3, 9, 9), {"kernel_shape": (3, 3), "strides": (2, 2), "pads": (1, 1, 1, 1)},
                 id="3x3_stride2_pad1"),
    pytest.param((1, 2, 8, 7), {"kernel_shape": (3, 3), "strides": (2, 2), "ceil_mode": 1},
                 id="ceil_partial_last_window"),
    pytest.param((1, 2, 8, 7), {"kernel_shape": (3, 3), "strides": (2, 2), "ceil_mode": 0},
                 id="floor_drops_last_window"),
    pytest.param((1, 2, 10, 9), {"kernel_shape": (3, 2), "dilations": (2, 2), "pads": (1, 1, 1, 1)},
                 id="dilation2"),
    pytest.param((1, 2, 11, 10), {"kernel_shape": (3, 3), "strides": (3, 3), "dilations": (2, 1),
                                  "pads": (1, 1, 1, 1), "ceil_mode": 1}, id="dilation_ceil"),
])
def test_max_pool(xs, attrs):
    x = rand(25, *xs)
    y = fc.np_ops.call("MaxPool", x, **attrs)
    pads = attrs.get("pads", (0, 0, 0, 0))
    ref = F.max_pool2d(T(x), attrs["kernel_shape"], attrs.get("strides", 1), pads[:2],
                       attrs.get("dilations", 1), bool(attrs.get("ceil_mode", 0)))
    check_close(y, ref.numpy(), op="MaxPool")


@pytest.mark.parametrize(("xs", "attrs"), [
    pytest.param((1, 2, 8, 7), {"kernel_shape": (3, 3), "strides": (2, 2), "pads": (0, 1, 2, 0)},
                 id="asymmetric_pads"),
    pytest.param((1, 2, 7, 8), {"kernel_shape": (3, 2), "strides": (2, 3), "pads": (2, 0, 1, 1),
                                "ceil_mode": 1}, id="asymmetric_pads_ceil"),
    # width 1, pads 1+1, taps 2 apart: the first/last windows read padding only.
    pytest.param((1, 1, 4, 1), {"kernel_shape": (1, 2), "pads": (0, 1, 0, 1), "dilations": (1, 2),
                                "strides": (1, 2)}, id="window_of_padding_only"),
])
def test_max_pool_vs_ort(xs, attrs):
    x = rand(26, *xs)
    y = fc.np_ops.call("MaxPool", x, **attrs)
    check_close(y, run_ort("MaxPool", [x], onnx_attrs(**attrs)), op="MaxPool")


def _random_max_pool_cases(count: int, seed: int) -> list[tuple[tuple[int, ...], dict]]:
    """Seeded MaxPool configurations: kernels 1-4, strides 1-3, dilations 1-3, every pad from
    0 to kernel-1 on its own (asymmetric), ceil_mode both ways; inputs from the smallest that
    hold one padded window."""
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        k = tuple(int(v) for v in rng.integers(1, 5, 2))
        st = tuple(int(v) for v in rng.integers(1, 4, 2))
        dil = tuple(int(v) for v in rng.integers(1, 4, 2))
        pads = tuple(int(rng.integers(0, k[i % 2])) for i in range(4))
        # from 1 pixel up: small inputs have windows that read padding only
        span = [dil[i] * (k[i] - 1) + 1 - pads[i] - pads[i + 2] for i in range(2)]
        hw = tuple(int(max(1, span[i]) + rng.integers(0, 6)) for i in range(2))
        attrs = {"kernel_shape": k, "strides": st, "dilations": dil, "pads": pads,
                 "ceil_mode": int(rng.integers(0, 2))}
        cases.append(((2, 3) + hw, attrs))
    return cases


@pytest.mark.parametrize("band_bytes", [pytest.param(1, id="one_row_bands"),
                                        pytest.param(1 << 30, id="whole_images")])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_max_pool_random_configurations_vs_ort(monkeypatch, band_bytes, layout):
    """MaxPool clips its taps to the input instead of padding it (``_max_pool_unpadded``):
    on 80 random configurations (asymmetric pads, dilations, strides, ceil_mode), NCHW and
    channels-last inputs, whole images and one-row bands, the values onnxruntime gives (its
    padding is -FLT_MAX too: a window of padding only gives -FLT_MAX)."""
    monkeypatch.setattr(fc.np_ops.nn, "_POOL_BAND_BYTES", band_bytes)
    for i, (xs, attrs) in enumerate(_random_max_pool_cases(80, 7)):
        x = rand(100 + i, *xs)
        if layout == "channels_last":
            x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
        y = fc.np_ops.call("MaxPool", x, **attrs)
        ref = run_ort("MaxPool", [np.ascontiguousarray(x)], onnx_attrs(**attrs))
        assert y.shape == ref.shape, (xs, attrs)
        np.testing.assert_array_equal(y, ref, err_msg=f"{xs} {attrs}")


AVG_CASES = [
    pytest.param((1, 2, 8, 8), {"kernel_shape": (2, 2), "strides": (2, 2)}, id="2x2_stride2"),
    pytest.param((2, 3, 7, 7), {"kernel_shape": (3, 3), "pads": (1, 1, 1, 1),
                                "count_include_pad": 1}, id="pad1_include_pad"),
    pytest.param((2, 3, 7, 7), {"kernel_shape": (3, 3), "pads": (1, 1, 1, 1),
                                "count_include_pad": 0}, id="pad1_exclude_pad"),
    pytest.param((1, 2, 8, 7), {"kernel_shape": (3, 3), "strides": (2, 2), "ceil_mode": 1},
                 id="ceil_partial_window"),
    pytest.param((1, 2, 6, 6), {"kernel_shape": (3, 3), "strides": (2, 2), "pads": (1, 1, 1, 1),
                                "ceil_mode": 1, "count_include_pad": 1}, id="ceil_pads_include_pad"),
    pytest.param((1, 2, 6, 6), {"kernel_shape": (3, 3), "strides": (2, 2), "pads": (1, 1, 1, 1),
                                "ceil_mode": 1, "count_include_pad": 0}, id="ceil_pads_exclude_pad"),
    pytest.param((1, 2, 9, 8), {"kernel_shape": (3, 2), "strides": (2, 1), "pads": (1, 1, 1, 1),
                                "count_include_pad": 1}, id="nonsquare_kernel"),
]


@pytest.mark.parametrize(("xs", "attrs"), AVG_CASES)
def test_average_pool(xs, attrs):
    x = rand(27, *xs)
    y = fc.np_ops.call("AveragePool", x, **attrs)
    pads = attrs.get("pads", (0, 0, 0, 0))
    ref = F.avg_pool2d(T(x), attrs["kernel_shape"], attrs.get("strides", 1), pads[:2],
                       bool(attrs.get("ceil_mode", 0)), bool(attrs.get("count_include_pad", 0)))
    check_close(y, ref.numpy(), op="AveragePool")


@pytest.mark.parametrize(("xs", "attrs"), [
    pytest.param((1, 2, 8, 7), {"kernel_shape": (3, 3), "strides": (2, 2), "pads": (0, 1, 2, 0),
                                "count_include_pad": 1}, id="asym_include_pad"),
    pytest.param((1, 2, 8, 7), {"kernel_shape": (3, 3), "strides": (2, 2), "pads": (0, 1, 2, 0),
                                "count_include_pad": 0}, id="asym_exclude_pad"),
    pytest.param((1, 2, 5, 3), {"kernel_shape": (4, 4), "strides": (3, 3), "pads": (1, 2, 3, 0),
                                "ceil_mode": 1, "count_include_pad": 1}, id="asym_ceil_include_pad"),
    pytest.param((1, 2, 2, 7), {"kernel_shape": (4, 4), "strides": (3, 3), "pads": (3, 0, 0, 1),
                                "ceil_mode": 1, "count_include_pad": 0}, id="asym_ceil_exclude_pad"),
])
def test_average_pool_vs_ort(xs, attrs):
    x = rand(28, *xs)
    y = fc.np_ops.call("AveragePool", x, **attrs)
    check_close(y, run_ort("AveragePool", [x], onnx_attrs(**attrs)), op="AveragePool")


@pytest.mark.parametrize(("include_pad", "expected"), [
    # Ones, 4 wide, pads 1+1, window 3, stride 2, ceil_mode: windows over padded positions
    # [0,3), [2,5), [4,7); the last holds input 3, one pad and one position past the padded
    # input, which is never counted (a full-window divisor would give 1/3).
    pytest.param(1, [2 / 3, 1, 1 / 2], id="include_pad"),
    pytest.param(0, [1, 1, 1], id="exclude_pad"),
])
def test_average_pool_divisor(include_pad, expected):
    x = np.ones((1, 1, 1, 4), np.float32)
    y = fc.np_ops.call("AveragePool", x, kernel_shape=(1, 3), strides=(1, 2), pads=(0, 1, 0, 1),
                       ceil_mode=1, count_include_pad=include_pad)
    check_close(y, np.array(expected, np.float32).reshape(1, 1, 1, 3), op="AveragePool")
    check_close(y, run_ort("AveragePool", [x], {"kernel_shape": [1, 3], "strides": [1, 2],
                                                "pads": [0, 1, 0, 1], "ceil_mode": 1,
                                                "count_include_pad": include_pad}))


@pytest.mark.parametrize("shape", [pytest.param((2, 3, 5, 4), id="4d"),
                                   pytest.param((2, 3, 7), id="3d")])
def test_global_pools(shape):
    x = rand(29, *shape)
    axes = tuple(range(2, len(shape)))
    check_close(fc.np_ops.call("GlobalAveragePool", x), T(x).mean(axes, keepdim=True).numpy(),
                op="GlobalAveragePool")
    check_close(fc.np_ops.call("GlobalMaxPool", x), T(x).amax(axes, keepdim=True).numpy(),
                op="GlobalMaxPool")


# -- normalization, softmax ---------------------------------------------------------------

@pytest.mark.parametrize("size", [3, 5])
def test_lrn(size):
    x = rand(30, 2, 7, 4, 5, scale=2.0)
    y = fc.np_ops.call("LRN", x, size=size, alpha=1e-3, beta=0.75, bias=2.0)
    ref = F.local_response_norm(T(x), size, alpha=1e-3, beta=0.75, k=2.0)
    check_close(y, ref.numpy(), op="LRN")


def test_lrn_even_size():
    """ONNX sums channels [c - (size-1)//2, c + size//2], torch [c - size//2, c + (size-1)//2]:
    the ONNX window is torch's on the channel-reversed input. (onnxruntime rejects even sizes
    and the ONNX reference evaluator's LRN loops over the batch axis, so neither can judge.)"""
    x = rand(31, 2, 6, 3, 3, scale=3.0)
    y = fc.np_ops.call("LRN", x, size=4, alpha=0.1, beta=0.75, bias=1.0)
    ref = F.local_response_norm(T(x).flip(1), 4, alpha=0.1, beta=0.75, k=1.0).flip(1)
    check_close(y, ref.numpy(), op="LRN")
    torch_window = F.local_response_norm(T(x), 4, alpha=0.1, beta=0.75, k=1.0).numpy()
    assert not np.allclose(y, torch_window, atol=1e-3)  # the case really tells them apart


@pytest.mark.parametrize(("axis", "bias"), [pytest.param(-1, True, id="last_axis"),
                                            pytest.param(1, True, id="axis1"),
                                            pytest.param(-2, False, id="axis-2_no_bias")])
def test_layer_norm(axis, bias):
    x = rand(32, 2, 3, 4, 5, scale=3.0) + 1.0
    norm = x.shape[axis:]
    scale, b = rand(33, *norm), (rand(34, *norm) if bias else None)
    y = fc.np_ops.call("LayerNormalization", *([x, scale] if b is None else [x, scale, b]),
                       axis=axis, epsilon=1e-5)
    ref = F.layer_norm(T(x), norm, T(scale), None if b is None else T(b), eps=1e-5)
    check_close(y, ref.numpy(), op="LayerNormalization")


@pytest.mark.parametrize("shape", [pytest.param((2, 3, 5, 4), id="4d"),
                                   pytest.param((2, 3, 9), id="3d")])
def test_instance_norm(shape):
    x = rand(35, *shape, scale=2.0) + 0.5
    scale, b = rand(36, shape[1]), rand(37, shape[1])
    y = fc.np_ops.call("InstanceNormalization", x, scale, b, epsilon=1e-5)
    ref = F.instance_norm(T(x), weight=T(scale), bias=T(b), eps=1e-5)
    check_close(y, ref.numpy(), op="InstanceNormalization")


@pytest.mark.parametrize(("op", "fn"), [pytest.param("Softmax", F.softmax, id="softmax"),
                                        pytest.param("LogSoftmax", F.log_softmax, id="log_softmax")])
@pytest.mark.parametrize("axis", [1, -1])
def test_softmax(op, fn, axis):
    x = rand(38, 3, 5, 7, scale=30.0)  # exp would overflow without the max shift
    y = fc.np_ops.call(op, x, axis=axis)
    check_close(y, fn(T(x), dim=axis).numpy(), op=op)


# -- kernels leave their inputs alone -------------------------------------------------------

IMMUTABLE_CASES = [
    pytest.param("Conv", [(1, 4, 6, 6), (6, 4, 3, 3), (6,)],
                 {"pads": (1, 1, 1, 1), "activation": "relu"}, id="Conv"),
    pytest.param("Conv", [(1, 4, 6, 6), (4, 1, 3, 3), (4,)], {"group": 4, "activation": "clip",
                 "act_alpha": 0.0, "act_beta": 1.0}, id="Conv_depthwise"),
    pytest.param("Conv", [(1, 4, 6, 6), (6, 4, 1, 1)], {}, id="Conv_1x1"),
    pytest.param("ConvTranspose", [(1, 4, 3, 3), (4, 2, 3, 3), (2,)], {"strides": (2, 2)},
                 id="ConvTranspose"),
    pytest.param("BatchNormalization", [(2, 3, 4, 4), (3,), (3,), (3,), (3,)], {}, id="BN"),
    pytest.param("Gemm", [(3, 4), (4, 5), (5,)], {"activation": "relu"}, id="Gemm"),
    pytest.param("MaxPool", [(1, 2, 5, 5)], {"kernel_shape": (3, 3), "pads": (1, 1, 1, 1)},
                 id="MaxPool"),
    pytest.param("AveragePool", [(1, 2, 5, 5)], {"kernel_shape": (2, 2)}, id="AveragePool"),
    pytest.param("LRN", [(1, 4, 3, 3)], {"size": 3}, id="LRN"),
    pytest.param("LayerNormalization", [(2, 5), (5,), (5,)], {}, id="LayerNorm"),
    pytest.param("InstanceNormalization", [(2, 3, 4), (3,), (3,)], {}, id="InstanceNorm"),
    pytest.param("Softmax", [(2, 5)], {}, id="Softmax"),
    pytest.param("LogSoftmax", [(2, 5)], {}, id="LogSoftmax"),
]


@pytest.mark.parametrize(("op", "shapes", "attrs"), IMMUTABLE_CASES)
def test_kernel_leaves_inputs_unchanged(op, shapes, attrs):
    inputs = [np.abs(rand(40 + i, *s)) + 0.5 for i, s in enumerate(shapes)]
    before = [x.copy() for x in inputs]
    y = fc.np_ops.call(op, *inputs, **attrs)
    for i, (x, b) in enumerate(zip(inputs, before)):
        np.testing.assert_array_equal(x, b, err_msg=f"{op} modified input {i}")
    assert not any(np.shares_memory(y, x) for x in inputs), f"{op} returned a view of an input"


# -- layouts and dtypes ---------------------------------------------------------------------

@pytest.mark.parametrize(("ws", "attrs"), [
    pytest.param((6, 4, 3, 3), {"pads": (1, 1, 1, 1)}, id="im2col"),
    pytest.param((6, 4, 1, 1), {}, id="1x1"),
    pytest.param((4, 1, 3, 3), {"group": 4, "strides": (2, 2)}, id="depthwise"),
])
def test_conv_strided_view_input(ws, attrs):
    """Inputs may be views (Transpose/Slice kernels return them): a flipped, transposed x."""
    x = rand(50, 1, 7, 6, 4).transpose(0, 3, 1, 2)[:, :, ::-1]
    w = rand(51, *ws)
    y = fc.np_ops.call("Conv", x, w, **attrs)
    check_close(y, torch_conv(np.ascontiguousarray(x), w, None, **attrs).numpy(), op="Conv")


W64 = rand(53, 2, 3, 3, 3).astype(np.float64)


@pytest.mark.parametrize(("op", "weights", "attrs", "torch_fn"), [
    pytest.param("Conv", [W64], {"pads": (1, 1, 1, 1)},
                 lambda x: F.conv2d(x, torch.tensor(W64), padding=1), id="Conv"),
    pytest.param("MaxPool", [], {"kernel_shape": (3, 3), "pads": (1, 1, 1, 1)},
                 lambda x: F.max_pool2d(x, 3, 1, 1), id="MaxPool"),
    pytest.param("AveragePool", [], {"kernel_shape": (3, 3), "pads": (1, 1, 1, 1)},
                 lambda x: F.avg_pool2d(x, 3, 1, 1, count_include_pad=False), id="AveragePool"),
    pytest.param("Softmax", [], {"axis": 1}, lambda x: F.softmax(x, dim=1), id="Softmax"),
])
def test_float64_stays_float64(op, weights, attrs, torch_fn):
    x = rand(52, 1, 3, 5, 5).astype(np.float64)
    check_close(fc.np_ops.call(op, x, *weights, **attrs), torch_fn(T(x)).numpy(), op=op)


@pytest.mark.parametrize(("rows", "spin", "tiles"), [
    pytest.param(2, False, True, id="few_rows_pool_tiles"),
    pytest.param(96, False, True, id="many_rows_pool_tiles"),
    pytest.param(2, True, False, id="few_rows_worker_spinning_blas_threads"),
    pytest.param(96, True, False, id="many_rows_worker_spinning_blas_threads"),
])
def test_matmul2d_who_runs_the_product(monkeypatch, rows, spin, tiles):
    """A 2-D product large enough is cut into tiles for fc's pool (BLAS on one thread),
    except within fc.np_ops.conv's _SPIN_SECONDS of a multi-threaded GEMM, when OpenBLAS's
    idle worker still spins: then one product on BLAS's threads. Either way numpy's
    product on the exact data, the bits of an untiled one."""
    import time

    nn = fc.np_ops.nn
    if fc.np_ops._blas.blas_threads() is None:
        pytest.skip("numpy's BLAS is not an OpenBLAS whose threads fc can scope")
    monkeypatch.setattr(fc.np_ops._parallel, "num_workers", lambda: 3)
    monkeypatch.setattr(fc.np_ops.conv, "_SPIN_SECONDS", 3600.0)
    monkeypatch.setattr(fc.np_ops._blas, "_last_threaded",
                        time.perf_counter() if spin else float("-inf"))
    calls = []
    real = nn._matmul2d_tiles
    monkeypatch.setattr(nn, "_matmul2d_tiles", lambda *a: calls.append(a[2]) or real(*a))
    a, b = rand(60, rows, 300), rand(61, 300, 400)
    y = fc.np_ops.call("MatMul", a, b)
    assert len(calls) == (1 if tiles else 0)
    want = np.ascontiguousarray(np.matmul(b.T, a.T).T) if rows <= 32 else np.matmul(a, b)
    assert y.tobytes() == want.tobytes()


@pytest.mark.parametrize("spin", [False, True])
def test_max_pool_stays_on_the_caller_while_blas_spins(monkeypatch, spin):
    """The C MaxPool splits its output rows over fc's pool, but not within _SPIN_SECONDS
    of a multi-threaded GEMM (OpenBLAS's idle worker spins): the same values either way
    (torch's)."""
    import time

    nn = fc.np_ops.nn
    if not nn._C_MAX_POOL:
        pytest.skip("fc.np_ops._epilogue has no max_pool")
    monkeypatch.setattr(fc.np_ops._parallel, "num_workers", lambda: 3)
    monkeypatch.setattr(fc.np_ops.conv, "_SPIN_SECONDS", 3600.0)
    monkeypatch.setattr(fc.np_ops._blas, "_last_threaded",
                        time.perf_counter() if spin else float("-inf"))
    seen = []
    real = nn.parallel_for
    monkeypatch.setattr(nn, "parallel_for", lambda fn, n, nbytes, **k: seen.append(nbytes)
                        or real(fn, n, nbytes, **k))
    x = np.ascontiguousarray(rand(62, 2, 9, 40, 40).transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    y = fc.np_ops.call("MaxPool", x, kernel_shape=(3, 3), strides=(2, 2), pads=(1, 1, 1, 1))
    assert (seen == [0]) if spin else (len(seen) == 1 and seen[0] >= x.nbytes)
    check_close(y, F.max_pool2d(T(x), 3, 2, 1).numpy(), op="MaxPool")
