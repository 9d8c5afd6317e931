"""Data-movement kernels (np_ops/tensor.py) against onnxruntime one-node models and
torch.nn.functional.

Each fc case is run through a one-node fc Graph (so the schema's shape rule runs too) and the
interpreter; the oracle is the same op as an ONNX opset-17 node, where fc's attributes go
back to ONNX constant inputs (initializers) by ``_to_onnx``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper

import fc.np_ops
from fc.errors import ExecutionError, FcError
from fc.ir import Graph
from fc.testing import check_close

OPSET = 17
INT64_MAX, INT64_MIN = 2**63 - 1, -(2**63)
RNG = np.random.default_rng(0)


def _rand(*shape: int, dtype: str = "float32") -> np.ndarray:
    return RNG.standard_normal(shape).astype(dtype)


def _i64(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.int64)


# -- oracle: one ONNX node run by onnxruntime -------------------------------------------------

def _to_onnx(op: str, attrs: dict[str, Any], dtype: np.dtype
             ) -> tuple[list[str], dict[str, Any], dict[str, np.ndarray]]:
    """fc attributes -> (extra ONNX input names, ONNX attributes, initializers)."""
    a = dict(attrs)
    inits: dict[str, np.ndarray] = {}
    extra: list[str] = []

    def const(name: str, value: np.ndarray) -> None:
        inits[name] = value
        extra.append(name)

    if op == "Split":
        const("split", _i64(a.pop("split")))
    elif op == "Slice":
        for k in ("starts", "ends", "axes", "steps"):
            const(k, _i64(a.pop(k)))
    elif op == "Reshape":
        const("shape", _i64(a.pop("shape")))
    elif op in ("Squeeze", "Unsqueeze"):
        axes = a.pop("axes", ())
        if axes:
            const("axes", _i64(axes))
    elif op == "Pad":
        const("pads", _i64(a.pop("pads")))
        value = a.pop("value", 0.0)
        if a.get("mode", "constant") == "constant":
            const("constant_value", np.asarray(value, dtype))
    elif op == "Resize":
        scales, sizes = a.pop("scales"), a.pop("sizes", ())
        extra.append("")  # roi
        if sizes:  # ONNX gets only the sizes; onnxruntime derives scales = sizes / in itself
            extra.append("")
            const("sizes", _i64(sizes))
        else:
            const("scales", np.asarray(scales, np.float32))
    elif op == "Transpose" and not a.get("perm", True):
        a.pop("perm")
    return extra, a, inits


def _run_ort(op: str, xs: list[np.ndarray], attrs: dict[str, Any], n_out: int,
             const_inputs: tuple[int, ...] = ()) -> list[np.ndarray]:
    names = [f"x{i}" for i in range(len(xs))]
    extra, onnx_attrs, inits = _to_onnx(op, attrs, xs[0].dtype)
    inits.update({names[i]: xs[i] for i in const_inputs})
    feeds = {n: x for i, (n, x) in enumerate(zip(names, xs)) if i not in const_inputs}
    outs = [f"y{i}" for i in range(n_out)]
    node = helper.make_node(op, names + extra, outs, **onnx_attrs)
    graph = helper.make_graph(
        [node], "one_node",
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(x.dtype), x.shape)
         for n, x in feeds.items()],
        [helper.make_tensor_value_info(o, helper.np_dtype_to_tensor_dtype(xs[0].dtype), None)
         for o in outs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # ONNX shape inference disagrees with ORT on some Resize sizes
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


# -- fc: a one-node graph through the schema and the interpreter -----------------------------

def _run_fc(op: str, xs: list[np.ndarray], attrs: dict[str, Any], n_out: int,
            const_inputs: tuple[int, ...] = ()) -> tuple[list[np.ndarray], list[tuple[int, ...]]]:
    """Outputs of the interpreter and the output shapes the schema inferred."""
    g = Graph("t")
    vals = [g.add_const(f"x{i}", x) if i in const_inputs else g.add_input(f"x{i}", x.shape,
                                                                          x.dtype.name)
            for i, x in enumerate(xs)]
    node = g.add_node(op, vals, attrs, name="n", num_outputs=n_out)
    g.outputs = list(node.outputs)
    copies = [x.copy() for x in xs]
    res = fc.np_ops.run(g, {f"x{i}": x for i, x in enumerate(xs) if i not in const_inputs})
    for x, c in zip(xs, copies):
        np.testing.assert_array_equal(x, c, err_msg=f"{op} modified its input")
    return [res[v.name] for v in node.outputs], [v.shape for v in node.outputs]


def _check_vs_ort(op: str, xs: list[np.ndarray], attrs: dict[str, Any], n_out: int = 1,
                  const_inputs: tuple[int, ...] = ()) -> None:
    expected = _run_ort(op, xs, attrs, n_out, const_inputs)
    actual, inferred = _run_fc(op, xs, attrs, n_out, const_inputs)
    assert len(actual) == len(expected)
    for i, (a, e, s) in enumerate(zip(actual, expected, inferred)):
        assert s == e.shape, f"{op} output {i}: shape rule says {s}, onnxruntime gives {e.shape}"
        check_close(a, e, op=op, what=f"{op} output {i}")


# -- Concat / Split ---------------------------------------------------------------------------

@pytest.mark.parametrize("axis, shapes", [
    pytest.param(0, [(1, 3, 4), (2, 3, 4), (3, 3, 4)], id="axis0"),
    pytest.param(1, [(2, 1, 4), (2, 5, 4), (2, 2, 4)], id="axis1"),
    pytest.param(-1, [(2, 3, 4), (2, 3, 1), (2, 3, 2)], id="axis_neg1"),
])
def test_concat(axis: int, shapes: list[tuple[int, ...]]) -> None:
    _check_vs_ort("Concat", [_rand(*s) for s in shapes], {"axis": axis})


@pytest.mark.parametrize("axis, split", [
    pytest.param(1, (2, 3, 1), id="uneven_axis1"),
    pytest.param(-1, (4, 1), id="uneven_axis_neg1"),
])
def test_split(axis: int, split: tuple[int, ...]) -> None:
    x = _rand(2, 6, 5)
    _check_vs_ort("Split", [x], {"axis": axis, "split": split}, n_out=len(split))


# -- Slice ------------------------------------------------------------------------------------

@pytest.mark.parametrize("starts, ends, axes, steps", [
    pytest.param((-3, 1), (-1, -1), (1, 2), (1, 1), id="negative_starts_ends"),
    pytest.param((0, 1), (6, 7), (1, 2), (2, 2), id="step2"),
    pytest.param((-1,), (INT64_MIN,), (1,), (-1,), id="step_neg1_to_int64_min"),
    pytest.param((4, 1), (INT64_MIN, INT64_MAX), (2, 3), (-2, 3), id="step_neg2_and_int64_max"),
    pytest.param((1,), (INT64_MAX,), (-1,), (1,), id="end_int64_max"),
    pytest.param((2,), (1000,), (0,), (1,), id="axes_subset_end_clamped"),
    pytest.param((3,), (1,), (1,), (1,), id="empty"),
])
def test_slice(starts: tuple, ends: tuple, axes: tuple, steps: tuple) -> None:
    x = _rand(3, 6, 7, 5)
    _check_vs_ort("Slice", [x], {"starts": starts, "ends": ends, "axes": axes, "steps": steps})


# -- Reshape / Flatten / Transpose / Squeeze / Unsqueeze -------------------------------------

@pytest.mark.parametrize("shape", [
    pytest.param((0, -1), id="copy0_infer"),
    pytest.param((0, 3, -1, 2), id="copy0_infer_middle"),
    pytest.param((-1,), id="infer_only"),
    pytest.param((4, 0, 5, 2), id="copy0_inner"),
])
def test_reshape(shape: tuple[int, ...]) -> None:
    _check_vs_ort("Reshape", [_rand(2, 3, 4, 5)], {"shape": shape, "allowzero": 0})


def test_reshape_follows_batch() -> None:
    """shape=(0, -1) compiled at batch 2 must run at batch 5 (the batch convention)."""
    g = Graph("t")
    x = g.add_input("x", (2, 3, 4))
    g.outputs = [g.add_node("Reshape", [x], {"shape": (0, -1)}).output]
    data = _rand(5, 3, 4)
    y = fc.np_ops.run(g, {"x": data})[g.outputs[0].name]
    check_close(y, torch.flatten(torch.from_numpy(data), 1).numpy(), op="Reshape")


@pytest.mark.parametrize("axis", [
    pytest.param(0, id="axis0"),
    pytest.param(1, id="axis1"),
    pytest.param(3, id="axis3"),
    pytest.param(4, id="axis_rank"),
    pytest.param(-1, id="axis_neg1"),
])
def test_flatten(axis: int) -> None:
    _check_vs_ort("Flatten", [_rand(2, 3, 4, 5)], {"axis": axis})


@pytest.mark.parametrize("perm", [
    pytest.param((), id="default_reverse"),
    pytest.param((0, 2, 3, 1), id="nchw_to_nhwc"),
    pytest.param((3, 1, 0, 2), id="explicit"),
])
def test_transpose(perm: tuple[int, ...]) -> None:
    _check_vs_ort("Transpose", [_rand(2, 3, 4, 5)], {"perm": perm})


@pytest.mark.parametrize("axes", [
    pytest.param((), id="all"),
    pytest.param((1,), id="one"),
    pytest.param((-1, 1), id="negative_and_positive"),
])
def test_squeeze(axes: tuple[int, ...]) -> None:
    _check_vs_ort("Squeeze", [_rand(2, 1, 3, 1)], {"axes": axes})


@pytest.mark.parametrize("axes", [
    pytest.param((0,), id="front"),
    pytest.param((-1,), id="neg1"),
    pytest.param((-1, -4), id="negative_two"),
    pytest.param((1, 3), id="positive_two"),
])
def test_unsqueeze(axes: tuple[int, ...]) -> None:
    _check_vs_ort("Unsqueeze", [_rand(2, 3, 4)], {"axes": axes})


# -- Pad --------------------------------------------------------------------------------------

@pytest.mark.parametrize("pads, mode, value", [
    pytest.param((0, 0, 1, 2, 0, 0, 3, 1), "constant", 0.0, id="constant_zero"),
    pytest.param((0, 1, 2, 0, 1, 0, 1, 3), "constant", -1.5, id="constant_value_all_axes"),
    pytest.param((0, 0, 2, 1, 0, 0, 1, 3), "reflect", 0.0, id="reflect"),
    pytest.param((0, 0, 2, 3, 0, 0, 4, 1), "edge", 0.0, id="edge"),
    pytest.param((0, 0, -1, 2, 0, 0, 1, -2), "constant", 2.0, id="negative_constant"),
    pytest.param((0, -1, -2, 2, 0, 0, 1, -3), "edge", 0.0, id="negative_edge"),
    pytest.param((0, 0, -1, 2, 0, 0, 2, -1), "reflect", 0.0, id="negative_reflect"),
])
def test_pad(pads: tuple[int, ...], mode: str, value: float) -> None:
    _check_vs_ort("Pad", [_rand(2, 3, 5, 6)], {"pads": pads, "mode": mode, "value": value})


@pytest.mark.parametrize("mode, torch_mode", [
    pytest.param("reflect", "reflect", id="reflect"),
    pytest.param("edge", "replicate", id="replicate"),
])
def test_pad_vs_torch(mode: str, torch_mode: str) -> None:
    x = _rand(2, 3, 5, 6)
    # torch: (w_left, w_right, h_top, h_bottom); ONNX: all begins then all ends.
    expected = F.pad(torch.from_numpy(x), (1, 3, 2, 4), mode=torch_mode).numpy()
    y = fc.np_ops.call("Pad", x, pads=(0, 0, 2, 1, 0, 0, 4, 3), mode=mode)
    check_close(y, expected, op="Pad")


# -- Resize -----------------------------------------------------------------------------------

def _resize_attrs(mode: str, ctm: str, scales: tuple[float, ...] = (), sizes: tuple[int, ...] = (),
                  in_shape: tuple[int, ...] = (), nearest_mode: str = "round_prefer_floor",
                  cubic_coeff_a: float = -0.75) -> dict[str, Any]:
    """fc attributes; with ``sizes`` the scales are sizes/in, as the importer stores them."""
    if sizes:
        scales = (1.0, *(o / i for o, i in zip(sizes[1:], in_shape[1:])))
    return {"mode": mode, "scales": scales, "sizes": sizes,
            "coordinate_transformation_mode": ctm, "nearest_mode": nearest_mode,
            "cubic_coeff_a": cubic_coeff_a}


NCHW = (2, 3, 5, 7)
F32_0_7 = float(np.float32(0.7))


@pytest.mark.parametrize("shape, attrs", [
    pytest.param(NCHW, _resize_attrs("nearest", "asymmetric", (1, 1, 2, 2), nearest_mode="floor"),
                 id="nearest_x2_asymmetric_floor"),
    pytest.param(NCHW, _resize_attrs("nearest", "half_pixel", (1, 1, 2, 2)),
                 id="nearest_x2_half_pixel_round_prefer_floor"),
    pytest.param(NCHW, _resize_attrs("nearest", "asymmetric", (1, 1, 2, 2)),
                 id="nearest_x2_asymmetric_ties_round_prefer_floor"),
    pytest.param(NCHW, _resize_attrs("nearest", "asymmetric", (1, 1, 2, 2),
                                     nearest_mode="round_prefer_ceil"),
                 id="nearest_x2_asymmetric_ties_round_prefer_ceil"),
    pytest.param(NCHW, _resize_attrs("nearest", "half_pixel", (1, 1, 3, 3),
                                     nearest_mode="round_prefer_ceil"),
                 id="nearest_x3_round_prefer_ceil"),
    pytest.param(NCHW, _resize_attrs("nearest", "align_corners", (1, 1, 1.5, 2.5),
                                     nearest_mode="ceil"), id="nearest_align_corners_ceil"),
    pytest.param(NCHW, _resize_attrs("nearest", "tf_half_pixel_for_nn", (1, 1, 0.6, 1.5)),
                 id="nearest_tf_half_pixel_for_nn"),
    # An unscaled axis maps to itself even where the transform would shift it ((x + 0.5) / 1).
    pytest.param(NCHW, _resize_attrs("nearest", "tf_half_pixel_for_nn", (1, 1, 2, 1),
                                     nearest_mode="round_prefer_ceil"),
                 id="nearest_tf_half_pixel_for_nn_unscaled_axis"),
    pytest.param(NCHW, _resize_attrs("nearest", "half_pixel", (1, 1, 0.5, 0.5)),
                 id="nearest_downscale_half"),
    pytest.param(NCHW, _resize_attrs("nearest", "asymmetric", sizes=(2, 3, 8, 11), in_shape=NCHW,
                                     nearest_mode="floor"), id="nearest_sizes"),
    pytest.param(NCHW, _resize_attrs("linear", "half_pixel", (1, 1, 2, 2)), id="linear_half_pixel"),
    pytest.param(NCHW, _resize_attrs("linear", "align_corners", (1, 1, 2, 3)),
                 id="linear_align_corners"),
    pytest.param(NCHW, _resize_attrs("linear", "asymmetric", (1, 1, 2, 1.5)), id="linear_asymmetric"),
    pytest.param((2, 3, 4, 6), _resize_attrs("linear", "pytorch_half_pixel", sizes=(2, 3, 1, 9),
                                             in_shape=(2, 3, 4, 6)),
                 id="linear_pytorch_half_pixel_out1"),
    pytest.param((1, 2, 8, 6), _resize_attrs("linear", "half_pixel", (1, 1, 0.5, 0.5)),
                 id="linear_downscale_half"),
    pytest.param(NCHW, _resize_attrs("linear", "half_pixel", (1, 1, 1.5, 1.5)),
                 id="linear_scale_1_5"),
    # The importer reads scales from ONNX's float32 tensor: 10 * 0.7f is 6.99999988 in float64,
    # but onnxruntime multiplies in float32 and outputs 7 rows.
    pytest.param((1, 2, 10, 10), _resize_attrs("linear", "half_pixel",
                                               (1, 1, F32_0_7, F32_0_7)),
                 id="linear_scale_0_7_float32_out_dim"),
    pytest.param(NCHW, _resize_attrs("linear", "half_pixel", sizes=(2, 3, 8, 4), in_shape=NCHW),
                 id="linear_sizes"),
    pytest.param(NCHW, _resize_attrs("linear", "align_corners", sizes=(2, 3, 3, 13), in_shape=NCHW),
                 id="linear_sizes_align_corners"),
    pytest.param((1, 2, 3, 4, 5), _resize_attrs("linear", "half_pixel", (1, 1, 2, 1.5, 0.5)),
                 id="linear_5d_trilinear"),
    pytest.param((5, 7), _resize_attrs("linear", "asymmetric", (1, 2.5)), id="linear_2d"),
    pytest.param(NCHW, _resize_attrs("cubic", "half_pixel", (1, 1, 2, 2)), id="cubic_half_pixel"),
    pytest.param(NCHW, _resize_attrs("cubic", "align_corners", (1, 1, 1.5, 0.6),
                                     cubic_coeff_a=-0.5), id="cubic_align_corners_a05"),
    pytest.param(NCHW, _resize_attrs("cubic", "asymmetric", sizes=(2, 3, 9, 4), in_shape=NCHW),
                 id="cubic_sizes_asymmetric"),
])
def test_resize(shape: tuple[int, ...], attrs: dict[str, Any]) -> None:
    _check_vs_ort("Resize", [_rand(*shape)], attrs)


@pytest.mark.parametrize("kwargs, attrs", [
    pytest.param({"scale_factor": 2, "mode": "bilinear", "align_corners": False},
                 _resize_attrs("linear", "half_pixel", (1, 1, 2, 2)), id="bilinear_x2"),
    pytest.param({"size": (9, 4), "mode": "bilinear", "align_corners": False},
                 _resize_attrs("linear", "half_pixel", sizes=(2, 3, 9, 4), in_shape=NCHW),
                 id="bilinear_size"),
    pytest.param({"size": (9, 13), "mode": "bilinear", "align_corners": True},
                 _resize_attrs("linear", "align_corners", sizes=(2, 3, 9, 13), in_shape=NCHW),
                 id="bilinear_align_corners"),
    pytest.param({"scale_factor": 3, "mode": "nearest"},
                 _resize_attrs("nearest", "asymmetric", (1, 1, 3, 3), nearest_mode="floor"),
                 id="nearest_x3"),
    pytest.param({"size": (8, 12), "mode": "nearest-exact"},
                 _resize_attrs("nearest", "tf_half_pixel_for_nn", sizes=(2, 3, 8, 12), in_shape=NCHW,
                               nearest_mode="floor"), id="nearest_exact_size"),
    pytest.param({"scale_factor": 2, "mode": "bicubic", "align_corners": False},
                 _resize_attrs("cubic", "half_pixel", (1, 1, 2, 2)), id="bicubic_x2"),
])
def test_resize_vs_torch(kwargs: dict[str, Any], attrs: dict[str, Any]) -> None:
    x = _rand(*NCHW)
    expected = F.interpolate(torch.from_numpy(x), **kwargs).numpy()
    check_close(fc.np_ops.call("Resize", x, **attrs), expected, op="Resize")


def test_resize_nearest_keeps_int_dtype() -> None:
    x = RNG.integers(-100, 100, NCHW).astype(np.int64)
    expected = F.interpolate(torch.from_numpy(x).double(), scale_factor=2, mode="nearest")
    y = fc.np_ops.call("Resize", x, **_resize_attrs("nearest", "asymmetric", (1, 1, 2, 2),
                                                     nearest_mode="floor"))
    check_close(y, expected.numpy().astype(np.int64), op="Resize")


# -- DepthToSpace / SpaceToDepth --------------------------------------------------------------

@pytest.mark.parametrize("mode, b", [
    pytest.param("DCR", 2, id="dcr_b2"),
    pytest.param("DCR", 3, id="dcr_b3"),
    pytest.param("CRD", 2, id="crd_b2"),
    pytest.param("CRD", 3, id="crd_b3"),
])
def test_depth_to_space(mode: str, b: int) -> None:
    _check_vs_ort("DepthToSpace", [_rand(2, 2 * b * b, 3, 4)], {"blocksize": b, "mode": mode})


@pytest.mark.parametrize("b", [pytest.param(2, id="b2"), pytest.param(3, id="b3")])
def test_depth_to_space_crd_is_pixel_shuffle(b: int) -> None:
    x = _rand(2, 3 * b * b, 4, 5)
    expected = F.pixel_shuffle(torch.from_numpy(x), b).numpy()
    check_close(fc.np_ops.call("DepthToSpace", x, blocksize=b, mode="CRD"), expected,
                op="DepthToSpace")


@pytest.mark.parametrize("b", [pytest.param(2, id="b2"), pytest.param(3, id="b3")])
def test_space_to_depth(b: int) -> None:
    _check_vs_ort("SpaceToDepth", [_rand(2, 3, 2 * b, 3 * b)], {"blocksize": b})


# -- Gather -----------------------------------------------------------------------------------

@pytest.mark.parametrize("axis, indices", [
    pytest.param(0, _i64([2, -1, 0]), id="axis0_negative"),
    pytest.param(1, _i64([[0, -2], [3, 1]]), id="axis1_2d_negative"),
    pytest.param(-1, np.asarray([-5, 4, 0], np.int32), id="axis_neg1_int32"),
    pytest.param(1, _i64(2), id="axis1_scalar_index"),
])
def test_gather(axis: int, indices: np.ndarray) -> None:
    _check_vs_ort("Gather", [_rand(3, 4, 5), indices], {"axis": axis}, const_inputs=(1,))


# -- errors -----------------------------------------------------------------------------------

@pytest.mark.parametrize("op, x, attrs, match", [
    pytest.param("Gather", _rand(3, 4), {"axis": 0, "_indices": _i64([3])}, "out of range",
                 id="gather_index_out_of_range"),
    pytest.param("Pad", _rand(1, 1, 3, 3), {"pads": (0, 0, 3, 0, 0, 0, 0, 0), "mode": "reflect"},
                 "smaller than dim", id="pad_reflect_too_wide"),
    pytest.param("Resize", np.zeros(NCHW, np.int32),
                 _resize_attrs("linear", "half_pixel", (1, 1, 2, 2)), "float input",
                 id="resize_linear_int"),
    pytest.param("Split", _rand(2, 6), {"axis": 1, "split": (2, 2)}, "does not sum",
                 id="split_bad_sizes"),
])
def test_errors(op: str, x: np.ndarray, attrs: dict[str, Any], match: str) -> None:
    attrs = dict(attrs)
    extra = [attrs.pop("_indices")] if "_indices" in attrs else []
    with pytest.raises(ExecutionError, match=match) as info:
        fc.np_ops.call(op, x, *extra, **attrs)
    assert isinstance(info.value, FcError) and "\n" not in str(info.value)
