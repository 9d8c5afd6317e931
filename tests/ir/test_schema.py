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

