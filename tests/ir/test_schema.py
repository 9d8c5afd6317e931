"""Op schemas: attribute completion and coercion, the registry, and its error messages."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import fc.ir.schema as schema_mod
from fc.errors import SchemaError
from fc.ir import Graph, get_schema
from fc.ir.schema import FLOAT, INT, INTS, Attr, TensorType, complete_attrs, register_op


def test_complete_attrs_fills_defaults_in_schema_order() -> None:
    # The ONNX defaults, written out: strides/dilations 1, no padding, one group, no fused act.
    got = complete_attrs("Conv", {"group": 2})
    assert got == {"strides": (1, 1), "pads": (0, 0, 0, 0), "dilations": (1, 1), "group": 2,
                   "activation": "", "act_alpha": 0.0, "act_beta": 0.0}
    assert list(got) == ["strides", "pads", "dilations", "group", "activation", "act_alpha",
                         "act_beta"]


@pytest.mark.parametrize("op, attrs, name, expected", [
    pytest.param("Conv", {"strides": [2, 2]}, "strides", (2, 2), id="list_to_tuple"),
    pytest.param("Conv", {"strides": (np.int64(2), 3)}, "strides", (2, 3), id="numpy_ints_in_tuple"),
    pytest.param("Conv", {"pads": np.array([1, 1, 1, 1])}, "pads", (1, 1, 1, 1), id="numpy_1d_array"),
    pytest.param("Conv", {"group": np.int32(4)}, "group", 4, id="numpy_int_scalar"),
    pytest.param("LeakyRelu", {"alpha": 1}, "alpha", 1.0, id="int_to_float"),
    pytest.param("LeakyRelu", {"alpha": np.float32(0.5)}, "alpha", 0.5, id="numpy_float"),
    pytest.param("Resize", {"scales": [1, 1, 2, 2]}, "scales", (1.0, 1.0, 2.0, 2.0),
                 id="ints_to_floats"),
    pytest.param("Pad", {"pads": (0,) * 8, "mode": np.str_("edge")}, "mode", "edge", id="numpy_str"),
])
def test_complete_attrs_coerces_to_canonical_types(op: str, attrs: dict[str, Any], name: str,
                                                   expected: Any) -> None:
    got = complete_attrs(op, attrs)[name]
    assert got == expected
    assert type(got) is type(expected)
    if isinstance(got, tuple):
        assert [type(v) for v in got] == [type(v) for v in expected]


@pytest.mark.parametrize("op, attrs, pattern", [
    pytest.param("Conv", {"group": "3"}, r"Conv attribute 'group' must be int, got str '3'",
                 id="group_str"),
    pytest.param("Conv", {"group": 2.0}, r"Conv attribute 'group' must be int, got float", id="group_float"),
    pytest.param("Conv", {"group": True}, r"Conv attribute 'group' must be int, got bool", id="group_bool"),
    pytest.param("Conv", {"strides": 2}, r"Conv attribute 'strides' must be a list \(ints\), got int 2",
                 id="strides_not_list"),
    pytest.param("Conv", {"strides": (1, "2")},
                 r"Conv attribute 'strides' must be ints, but element 1 is str '2'", id="strides_elem_str"),
    pytest.param("Conv", {"strides": None}, r"'strides' must be a list \(ints\), got NoneType",
                 id="strides_none"),
    pytest.param("LeakyRelu", {"alpha": True}, r"LeakyRelu attribute 'alpha' must be float, got bool",
                 id="alpha_bool"),
    pytest.param("LeakyRelu", {"alpha": "0.1"}, r"'alpha' must be float, got str", id="alpha_str"),
    pytest.param("Clip", {"max": float("inf")}, r"Clip attribute 'max' must be finite", id="float_inf"),
    pytest.param("Pad", {"pads": (0,) * 8, "mode": 1}, r"Pad attribute 'mode' must be string, got int",
                 id="mode_int"),
    pytest.param("Resize", {"scales": (1.0, "x")}, r"'scales' must be floats, but element 1 is str",
                 id="floats_elem_str"),
])
def test_wrong_attribute_type_names_op_attribute_and_type(op: str, attrs: dict[str, Any],
                                                         pattern: str) -> None:
    with pytest.raises(SchemaError, match=pattern):
        complete_attrs(op, attrs, f"node 'n1' ({op})")


def test_attribute_error_names_the_node() -> None:
    g = Graph()
    x = g.add_input("x", (1, 4))
    with pytest.raises(SchemaError, match=r"^node 'act7' \(LeakyRelu\): LeakyRelu attribute 'alpha'"):
        g.add_node("LeakyRelu", [x], {"alpha": True}, name="act7")
    assert len(g) == 0


def test_unknown_attribute_raises_naming_it() -> None:
    with pytest.raises(SchemaError, match=r"node 'c1' \(Conv\): unknown attribute\(s\) \['padding'\] "
                                          r"for Conv"):
        complete_attrs("Conv", {"padding": 1}, "node 'c1' (Conv)")


def test_missing_required_attribute_raises_naming_it() -> None:
    with pytest.raises(SchemaError, match=r"MaxPool attribute 'kernel_shape' is required"):
        complete_attrs("MaxPool", {"strides": (2, 2)})


def test_get_schema_of_unknown_op_names_it() -> None:
    with pytest.raises(SchemaError, match=r"unknown op 'FancyConv'"):
        get_schema("FancyConv")


def test_add_node_of_unknown_op_names_it() -> None:
    g = Graph()
    x = g.add_input("x", (1,))
    with pytest.raises(SchemaError, match=r"unknown op 'Frobnicate'"):
        g.add_node("Frobnicate", [x])


@pytest.fixture
def scratch_registry(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A copy of the registry, so test registrations do not leak into other tests."""
    reg = dict(schema_mod.all_schemas())
    monkeypatch.setattr(schema_mod, "_REGISTRY", reg)
    return reg


def test_registering_an_op_twice_raises(scratch_registry: dict[str, Any]) -> None:
    before = scratch_registry["Relu"]
    with pytest.raises(ValueError, match=r"op schema 'Relu' registered twice"):
        register_op("Relu", inputs=("X",))(lambda x: x)
    assert scratch_registry["Relu"] is before


def test_register_op_canonicalizes_defaults(scratch_registry: dict[str, Any]) -> None:
    @register_op("TestDefaults", inputs=("X",),
                 attrs={"f": Attr(FLOAT, 0), "k": Attr(INTS, [3, 3]), "n": Attr(INT)})
    def rule(x, *, f, k, n):
        return x

    attrs = get_schema("TestDefaults").complete({"n": 1})
    assert attrs == {"f": 0.0, "k": (3, 3), "n": 1}
    assert type(attrs["f"]) is float and type(attrs["k"]) is tuple


def test_register_op_rejects_a_bad_default(scratch_registry: dict[str, Any]) -> None:
    with pytest.raises(SchemaError, match=r"TestBadDefault attribute 'k' must be a list"):
        register_op("TestBadDefault", inputs=("X",), attrs={"k": Attr(INTS, 3)})(lambda x, *, k: x)
    assert "TestBadDefault" not in scratch_registry


def test_register_op_rejects_a_rule_whose_keywords_differ(scratch_registry: dict[str, Any]) -> None:
    def rule(x, *, axis):
        return x

    with pytest.raises(ValueError, match=r"'TestSig'.*keyword-only \['axis'\].*\['axes'\]"):
        register_op("TestSig", inputs=("X",), attrs={"axes": Attr(INTS, ())})(rule)
    assert "TestSig" not in scratch_registry


def test_attr_of_unknown_type_raises() -> None:
    with pytest.raises(ValueError, match="unknown attribute type 'tensor'"):
        Attr("tensor")


def test_shape_rule_crash_becomes_schema_error(scratch_registry: dict[str, Any]) -> None:
    @register_op("TestCrash", inputs=("X",))
    def rule(x):
        return TensorType((x.shape[5],), x.dtype)  # IndexError on rank-2 input

    g = Graph()
    x = g.add_input("x", (1, 2))
    with pytest.raises(SchemaError, match=r"node 'boom' \(TestCrash\): shape inference failed: IndexError"):
        g.add_node("TestCrash", [x], name="boom")


def test_shape_rule_with_wrong_output_count_is_caught(scratch_registry: dict[str, Any]) -> None:
    @register_op("TestTwo", inputs=("X",))
    def rule(x):
        return [TensorType(x.shape, x.dtype)] * 2

    g = Graph()
    x = g.add_input("x", (1, 2))
    with pytest.raises(SchemaError, match=r"gives 2 output\(s\), the node has 1"):
        g.add_node("TestTwo", [x])



# -- input roles and the weight's output-channel axis -----------------------------------------
def _layer_case(kind: str):
    """(node, weight array, torch function of the weight computing the layer's output with
    output channels on axis 1 (or last for MatMul))."""
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(0)
    shapes = {  # kind -> (op, x shape, w shape, attrs)
        "conv": ("Conv", (1, 3, 5, 5), (4, 3, 3, 3), {}),
        "conv_group2": ("Conv", (1, 4, 5, 5), (6, 2, 3, 3), {"group": 2}),
        "conv_transpose": ("ConvTranspose", (1, 3, 4, 4), (3, 4, 3, 3), {}),
        "conv_transpose_group2": ("ConvTranspose", (1, 4, 4, 4), (4, 3, 3, 3), {"group": 2}),
        "gemm": ("Gemm", (3, 8), (8, 5), {}),
        "gemm_transB": ("Gemm", (3, 8), (5, 8), {"transB": 1}),
        "matmul_batched": ("MatMul", (2, 3, 8), (2, 8, 5), {}),
        "scale": ("Scale", (2, 3, 4, 4), (3,), {}),
    }
    op, xs, ws, attrs = shapes[kind]
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    g = Graph()
    node = g.add_node(op, [g.add_input("x", xs), g.add_const("w", w)], attrs)
    tx = torch.from_numpy(x)
    fns = {
        "Conv": lambda w: F.conv2d(tx, torch.from_numpy(w), groups=attrs.get("group", 1)),
        "ConvTranspose": lambda w: F.conv_transpose2d(tx, torch.from_numpy(w),
                                                      groups=attrs.get("group", 1)),
        "Gemm": lambda w: tx @ (torch.from_numpy(w).T if attrs.get("transB") else torch.from_numpy(w)),
        "MatMul": lambda w: tx @ torch.from_numpy(w),
        "Scale": lambda w: tx * torch.from_numpy(w)[:, None, None],
    }
    return node, w, (lambda w: fns[op](np.ascontiguousarray(w)).numpy()), -1 if op == "MatMul" else 1


LAYERS = ["conv", "conv_group2", "conv_transpose", "conv_transpose_group2", "gemm", "gemm_transB",
          "matmul_batched", "scale"]


@pytest.mark.parametrize("kind", [pytest.param(k, id=k) for k in LAYERS])
def test_weight_by_out_channel_holds_exactly_what_each_output_channel_reads(kind: str) -> None:
    """Zeroing row m of ``weight_by_out_channel`` zeroes output channel m (torch computes it)
    and nothing else: the definition of the output-channel slice."""
    node, w, layer, ch_axis = _layer_case(kind)
    rows = schema_mod.weight_by_out_channel(node, w)
    ref = np.moveaxis(layer(w), ch_axis, 0)
    assert rows.shape[0] == ref.shape[0]  # one row per output channel
    np.testing.assert_array_equal(schema_mod.weight_from_out_channel(node, rows), w)
    for m in (0, rows.shape[0] - 1):
        cut = rows.copy()
        cut[m] = 0
        y = np.moveaxis(layer(schema_mod.weight_from_out_channel(node, cut)), ch_axis, 0)
        assert not np.any(y[m])
        others = [i for i in range(len(ref)) if i != m]
        np.testing.assert_allclose(y[others], ref[others], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind, axis, groups", [
    pytest.param("conv", 0, 1, id="conv"),
    pytest.param("conv_group2", 0, 1, id="conv_group2"),
    pytest.param("conv_transpose", 1, 1, id="conv_transpose"),
    pytest.param("conv_transpose_group2", 1, 2, id="conv_transpose_group2"),
    pytest.param("gemm", 1, 1, id="gemm"),
    pytest.param("gemm_transB", 0, 1, id="gemm_transB"),
    pytest.param("matmul_batched", 2, 1, id="matmul_last_axis"),
    pytest.param("scale", 0, 1, id="scale"),
])
def test_weight_out_axis(kind: str, axis: int, groups: int) -> None:
    node = _layer_case(kind)[0]
    assert (schema_mod.weight_out_axis(node), schema_mod.weight_groups(node)) == (axis, groups)


@pytest.mark.parametrize("op, roles", [
    pytest.param("Conv", ["data", "weight", "bias"], id="conv"),
    pytest.param("ConvTranspose", ["data", "weight", "bias"], id="conv_transpose"),
    pytest.param("Gemm", ["data", "weight", "bias"], id="gemm"),
    pytest.param("Scale", ["data", "weight", "bias"], id="scale"),
    pytest.param("BatchNormalization", ["data", "param", "param", "param", "param"], id="bn"),
    pytest.param("PRelu", ["data", "param"], id="prelu"),
    pytest.param("Add", ["data", "data"], id="add"),
])
def test_input_roles(op: str, roles: list[str]) -> None:
    assert [s.role for s in get_schema(op).inputs] == roles
    assert [schema_mod.input_role(op, i) for i in range(len(roles))] == roles


def test_variadic_input_role_and_ops_without_weight() -> None:
    assert schema_mod.input_role("Concat", 5) == "data"
    assert schema_mod.weight_input("Relu") is None and schema_mod.weight_input("Gemm") == 1
    g = Graph()
    node = g.add_node("Relu", [g.add_input("x", (2,))])
    with pytest.raises(SchemaError, match="has no weight input"):
        schema_mod.weight_out_axis(node)


def test_register_op_rejects_inconsistent_roles() -> None:
    def rule(x, w):
        return x

    with pytest.raises(ValueError, match="role 'weights'"):
        register_op("_BadRole", inputs=("X", "W"), roles={"W": "weights"}, weight_axis=0)(rule)
    with pytest.raises(ValueError, match="roles name unknown inputs"):
        register_op("_BadRole", inputs=("X", "W"), roles={"K": "weight"}, weight_axis=0)(rule)
    with pytest.raises(ValueError, match="weight_axis go together"):
        register_op("_BadRole", inputs=("X", "W"), roles={"W": "weight"})(rule)
    assert not schema_mod.has_schema("_BadRole")
