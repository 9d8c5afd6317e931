"""The importer driver on small hand-built models: constant folding, the batch convention,
attribute translation seen in the IR, names/provenance, input shapes, and its errors."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import fc.np_ops
from fc.errors import ImportError_, UnsupportedOpsError
from fc.frontend.onnx import converter, get_converter, import_onnx, registry
from fc.testing import check_close

I64 = np.int64
F32 = np.float32
N = helper.make_node


# -------------------------------------------------------------------- constant folding


def _shape_chain_model(make_model):  # type: ignore[no-untyped-def]
    """x (N,3,4,4) -> Relu -> Reshape(to [Shape(x)[0], -1]) with the target computed by
    Shape -> Gather -> Unsqueeze -> Concat, as PyTorch exports x.view(x.size(0), -1)."""
    nodes = [
        N("Relu", ["x"], ["r"], name="relu"),
        N("Shape", ["r"], ["s"], name="shape"),
        N("Gather", ["s", "zero"], ["n"], name="gather", axis=0),
        N("Unsqueeze", ["n", "axes0"], ["n1"], name="unsqueeze"),
        N("Concat", ["n1", "minus1"], ["target"], name="concat", axis=0),
        N("Reshape", ["r", "target"], ["y"], name="reshape"),
    ]
    inits = {"zero": np.array(0, I64), "axes0": np.array([0], I64), "minus1": np.array([-1], I64)}
    return make_model(nodes, {"x": ("N", 3, 4, 4)}, ["y"], inits, opset=13)


def test_shape_chain_is_folded_and_batch_independent(make_model, seeded_input, ort_run,
                                                     caplog) -> None:
    model = _shape_chain_model(make_model)
    with caplog.at_level(logging.WARNING, logger="fc.frontend.onnx"):
        graph = import_onnx(model)
    assert "batch dim 'N' set to 1" in caplog.text
    assert [n.op_type for n in graph] == ["Relu", "Reshape"]
    assert graph.node_by_name("reshape").attrs["shape"] == (0, -1)
    # constants consumed only by folding never reach the graph
    assert graph.initializers == {}
    x4 = seeded_input((4, 3, 4, 4))
    got = fc.np_ops.run(graph, {"x": x4})["y"]
    check_close(got, ort_run(model, {"x": x4})["y"])
    assert got.shape == (4, 48)


def test_range_equal_where_fold_when_only_used_for_shapes(make_model, seeded_input,
                                                          check_vs_ort) -> None:
    """Ops fc has no kernel for (Range, Equal, Where, Slice of a shape) are fine in a
    constant subgraph: target = Where(Range(0, 3) == 2, 16, Shape(x)[:3]) = [N, 3, 16]."""
    nodes = [
        N("Shape", ["x"], ["s"]),
        N("Slice", ["s", "zero", "three"], ["s3"]),
        N("Range", ["zero_s", "three_s", "one_s"], ["idx"]),
        N("Equal", ["idx", "two"], ["is_last"]),
        N("Where", ["is_last", "sixteen", "s3"], ["target"]),
        N("Reshape", ["x", "target"], ["y"]),
    ]
    inits = {"zero": np.array([0], I64), "three": np.array([3], I64), "zero_s": np.array(0, I64),
             "three_s": np.array(3, I64), "one_s": np.array(1, I64), "two": np.array(2, I64),
             "sixteen": np.array([16, 16, 16], I64)}
    model = make_model(nodes, {"x": (2, 3, 4, 4)}, ["y"], inits, opset=13)
    graph = check_vs_ort(model, {"x": seeded_input((2, 3, 4, 4))})
    assert [(n.op_type, n.attrs["shape"]) for n in graph] == [("Reshape", (0, 3, 16))]


def test_folded_constant_feeding_a_layer_becomes_a_named_weight(make_model, seeded_input,
                                                                 check_vs_ort) -> None:
    """A weight computed at import (Constant -> Transpose -> Mul) is one graph weight named
    after its ONNX tensor; the Constant's own tensor is not added."""
    w = np.random.default_rng(0).standard_normal((3, 4)).astype(F32)
    nodes = [
        N("Constant", [], ["w_raw"], value=onnx.numpy_helper.from_array(w)),
        N("Transpose", ["w_raw"], ["w_t"]),
        N("Mul", ["w_t", "half"], ["w_scaled"]),
        N("MatMul", ["x", "w_scaled"], ["y"], name="mm"),
    ]
    model = make_model(nodes, {"x": (2, 4)}, ["y"], {"half": np.array(0.5, F32)}, opset=13)
    graph = check_vs_ort(model, {"x": seeded_input((2, 4))}, op="MatMul")
    assert list(graph.initializers) == ["w_scaled"]
    np.testing.assert_array_equal(graph.initializers["w_scaled"].const, w.T * F32(0.5))


def test_integer_div_folds_with_truncation(make_model, seeded_input, check_vs_ort) -> None:
    """Shape arithmetic: -7 / 2 is -3 in ONNX (truncation), not numpy's floor -4."""
    nodes = [N("Div", ["a", "b"], ["q"]), N("Add", ["q", "six"], ["d"]),  # -3 + 6 = 3
             N("Concat", ["batch", "d", "minus1"], ["target"], axis=0),
             N("Reshape", ["x", "target"], ["y"])]
    inits = {"a": np.array([-7], I64), "b": np.array([2], I64), "six": np.array([6], I64),
             "batch": np.array([2], I64), "minus1": np.array([-1], I64)}
    model = make_model(nodes, {"x": (2, 3, 4)}, ["y"], inits, opset=13)
    graph = check_vs_ort(model, {"x": seeded_input((2, 3, 4))})
    assert graph.nodes[0].attrs["shape"] == (0, 3, -1)


# --------------------------------------------------------------- batch convention


@pytest.mark.parametrize(("x_shape", "target", "allowzero", "expected"), [
    pytest.param((1, 6, 2), [1, -1], 0, (0, -1), id="batch1_becomes_copy"),
    pytest.param((2, 6, 2), [2, 12], 0, (0, 12), id="batch2_becomes_copy"),
    pytest.param((2, 6, 2), [4, 6], 0, (4, 6), id="other_dim0_kept"),
    pytest.param((1, 6, 2), [1, 12], 1, (1, 12), id="allowzero_kept"),
])
def test_reshape_dim0_copy_convention(x_shape, target, allowzero, expected, make_model) -> None:
    model = make_model([N("Reshape", ["x", "t"], ["y"], allowzero=allowzero)], {"x": x_shape},
                       ["y"], {"t": np.array(target, I64)}, opset=14)
    assert import_onnx(model).nodes[0].attrs["shape"] == expected


def test_resize_sizes_graph_runs_at_another_batch(make_model, seeded_input, ort_run) -> None:
    nodes = [N("Resize", ["x", "", "", "sizes"], ["y"], mode="linear")]
    model = make_model(nodes, {"x": ("N", 2, 3, 4)}, ["y"],
                       {"sizes": np.array([1, 2, 6, 10], I64)}, opset=13)
    graph = import_onnx(model)
    assert graph.nodes[0].attrs["sizes"] == (1, 2, 6, 10)
    # onnxruntime needs sizes[0] = 3 at batch 3: compare with a batch-3 export of the model
    model3 = make_model(nodes, {"x": ("N", 2, 3, 4)}, ["y"],
                        {"sizes": np.array([3, 2, 6, 10], I64)}, opset=13)
    x3 = seeded_input((3, 2, 3, 4))
    check_close(fc.np_ops.run(graph, {"x": x3})["y"], ort_run(model3, {"x": x3})["y"], op="Resize")


# --------------------------------------------------------------- attribute translation


@pytest.mark.parametrize(("key", "attrs", "expected"), [
    pytest.param("conv", {"auto_pad": "SAME_UPPER", "strides": [2, 2]}, (1, 1, 1, 1),
                 id="conv_same_upper_k3s2"),
    pytest.param("conv4", {"auto_pad": "SAME_UPPER", "strides": [2, 2]}, (1, 1, 2, 2),
                 id="conv_same_upper_k4s2"),
    pytest.param("conv4", {"auto_pad": "SAME_LOWER", "strides": [2, 2]}, (2, 2, 1, 1),
                 id="conv_same_lower_k4s2"),
    pytest.param("conv", {"auto_pad": "SAME_UPPER"}, (1, 1, 1, 1), id="conv_same_upper_s1"),
    pytest.param("conv", {"auto_pad": "VALID"}, (0, 0, 0, 0), id="valid"),
    pytest.param("pool", {"auto_pad": "SAME_UPPER", "strides": [2, 2]}, (0, 0, 1, 1),
                 id="maxpool_same_upper_k2s2_odd"),
])
def test_auto_pad_becomes_explicit_pads(key, attrs, expected, make_model, seeded_input,
                                        check_vs_ort) -> None:
    """9x9 input: out = ceil(9/2) = 5, total = 4*2 + k - 9 (k=3: 2, k=4: 3)."""
    w = {"conv": np.ones((2, 3, 3, 3), F32), "conv4": np.ones((2, 3, 4, 4), F32)}
    if key == "pool":
        node = N("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], **attrs)
        inits = {}
    else:
        node = N("Conv", ["x", "w"], ["y"], **attrs)
        inits = {"w": w[key] * np.linspace(-1, 1, w[key].size, dtype=F32).reshape(w[key].shape)}
    graph = check_vs_ort(make_model([node], {"x": (1, 3, 9, 9)}, ["y"], inits),
                         {"x": seeded_input((1, 3, 9, 9))}, op=node.op_type)
    assert graph.nodes[0].attrs["pads"] == expected


@pytest.mark.parametrize(("opset", "axis", "ops"), [
    pytest.param(11, 1, ["Flatten", "Softmax", "Reshape"], id="opset11_axis1_flattens"),
    pytest.param(11, -1, ["Softmax"], id="opset11_last_axis_one_node"),
    pytest.param(13, 1, ["Softmax"], id="opset13_one_axis"),
])
def test_softmax_legacy_axis(opset, axis, ops, make_model, seeded_input, check_vs_ort) -> None:
    model = make_model([N("Softmax", ["x"], ["y"], name="sm", axis=axis)], {"x": (2, 3, 4, 5)},
                       ["y"], opset=opset)
    graph = check_vs_ort(model, {"x": seeded_input((2, 3, 4, 5))}, op="Softmax")
    assert [n.op_type for n in graph] == ops
    assert all(n.provenance == ("sm",) for n in graph)
    assert graph.outputs[0].name == "y"


@pytest.mark.parametrize(("opset", "mode", "expected"), [
    pytest.param(9, "nearest", ("asymmetric", "floor"), id="opset9_nearest"),
    pytest.param(9, "linear", ("asymmetric", None), id="opset9_linear"),
    pytest.param(7, "nearest", ("asymmetric", "floor"), id="opset7_nearest"),
])
def test_upsample_becomes_resize(opset, mode, expected, make_model, seeded_input,
                                 check_vs_ort) -> None:
    scales = [1.0, 1.0, 2.0, 3.0]
    if opset >= 9:
        node = N("Upsample", ["x", "scales"], ["y"], mode=mode)
        inits = {"scales": np.array(scales, F32)}
    else:
        node = N("Upsample", ["x"], ["y"], mode=mode, scales=scales)
        inits = {}
    model = make_model([node], {"x": (1, 2, 3, 4)}, ["y"], inits, opset=opset)
    graph = check_vs_ort(model, {"x": seeded_input((1, 2, 3, 4))}, op="Resize")
    (node_fc,) = graph.nodes
    assert node_fc.op_type == "Resize" and node_fc.attrs["scales"] == tuple(scales)
    assert node_fc.attrs["coordinate_transformation_mode"] == expected[0]
    if expected[1]:
        assert node_fc.attrs["nearest_mode"] == expected[1]


@pytest.mark.parametrize(("opset", "min_", "max_", "expected"), [
    pytest.param(10, -1.0, 2.0, (-1.0, 2.0), id="clip6_attrs"),
    pytest.param(10, None, 2.0, (-3.4028234663852886e38, 2.0), id="clip6_max_only"),
    pytest.param(12, -1.0, 2.0, (-1.0, 2.0), id="clip12_inputs"),
    pytest.param(12, -1.0, None, (-1.0, 3.4028234663852886e38), id="clip12_min_only"),
    pytest.param(12, None, None, (-3.4028234663852886e38, 3.4028234663852886e38), id="clip12_none"),
])
def test_clip_bounds(opset, min_, max_, expected, make_model, seeded_input, check_vs_ort) -> None:
    if opset < 11:
        attrs = {k: v for k, v in (("min", min_), ("max", max_)) if v is not None}
        node, inits = N("Clip", ["x"], ["y"], **attrs), {}
    else:
        node = N("Clip", ["x", "" if min_ is None else "lo", "" if max_ is None else "hi"], ["y"])
        inits = {k: np.array(v, F32) for k, v in (("lo", min_), ("hi", max_)) if v is not None}
    model = make_model([node], {"x": (2, 3)}, ["y"], inits, opset=opset)
    graph = check_vs_ort(model, {"x": 2 * seeded_input((2, 3))})
    assert (graph.nodes[0].attrs["min"], graph.nodes[0].attrs["max"]) == expected


@pytest.mark.parametrize(("opset", "expected"), [
    pytest.param(9, {"starts": (1, 0), "ends": (3, 2), "axes": (1, 0), "steps": (1, 1)},
                 id="opset9_attrs"),
    pytest.param(13, {"starts": (1, 0), "ends": (3, 2), "axes": (1, 0), "steps": (1, 1)},
                 id="opset13_inputs"),
])
def test_slice_attrs(opset, expected, make_model, seeded_input, check_vs_ort) -> None:
    if opset < 10:
        node, inits = N("Slice", ["x"], ["y"], starts=[1, 0], ends=[3, 2], axes=[1, 0]), {}
    else:
        node = N("Slice", ["x", "st", "en", "ax"], ["y"])
        inits = {"st": np.array([1, 0], I64), "en": np.array([3, 2], I64),
                 "ax": np.array([1, 0], I64)}
    graph = check_vs_ort(make_model([node], {"x": (3, 4)}, ["y"], inits, opset=opset),
                         {"x": seeded_input((3, 4))})
    assert graph.nodes[0].attrs == expected
    assert graph.initializers == {}


@pytest.mark.parametrize("opset", [pytest.param(10, id="pad2_attrs"),
                                   pytest.param(13, id="pad13_inputs")])
def test_pad_attrs(opset, make_model, seeded_input, check_vs_ort) -> None:
    pads = [0, 0, 1, 2, 0, 0, 0, 1]
    if opset < 11:
        node, inits = N("Pad", ["x"], ["y"], pads=pads, value=2.5), {}
    else:
        node = N("Pad", ["x", "p", "v"], ["y"])
        inits = {"p": np.array(pads, I64), "v": np.array(2.5, F32)}
    graph = check_vs_ort(make_model([node], {"x": (1, 2, 3, 3)}, ["y"], inits, opset=opset),
                         {"x": seeded_input((1, 2, 3, 3))})
    assert graph.nodes[0].attrs == {"pads": tuple(pads), "mode": "constant", "value": 2.5}


def test_gather_indices_stay_a_constant_input(make_model, seeded_input, check_vs_ort) -> None:
    model = make_model([N("Gather", ["x", "idx"], ["y"], axis=1)], {"x": (2, 5)}, ["y"],
                       {"idx": np.array([[4, 0], [1, 1]], I64)})
    graph = check_vs_ort(model, {"x": seeded_input((2, 5))})
    idx = graph.nodes[0].inputs[1]
    assert idx.is_const and idx.name == "idx" and idx.const.tolist() == [[4, 0], [1, 1]]


# ------------------------------------------------------------------ names, provenance


def test_unnamed_nodes_get_generated_names_and_duplicates_are_made_unique(make_model) -> None:
    nodes = [N("Relu", ["x"], ["a"]), N("Sigmoid", ["a"], ["b"], name="act"),
             N("Tanh", ["b"], ["c"], name="act"), N("Mul", ["a", "c"], ["y"])]
    graph = import_onnx(make_model(nodes, {"x": (2, 3)}, ["y"]))
    assert [n.name for n in graph] == ["Relu_0", "act", "act_1", "Mul_3"]
    assert [n.provenance for n in graph] == [("Relu_0",), ("act",), ("act",), ("Mul_3",)]
    assert [n.output.name for n in graph] == ["a", "b", "c", "y"]


def test_constant_and_input_outputs_get_identity_nodes(make_model, seeded_input,
                                                       check_vs_ort) -> None:
    """A graph output that is a folded constant, or the input itself, still has a producer
    and the ONNX output name."""
    nodes = [N("Shape", ["x"], ["s"]), N("Relu", ["x"], ["r"])]
    model = make_model(nodes, {"x": (2, 3)}, ["s", "r"])
    graph = check_vs_ort(model, {"x": seeded_input((2, 3))})
    assert [v.name for v in graph.outputs] == ["s", "r"]
    assert graph.outputs[0].producer.op_type == "Identity"


# ------------------------------------------------------------------------ input shapes


def _symbolic_model(make_model):  # type: ignore[no-untyped-def]
    w = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(F32)
    return make_model([N("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])],
                      {"x": ("N", 3, "H", "W")}, ["y"], {"w": w})


def test_symbolic_spatial_dims_need_an_override(make_model) -> None:
    with pytest.raises(ImportError_, match=r"input 'x' has unknown dim\(s\) axis 2=H, axis 3=W"):
        import_onnx(_symbolic_model(make_model))


@pytest.mark.parametrize("shapes", [
    pytest.param({"x": (2, 3, 8, 6)}, id="dict"),
    pytest.param((2, 3, 8, 6), id="tuple"),
])
def test_input_shape_override(shapes, make_model, seeded_input, check_vs_ort) -> None:
    graph = check_vs_ort(_symbolic_model(make_model), {"x": seeded_input((2, 3, 8, 6))},
                         op="Conv", input_shapes=shapes)
    assert graph.inputs[0].shape == (2, 3, 8, 6)
    assert graph.outputs[0].shape == (2, 4, 8, 6)


@pytest.mark.parametrize(("shapes", "message"), [
    pytest.param({"y": (1, 3, 8, 8)}, r"names \['y'\], which are not model inputs \['x'\]",
                 id="unknown_name"),
    pytest.param({"x": (1, 3, 8)}, "gives rank 3", id="wrong_rank"),
])
def test_bad_input_shapes(shapes, message, make_model) -> None:
    with pytest.raises(ImportError_, match=message):
        import_onnx(_symbolic_model(make_model), input_shapes=shapes)


# ------------------------------------------------------------------------------ errors


def test_unsupported_ops_are_all_listed_at_once(make_model) -> None:
    nodes = [N("Relu", ["x"], ["a"], name="r")]
    prev = "a"
    for i in range(3):
        nodes.append(N("Hardmax", [prev], [f"h{i}"], name=f"hard{i}"))
        nodes.append(N("Celu", [f"h{i}"], [f"c{i}"] if i < 2 else ["y"],
                       name="" if i == 1 else f"celu{i}"))
        prev = f"c{i}"
    with pytest.raises(UnsupportedOpsError) as err:
        import_onnx(make_model(nodes, {"x": (2, 3)}, ["y"]))
    assert err.value.unsupported == {"Hardmax": ["hard0", "hard1", "hard2"],
                                     "Celu": ["celu0", "Celu_4", "celu2"]}
    msg = str(err.value)
    assert "\n" not in msg and "2 unsupported" in msg
    assert "Celu x3 ('celu0', 'Celu_4', 'celu2')" in msg and "Hardmax x3" in msg


def test_unsupported_domain_is_listed(make_model) -> None:
    nodes = [N("FusedConv", ["x"], ["y"], name="fused", domain="com.microsoft")]
    model = make_model(nodes, {"x": (2, 3)}, ["y"])
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    with pytest.raises(UnsupportedOpsError, match=r"com\.microsoft\.FusedConv x1 \('fused'\)"):
        import_onnx(model)


def test_opset_6_is_refused_naming_the_file(make_model, tmp_path: Path) -> None:
    path = tmp_path / "old.onnx"
    onnx.save(make_model([N("Relu", ["x"], ["y"])], {"x": (1, 2)}, ["y"], opset=6), path)
    with pytest.raises(ImportError_, match=rf"^{path}: ONNX opset 6 is older than 7"):
        import_onnx(path)


def test_external_data_is_loaded_from_beside_the_file(make_model, seeded_input, ort_run,
                                                      tmp_path: Path) -> None:
    w = np.random.default_rng(0).standard_normal((8, 16)).astype(F32)
    model = make_model([N("MatMul", ["x", "w"], ["y"])], {"x": (2, 8)}, ["y"], {"w": w})
    path = tmp_path / "ext.onnx"
    onnx.save_model(model, path, save_as_external_data=True, location="ext.weights",
                    size_threshold=0)
    assert (tmp_path / "ext.weights").stat().st_size == w.nbytes
    graph = import_onnx(path)
    np.testing.assert_array_equal(graph.initializers["w"].const, w)
    x = seeded_input((2, 8))
    check_close(fc.np_ops.run(graph, {"x": x})["y"], ort_run(path, {"x": x})["y"], op="MatMul")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImportError_, match=rf"^{tmp_path / 'nope.onnx'}: no such ONNX file$"):
        import_onnx(tmp_path / "nope.onnx")


def test_not_an_onnx_file(tmp_path: Path) -> None:
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\xff\xfe this is not a protobuf \x00\x01" * 10)
    with pytest.raises(ImportError_, match=rf"^{path}: ") as err:
        import_onnx(path)
    assert "\n" not in str(err.value)


def _error_case(key: str, make_model):  # type: ignore[no-untyped-def]
    w3 = np.ones((2, 3, 3), F32)
    cases = {
        "conv1d": ([N("Conv", ["x3", "w3"], ["y"], name="c1")], {"x3": (1, 3, 8)}, {"w3": w3}, 13),
        "reshape_runtime_shape": (
            [N("Cast", ["x"], ["xi"], to=TensorProto.INT64),
             N("ReduceMax", ["xi"], ["m"], keepdims=0, axes=[0, 1, 2, 3]),
             N("Reshape", ["x", "m"], ["y"], name="rs")], {"x": (1, 3, 2, 2)}, {}, 13),
        "maxpool_indices_used": (
            [N("MaxPool", ["x"], ["y", "idx"], name="mp", kernel_shape=[2, 2]),
             N("Cast", ["idx"], ["y2"], to=TensorProto.FLOAT)], {"x": (1, 3, 4, 4)}, {}, 13),
        "dropout_mask_used": (
            [N("Dropout", ["x"], ["y", "mask"], name="do"),
             N("Cast", ["mask"], ["y2"], to=TensorProto.FLOAT)], {"x": (1, 3, 4, 4)}, {}, 13),
        "bn_training_outputs_used": (
            [N("BatchNormalization", ["x", "s", "b", "m", "v"], ["y", "rm", "rv"], name="bn",
               training_mode=1)], {"x": (1, 3, 2, 2)},
            {k: np.ones(3, F32) for k in "sbmv"}, 15),
    }
    nodes, inputs, inits, opset = cases[key]
    outs = ["y"] + [o for n in nodes[1:] for o in n.output if o == "y2"]
    return make_model(nodes, inputs, outs, inits, opset=opset)


@pytest.mark.parametrize(("key", "message"), [
    pytest.param("reshape_runtime_shape", r"node 'rs' \(Reshape, opset 13\): input 1 \(shape\) "
                 "'m' must be a constant", id="runtime_shape"),
])
def test_conversion_errors_name_the_node(key, message, make_model) -> None:
    with pytest.raises(ImportError_, match=message) as err:
        import_onnx(_error_case(key, make_model))
    assert not isinstance(err.value, UnsupportedOpsError)
    assert "\n" not in str(err.value) and str(err.value).startswith("<ModelProto 'test'>: ")


@pytest.mark.parametrize(("key", "refused"), [
    pytest.param("conv1d", {"Conv(1-D)": ["c1"]}, id="conv1d"),
    pytest.param("maxpool_indices_used", {"MaxPool(Indices output used)": ["mp"]},
                 id="maxpool_idx"),
    pytest.param("dropout_mask_used", {"Dropout(mask output used)": ["do"]}, id="dropout_mask"),
    pytest.param("bn_training_outputs_used", {"BatchNormalization(training_mode=1)": ["bn"]},
                 id="bn_training"),
])
def test_refused_attribute_variants_are_unsupported_ops(key, refused, make_model) -> None:
    with pytest.raises(UnsupportedOpsError) as err:
        import_onnx(_error_case(key, make_model))
    assert err.value.unsupported == refused
    assert "\n" not in str(err.value) and str(err.value).startswith("<ModelProto 'test'>: ")


def test_every_refusal_of_a_model_is_in_one_error(make_model) -> None:
    """An unsupported op, a 3-D Conv (refused by its check, seen up front from its weight),
    a 3-D MaxPool whose rank is known only once its input is converted, and an unsupported
    op after a refused node: all listed in the one error, with node names and counts."""
    w5 = np.ones((2, 2, 1, 1, 1), F32)
    nodes = [
        N("Relu", ["x"], ["r"], name="relu"),
        N("Hardmax", ["r"], ["h"], name="hard"),
        N("Conv", ["r", "w5"], ["c"], name="conv3d"),
        N("Conv", ["c", "w5"], ["c2"], name="conv3d_b"),
        N("Relu", ["r"], ["r2"], name="relu2"),
        N("MaxPool", ["r2"], ["p"], name="pool3d", kernel_shape=[1, 1, 1]),
        N("Celu", ["c2"], ["y1"], name="celu_after_refused"),
        N("Add", ["h", "p"], ["y2"], name="add"),
    ]
    with pytest.raises(UnsupportedOpsError) as err:
        import_onnx(make_model(nodes, {"x": (1, 2, 4, 4, 4)}, ["y1", "y2"], {"w5": w5}))
    assert err.value.unsupported == {
        "Hardmax": ["hard"], "Conv(3-D)": ["conv3d", "conv3d_b"], "MaxPool(3-D)": ["pool3d"],
        "Celu": ["celu_after_refused"]}
    assert "Conv(3-D) x2 ('conv3d', 'conv3d_b')" in str(err.value)
    assert "4 unsupported ONNX (opset 13) op type(s)" in str(err.value)


def test_refusal_known_only_at_conversion_is_listed_with_the_others(make_model) -> None:
    """A MaxPool whose 3-D input comes out of a Reshape (unknown up front) is refused when
    reached, and listed with an unsupported op found up front."""
    nodes = [
        N("Reshape", ["x", "shape5"], ["r"], name="to5d"),
        N("MaxPool", ["r"], ["p"], name="pool3d", kernel_shape=[1, 1, 1]),
        N("Hardmax", ["x"], ["h"], name="hard"),
    ]
    model = make_model(nodes, {"x": (1, 2, 4, 4)}, ["p", "h"],
                       {"shape5": np.array([1, 2, 2, 2, 4], I64)})
    with pytest.raises(UnsupportedOpsError) as err:
        import_onnx(model)
    assert err.value.unsupported == {"MaxPool(3-D)": ["pool3d"], "Hardmax": ["hard"]}


@pytest.mark.parametrize(("attr", "message"), [
    pytest.param(helper.make_attribute("kernel_shape", 3),
                 r"attribute 'kernel_shape' must be a list of integers, got INT 3",
                 id="kernel_shape_int"),
    pytest.param(helper.make_attribute("dilations", [b"a", b"b"]),
                 r"attribute 'dilations' must be a list of integers, got STRINGS \[b'a', b'b'\]",
                 id="dilations_strings"),
    pytest.param(helper.make_attribute("group", 1.5),
                 r"attribute 'group' must be an integer, got FLOAT 1.5", id="group_float"),
])
def test_attribute_of_the_wrong_type_names_node_attribute_and_type(attr, message,
                                                                   make_model) -> None:
    node = N("Conv", ["x", "w"], ["y"], name="c")
    node.attribute.append(attr)
    model = make_model([node], {"x": (1, 2, 4, 4)}, ["y"], {"w": np.ones((2, 2, 1, 1), F32)})
    with pytest.raises(ImportError_, match=r"^<ModelProto 'test'>: node 'c' \(Conv, opset 13\): "
                       + message) as err:
        import_onnx(model)
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------------------- registry


def test_registry_lookup_is_by_opset() -> None:
    assert get_converter("Softmax", 11) is not get_converter("Softmax", 13)
    assert get_converter("Clip", 10) is not get_converter("Clip", 11)
    assert registry.find_converter("Resize", 9) is None
    assert registry.find_converter("Upsample", 10) is None
    with pytest.raises(ImportError_, match="no ONNX converter for 'Hardmax' at opset 13"):
        get_converter("Hardmax", 13)
    assert registry.find_folder("Range", 11) is not None
    assert registry.find_converter("Range", 11) is None  # folding only


def test_registering_an_overlapping_range_twice_raises() -> None:
    with pytest.raises(ValueError, match="'Softmax' registered twice"):
        converter("Softmax", since=12, until=14)(lambda ctx: None)
    with pytest.raises(ValueError, match="'Relu' registered twice"):
        converter("Relu")(lambda ctx: None)
    assert get_converter("Softmax", 13) is not None  # the table is unchanged
