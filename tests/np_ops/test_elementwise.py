"""Elementwise, variadic, reduction and Cast kernels against torch and onnxruntime.

torch is the oracle for the maths (activations, transcendentals, broadcasting binary ops);
onnxruntime one-node models for ONNX-specific semantics (Clip bounds, PRelu slope
broadcasting, variadic Max/Min/Sum/Mean, Reduce* axes/keepdims, Cast, integer Div).
"""

from __future__ import annotations

import math
import platform
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from onnx import helper

import fc.np_ops
from fc.errors import FcError, SchemaError
from fc.ir import Graph
from fc.ir.schema import all_schemas
from fc.ir.schemas.elementwise import BINARY_OPS, REDUCE_OPS, UNARY_OPS, VARIADIC_OPS
from fc.np_ops.activation import erf, gelu
from fc.testing import check_close

# -- helpers ----------------------------------------------------------------------------


def run_kernel(op: str, *inputs: np.ndarray, **attrs: Any) -> np.ndarray:
    """fc's kernel via ``fc.np_ops.call``, asserting it warns about nothing (overflow, 1/0),
    leaves its inputs untouched and returns an ndarray."""
    before = [np.array(x, copy=True) for x in inputs]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = fc.np_ops.call(op, *inputs, **attrs)
    for i, (x, b) in enumerate(zip(inputs, before)):
        np.testing.assert_array_equal(x, b, err_msg=f"{op} modified input {i}")
    assert isinstance(y, np.ndarray), f"{op} returned {type(y).__name__}"
    return y


def run_torch(fn: Callable[..., torch.Tensor], *inputs: np.ndarray) -> np.ndarray:
    return fn(*(torch.from_numpy(np.array(x)) for x in inputs)).numpy()


def run_ort(op: str, inputs: Sequence[np.ndarray | None], attrs: dict[str, Any] | None = None,
            *, out_dtype: Any = None, opset: int = 18) -> np.ndarray:
    """One-node ONNX model of ``op`` run in onnxruntime; ``None`` inputs are omitted optionals."""
    names = ["" if x is None else f"in{i}" for i, x in enumerate(inputs)]
    feeds = {n: np.asarray(x) for n, x in zip(names, inputs) if x is not None}
    out_dtype = np.dtype(out_dtype or next(iter(feeds.values())).dtype)
    graph = helper.make_graph(
        [helper.make_node(op, names, ["y"], **(attrs or {}))], "one_node",
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
         for n, a in feeds.items()],
        [helper.make_tensor_value_info("y", helper.np_dtype_to_tensor_dtype(out_dtype), None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 9
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)[0]


def randn(shape: Sequence[int], seed: int = 0, scale: float = 3.0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def positive(shape: Sequence[int], seed: int = 0) -> np.ndarray:
    return (np.abs(randn(shape, seed)) + 0.05).astype(np.float32)


def f32(*values: float) -> np.ndarray:
    return np.array(values, np.float32)


SHAPE = (2, 3, 4, 5)
MIXED = randn(SHAPE, seed=1)  # includes negatives and |x| up to ~10
POS = positive(SHAPE, seed=2)
LARGE = f32(-1e4, -1000, -200, -88.8, -50, -20, -1, 0, 1, 20, 50, 88.8, 200, 1000, 1e4)
LARGE_INF = np.concatenate([LARGE, f32(-np.inf, np.inf)])
WIDE = np.linspace(-10, 10, 2001, dtype=np.float32)


def hard_sigmoid_ref(alpha: float, beta: float) -> Callable[[torch.Tensor], torch.Tensor]:
    # ONNX defaults (0.2, 0.5) differ from torch's F.hardsigmoid (1/6, 0.5): explicit formula.
    return lambda t: torch.clamp(alpha * t + beta, 0.0, 1.0)


# -- unary ops vs torch -----------------------------------------------------------------

UNARY_CASES = [
    pytest.param("Relu", {}, torch.relu, MIXED, id="relu"),
    pytest.param("Sigmoid", {}, torch.sigmoid, MIXED, id="sigmoid"),
    pytest.param("Sigmoid", {}, torch.sigmoid, LARGE_INF, id="sigmoid_large"),
    pytest.param("Tanh", {}, torch.tanh, MIXED, id="tanh"),
    pytest.param("Tanh", {}, torch.tanh, LARGE_INF, id="tanh_large"),
    pytest.param("HardSwish", {}, F.hardswish, MIXED, id="hardswish"),
    pytest.param("SiLU", {}, F.silu, MIXED, id="silu"),
    pytest.param("SiLU", {}, F.silu, LARGE, id="silu_large"),
    pytest.param("Exp", {}, torch.exp, MIXED, id="exp"),
    pytest.param("Exp", {}, torch.exp, LARGE_INF, id="exp_large_overflow"),
    pytest.param("Log", {}, torch.log, POS, id="log"),
    pytest.param("Log", {}, torch.log, f32(0, -0.0, -1, 1, np.inf, np.nan), id="log_special"),
    pytest.param("Sqrt", {}, torch.sqrt, POS, id="sqrt"),
    pytest.param("Sqrt", {}, torch.sqrt, f32(-1, 0, 4, np.inf), id="sqrt_negative"),
    pytest.param("Abs", {}, torch.abs, MIXED, id="abs"),
    pytest.param("Neg", {}, torch.neg, MIXED, id="neg"),
    pytest.param("Erf", {}, torch.erf, MIXED, id="erf"),
    pytest.param("Erf", {}, torch.erf, WIDE, id="erf_wide"),
    pytest.param("Erf", {}, torch.erf, LARGE_INF, id="erf_large"),
    pytest.param("Reciprocal", {}, torch.reciprocal, POS, id="reciprocal"),
    pytest.param("Reciprocal", {}, torch.reciprocal, MIXED, id="reciprocal_mixed"),
    pytest.param("Reciprocal", {}, torch.reciprocal, f32(0, -0.0, 2, np.inf), id="reciprocal_zero"),
    pytest.param("Identity", {}, lambda t: t, MIXED, id="identity"),
    pytest.param("Dropout", {"ratio": 0.3}, lambda t: t, MIXED, id="dropout_inference"),
    pytest.param("LeakyRelu", {}, lambda t: F.leaky_relu(t, 0.01), MIXED, id="leaky_relu_default"),
    pytest.param("LeakyRelu", {"alpha": 0.2}, lambda t: F.leaky_relu(t, 0.2), MIXED,
                 id="leaky_relu_0.2"),
    pytest.param("Elu", {}, F.elu, MIXED, id="elu_default"),
    pytest.param("Elu", {"alpha": 0.5}, lambda t: F.elu(t, 0.5), MIXED, id="elu_0.5"),
    pytest.param("Elu", {}, F.elu, LARGE, id="elu_large"),
    pytest.param("HardSigmoid", {}, hard_sigmoid_ref(0.2, 0.5), MIXED, id="hard_sigmoid_onnx_default"),
    pytest.param("HardSigmoid", {"alpha": 1 / 6, "beta": 0.5}, F.hardsigmoid, MIXED,
                 id="hard_sigmoid_torch_params"),
    pytest.param("Gelu", {}, F.gelu, MIXED, id="gelu_exact"),
    pytest.param("Gelu", {}, F.gelu, WIDE, id="gelu_exact_wide"),
    pytest.param("Gelu", {"approximate": "tanh"}, lambda t: F.gelu(t, approximate="tanh"), MIXED,
                 id="gelu_tanh"),
    pytest.param("Gelu", {"approximate": "tanh"}, lambda t: F.gelu(t, approximate="tanh"), LARGE,
                 id="gelu_tanh_large"),
]


@pytest.mark.parametrize(("op", "attrs", "ref", "x"), UNARY_CASES)
def test_unary_vs_torch(op: str, attrs: dict[str, Any], ref: Callable[..., torch.Tensor],
                        x: np.ndarray) -> None:
    check_close(run_kernel(op, x, **attrs), run_torch(ref, x), op=op)


@pytest.mark.parametrize(("op", "attrs", "ref"), [
    pytest.param("Relu", {}, torch.relu, id="relu"),
    pytest.param("Sigmoid", {}, torch.sigmoid, id="sigmoid"),
    pytest.param("SiLU", {}, F.silu, id="silu"),
    pytest.param("Erf", {}, torch.erf, id="erf"),
    pytest.param("Gelu", {}, F.gelu, id="gelu"),
    pytest.param("LeakyRelu", {"alpha": 0.1}, lambda t: F.leaky_relu(t, 0.1), id="leaky_relu"),
    pytest.param("HardSigmoid", {}, hard_sigmoid_ref(0.2, 0.5), id="hard_sigmoid"),
    pytest.param("Clip", {}, lambda t: t, id="clip_default_bounds"),
    pytest.param("Clip", {"min": 0.0, "max": 6.0}, lambda t: torch.clamp(t, 0, 6), id="clip_relu6"),
    pytest.param("ReduceMean", {"axes": (1,), "keepdims": 0}, lambda t: t.mean(1), id="reduce_mean"),
    pytest.param("Mean", {}, lambda t: t, id="mean_one_input"),
])
def test_float16_stays_float16(op: str, attrs: dict[str, Any], ref: Callable[..., torch.Tensor]
                               ) -> None:
    """Python-float attributes (alpha, FLT_MAX bounds, 1/n) must not promote float16 data."""
    x = randn((4, 6), seed=3, scale=2.0)
    expected = run_torch(ref, x).astype(np.float16)  # float32 maths, rounded once
    check_close(run_kernel(op, x.astype(np.float16), **attrs), expected, rtol=2e-3, atol=2e-3)


# -- erf accuracy -----------------------------------------------------------------------


def test_erf_float64_matches_libm() -> None:
    """Cody's approximation against Python's math.erf/erfc (libm) to ~2 ulp of float64."""
    x = np.concatenate([np.linspace(-8, 8, 20001), np.logspace(-300, 1.4, 2000),
                        -np.logspace(-300, 1.4, 2000)])
    x = x[x != 0]
    ref = np.array([math.erf(v) for v in x])
    rel = np.abs(erf(x) - ref) / np.abs(ref)
    assert erf(np.zeros(1))[0] == 0
    assert rel.max() < 2e-15, f"max relative error {rel.max():.3g} at x={x[rel.argmax()]}"


def test_erf_float32_within_one_ulp_of_torch() -> None:
    x = np.concatenate([WIDE, randn((20000,), seed=4)])
    y, r = erf(x), run_torch(torch.erf, x)
    assert y.dtype == np.float32
    ulps = np.abs(y.astype(np.float64) - r) / np.spacing(np.abs(r))
    assert ulps.max() <= 1.0, f"{ulps.max()} ulp at x={x[ulps.argmax()]}"


def test_gelu_exact_keeps_relative_accuracy_for_negative_x() -> None:
    """0.5*x*erfc(-x/sqrt(2)) is accurate where 1 + erf(x/sqrt(2)) cancels (x << 0)."""
    x = np.linspace(-30, -3, 500)
    ref = np.array([0.5 * v * math.erfc(-v / math.sqrt(2)) for v in x])
    nonzero = ref != 0
    rel = np.abs(gelu(x) - ref)[nonzero] / np.abs(ref[nonzero])
    assert rel.max() < 1e-13, f"max relative error {rel.max():.3g}"


# -- Clip, PRelu vs onnxruntime -----------------------------------------------------------


@pytest.mark.parametrize(("attrs", "bounds"), [
    pytest.param({}, (None, None), id="defaults"),
    pytest.param({"min": 0.0, "max": 6.0}, (0.0, 6.0), id="relu6"),
    pytest.param({"min": -1.0}, (-1.0, None), id="min_only"),
    pytest.param({"max": 0.5}, (None, 0.5), id="max_only"),
    pytest.param({"min": 2.0, "max": -2.0}, (2.0, -2.0), id="min_above_max"),
])
def test_clip_vs_onnxruntime(attrs: dict[str, float], bounds: tuple[float | None, float | None]
                             ) -> None:
    x = np.concatenate([MIXED.ravel(), f32(np.inf, -np.inf)])
    ort_bounds = [None if b is None else np.array(b, np.float32) for b in bounds]
    check_close(run_kernel("Clip", x, **attrs), run_ort("Clip", [x, *ort_bounds]), op="Clip")


def test_clip_int32_saturates_default_bounds() -> None:
    """Default bounds are +-FLT_MAX; on int32 they must mean 'no bound', not a wrapped cast."""
    x = np.array([-2**31, -5, 0, 7, 2**31 - 1], np.int32)
    check_close(run_kernel("Clip", x), x)
    check_close(run_kernel("Clip", x, min=-3.0, max=5.0),
                run_ort("Clip", [x, np.array(-3, np.int32), np.array(5, np.int32)]))


@pytest.mark.parametrize("slope_shape", [
    pytest.param((3, 1, 1), id="per_channel_c11"),
    pytest.param((1, 3, 1, 1), id="per_channel_1c11"),
    pytest.param((1,), id="single"),
    pytest.param((), id="scalar"),
    pytest.param((5,), id="last_axis"),
    pytest.param(SHAPE, id="full"),
])
def test_prelu_vs_onnxruntime(slope_shape: tuple[int, ...]) -> None:
    slope = (np.random.default_rng(5).uniform(0.05, 0.5, slope_shape)).astype(np.float32)
    expected = run_ort("PRelu", [MIXED, slope])
    check_close(run_kernel("PRelu", MIXED, slope), expected, op="PRelu")


def test_prelu_per_channel_vs_torch() -> None:
    w = f32(0.1, 0.2, 0.3)
    check_close(run_kernel("PRelu", MIXED, w.reshape(3, 1, 1)), run_torch(F.prelu, MIXED, w))


# -- binary ops with broadcasting vs torch ----------------------------------------------

BROADCAST_SHAPES = [
    pytest.param((2, 3, 4, 5), (5,), id="nchw+w"),
    pytest.param((2, 3, 4, 5), (3, 1, 1), id="nchw+c11"),
    pytest.param((1,), (2, 3), id="1+2x3"),
    pytest.param((), (), id="scalars"),
    pytest.param((2, 3), (), id="scalar_b"),
]
BINARY_REFS = [
    pytest.param("Add", torch.add, id="add"),
    pytest.param("Sub", torch.sub, id="sub"),
    pytest.param("Mul", torch.mul, id="mul"),
    pytest.param("Div", torch.div, id="div"),
    pytest.param("Pow", torch.pow, id="pow"),
]


@pytest.mark.parametrize(("op", "ref"), BINARY_REFS)
@pytest.mark.parametrize(("shape_a", "shape_b"), BROADCAST_SHAPES)
def test_binary_broadcasting_vs_torch(op: str, ref: Callable[..., torch.Tensor],
                                      shape_a: tuple[int, ...], shape_b: tuple[int, ...]) -> None:
    # Pow: positive base, float exponent of either sign.
    a = positive(shape_a, seed=6) if op == "Pow" else randn(shape_a, seed=6)
    b = randn(shape_b, seed=7, scale=1.5)
    check_close(run_kernel(op, a, b), run_torch(ref, a, b), op=op)


@pytest.mark.parametrize(("op", "ref", "a", "b"), [
    pytest.param("Div", torch.div, f32(1, -1, 0, 3), f32(0, 0, 0, np.inf), id="div_by_zero"),
    pytest.param("Pow", torch.pow, f32(-2, -2, -0.5, 0, 3), f32(2, 3, 2, -1, 0.5),
                 id="pow_negative_base_integral_exponent"),
    pytest.param("Pow", torch.pow, f32(-2, 4), f32(0.5, 0.5), id="pow_negative_base_nan"),
    pytest.param("Pow", torch.pow, MIXED, np.array(2.0, np.float32), id="pow_square"),
])
def test_binary_special_values_vs_torch(op: str, ref: Callable[..., torch.Tensor], a: np.ndarray,
                                        b: np.ndarray) -> None:
    check_close(run_kernel(op, a, b), run_torch(ref, a, b), op=op)


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
def test_integer_binary_vs_onnxruntime(op: str) -> None:
    """int32 stays int32; Div truncates toward zero (C/ONNX), not numpy's floor."""
    a = np.array([-7, 7, -7, 7, 0, -1, 100], np.int32)
    b = np.array([2, 2, -2, -2, 3, 4, -7], np.int32)
    check_close(run_kernel(op, a, b), run_ort(op, [a, b]))


# -- variadic ops vs onnxruntime ----------------------------------------------------------

@pytest.mark.parametrize("op", VARIADIC_OPS)
@pytest.mark.parametrize("shapes", [
    pytest.param([(2, 3, 4)], id="one"),
    pytest.param([(2, 3, 4), (4,)], id="two_broadcast"),
    pytest.param([(2, 1, 4), (3, 1), (1,)], id="three_broadcast"),
    pytest.param([(), (2, 3), (2, 3)], id="three_with_scalar"),
])
def test_variadic_vs_onnxruntime(op: str, shapes: list[tuple[int, ...]]) -> None:
    xs = [randn(s, seed=10 + i) for i, s in enumerate(shapes)]
    y = run_kernel(op, *xs)
    check_close(y, run_ort(op, xs), op=op)
    assert all(y is not x for x in xs), "a variadic kernel returned its input"


# -- reductions vs onnxruntime ------------------------------------------------------------

@pytest.mark.parametrize("op", REDUCE_OPS)
@pytest.mark.parametrize("axes", [
    pytest.param((), id="all"),
    pytest.param((1,), id="axis1"),
    pytest.param((-1,), id="axis_neg1"),
    pytest.param((2, 3), id="axes23"),
])
@pytest.mark.parametrize("keepdims", [pytest.param(0, id="drop"), pytest.param(1, id="keep")])
def test_reduce_vs_onnxruntime(op: str, axes: tuple[int, ...], keepdims: int) -> None:
    ort_inputs = [MIXED] + ([np.array(axes, np.int64)] if axes else [])
    expected = run_ort(op, ort_inputs, {"keepdims": keepdims})
    check_close(run_kernel(op, MIXED, axes=axes, keepdims=keepdims), expected, op=op)


def test_reduce_sum_int32_stays_int32() -> None:
    x = np.arange(24, dtype=np.int32).reshape(2, 3, 4) - 10
    check_close(run_kernel("ReduceSum", x, axes=(1,), keepdims=0),
                run_ort("ReduceSum", [x, np.array([1], np.int64)], {"keepdims": 0}))


# -- Cast vs onnxruntime ------------------------------------------------------------------

CAST_DTYPES = ["float32", "int32", "int64", "uint8", "bool", "float16"]


def cast_source(src: str, dst: str) -> np.ndarray:
    """Data of dtype ``src`` whose values ``dst`` can hold (out of range is implementation
    defined in ONNX): fractions of both signs, exact zeros."""
    rng = np.random.default_rng(11)
    if src == "bool":
        return rng.integers(0, 2, 40).astype(bool)
    if src == "uint8":
        return rng.integers(0, 256, 40).astype(np.uint8)
    low = 0 if dst == "uint8" else -100
    high = 256 if dst == "uint8" and src not in ("float32", "float16") else 250
    if src in ("int32", "int64"):
        return np.concatenate([rng.integers(low, high, 38), [0, low]]).astype(src)
    x = rng.uniform(low, high, 36)
    return np.concatenate([x, [0.0, 0.5, -0.0, 0.999]]).astype(src)


@pytest.mark.parametrize("src", CAST_DTYPES)
@pytest.mark.parametrize("dst", CAST_DTYPES)
def test_cast_vs_onnxruntime(src: str, dst: str) -> None:
    x = cast_source(src, dst)
    expected = run_ort("Cast", [x], {"to": helper.np_dtype_to_tensor_dtype(np.dtype(dst))},
                       out_dtype=dst)
    y = run_kernel("Cast", x, to=dst)
    check_close(y, expected, rtol=0, atol=0)
    assert y is not x


def test_cast_float_to_int_truncates_toward_zero() -> None:
    x = f32(-2.7, -1.5, -0.5, 0.5, 1.5, 2.7)
    check_close(run_kernel("Cast", x, to="int32"), np.array([-2, -1, 0, 0, 1, 2], np.int32))


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"),
                    reason="out-of-range float->int casts are implementation defined")
@pytest.mark.parametrize("dst", ["int32", "int8", "uint8", "int64"])
def test_cast_out_of_range_matches_onnxruntime_on_x86(dst: str) -> None:
    x = f32(-1.5, -129.5, 300.2, 3e9, -3e9, 1e20, np.nan, np.inf, -np.inf)
    expected = run_ort("Cast", [x], {"to": helper.np_dtype_to_tensor_dtype(np.dtype(dst))},
                       out_dtype=dst)
    check_close(run_kernel("Cast", x, to=dst), expected, rtol=0, atol=0)


def test_cast_float32_overflow_to_float16_is_inf() -> None:
    x = f32(70000, -70000, 65504, 1e-8)
    check_close(run_kernel("Cast", x, to="float16"), run_ort("Cast", [x], {"to": 10},
                                                              out_dtype="float16"), rtol=0, atol=0)


# -- registry -----------------------------------------------------------------------------

ELEMENTWISE_SCHEMA_OPS = sorted(op for op, s in all_schemas().items()
                                if s.infer.__module__ == "fc.ir.schemas.elementwise")


def test_schema_module_lists_are_complete() -> None:
    """The op lists are a subset of the schemas this module registers (sanity for the next test)."""
    listed = {*UNARY_OPS, *BINARY_OPS, *VARIADIC_OPS, *REDUCE_OPS}
    assert listed <= set(ELEMENTWISE_SCHEMA_OPS)
    assert {"LeakyRelu", "Elu", "HardSigmoid", "Clip", "Gelu", "Dropout", "PRelu", "Cast"} <= set(
        ELEMENTWISE_SCHEMA_OPS)


@pytest.mark.parametrize("op", ELEMENTWISE_SCHEMA_OPS)
def test_every_elementwise_op_has_a_kernel(op: str) -> None:
    assert fc.np_ops.has_kernel(op)


def test_gelu_rejects_unknown_approximation() -> None:
    with pytest.raises(FcError, match="approximate"):
        fc.np_ops.call("Gelu", MIXED, approximate="fast")


def test_add_rejects_unknown_activation_at_graph_build() -> None:
    g = Graph()
    a = g.add_input("a", (1, 3, 2, 2))
    with pytest.raises(SchemaError, match="'swish'"):
        g.add_node("Add", [a, a], {"activation": "swish"})
