"""The typed attribute readers every frontend shares: defaults, required attributes, literal
arguments by position (ATen calls), and errors naming the node, the attribute and its type."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

from fc.errors import ImportError_
from fc.frontend.attrs import LiteralAttrs
from fc.frontend.mxnet.context import MxAttrs

WHERE = "m.onnx: node 'c' (Conv)"
W = re.escape(WHERE)


def _attrs(**values: Any) -> LiteralAttrs:
    return LiteralAttrs(values, WHERE)


@pytest.mark.parametrize(("kind", "value", "expected"), [
    pytest.param("int", 3, 3, id="int"),
    pytest.param("int", np.int64(3), 3, id="numpy_int"),
    pytest.param("float", 2, 2.0, id="float_from_int"),
    pytest.param("bool", 1, True, id="bool_from_onnx_int"),
    pytest.param("bool", False, False, id="bool"),
    pytest.param("str", b"SAME_UPPER", "SAME_UPPER", id="str_from_utf8_bytes"),
    pytest.param("ints", [1, 2], (1, 2), id="ints"),
    pytest.param("opt_ints", [None, 2], (None, 2), id="opt_ints"),
    pytest.param("floats", [1, 2.5], (1.0, 2.5), id="floats"),
    pytest.param("strs", [b"a", "b"], ("a", "b"), id="strs"),
])
def test_typed_reads(kind: str, value: Any, expected: Any) -> None:
    got = getattr(_attrs(v=value), kind)("v")
    assert got == expected and type(got) is type(expected)


def test_defaults_required_and_none() -> None:
    a = _attrs(present=2, unset=None)
    assert a.int("absent", 7) == 7 and a.ints("absent", [1, 1]) == (1, 1)
    assert a.int("absent", None) is None and a.int("unset", 5) == 5  # None is "no value"
    assert a.has("present") and not a.has("unset") and a.names() == ["present"]
    with pytest.raises(ImportError_, match=rf"^{W}: attribute 'absent' is required but "
                                           "missing$"):
        a.int("absent")


@pytest.mark.parametrize(("kind", "value", "message"), [
    pytest.param("ints", 3, "must be a list of integers, got int 3", id="int_for_ints"),
    pytest.param("int", [1], r"must be an integer, got list \[1\]", id="ints_for_int"),
    pytest.param("int", True, "must be an integer, got bool True", id="bool_for_int"),
    pytest.param("int", 1.5, "must be an integer, got float 1.5", id="float_for_int"),
    pytest.param("bool", 2, "must be a bool, got int 2", id="int_2_for_bool"),
    pytest.param("float", "x", "must be a number, got str 'x'", id="str_for_float"),
    pytest.param("str", b"\xff\xfe", r"must be a string, got bytes that are not UTF-8 text",
                 id="non_utf8"),
    pytest.param("ints", [1, None], r"must be a list of integers, got \[1, None\] \(with None\)",
                 id="none_in_ints"),
    pytest.param("tensor", [1], r"must be a tensor, got list \[1\]", id="list_for_tensor"),
])
def test_wrong_type_names_node_attribute_and_actual_type(kind: str, value: Any,
                                                         message: str) -> None:
    with pytest.raises(ImportError_, match=rf"^{W}: attribute 'v' {message}") as err:
        getattr(_attrs(v=value), kind)("v")
    assert "\n" not in str(err.value)


def test_source_type_names_appear_in_errors() -> None:
    a = LiteralAttrs({"kernel_shape": 3}, WHERE, kinds={"kernel_shape": "INT"})
    with pytest.raises(ImportError_, match="'kernel_shape' must be a list of integers, got INT 3"):
        a.ints("kernel_shape")


def test_literal_arguments_by_position_like_an_aten_call() -> None:
    """aten.convolution(input, weight, bias, stride, padding, dilation, transposed,
    output_padding, groups): the tensors are inputs, the rest literals, by name or position."""
    names = ["stride", "padding", "dilation", "transposed", "output_padding", "groups"]
    a = LiteralAttrs(dict(zip(names, ([2, 2], [1, 1], [1, 1], False, [0, 0], 1))),
                     "m.pt2: node 'conv' (aten.convolution.default)", positional=names)
    assert a.ints(0) == (2, 2) == a.ints("stride")
    assert a.bool(3) is False and a.int(5) == 1
    with pytest.raises(ImportError_, match=r"node 'conv' \(aten.convolution.default\): argument "
                                           r"3 'transposed' must be an integer, got bool False"):
        a.int(3)
    with pytest.raises(ImportError_, match=r"no literal argument 6 \(the call has 6\)"):
        a.int(6)


@pytest.mark.parametrize(("kind", "text", "expected"), [
    pytest.param("ints", "(3, 3)", (3, 3), id="tuple"),
    pytest.param("ints", "[1,2]", (1, 2), id="list"),
    pytest.param("ints", "3", (3,), id="bare"),
    pytest.param("opt_ints", "(None, 2)", (None, 2), id="opt"),
    pytest.param("int", "4L", 4, id="py2_long"),
    pytest.param("bool", "True", True, id="bool"),
    pytest.param("float", "1e-05", 1e-5, id="float"),
])
def test_mxnet_strings_parse(kind: str, text: str, expected: Any) -> None:
    assert getattr(MxAttrs({"v": text}, WHERE), kind)("v") == expected


@pytest.mark.parametrize(("kind", "text", "message"), [
    pytest.param("ints", "(a, b)", r"must be a list of integers, got '\(a, b\)'", id="ints"),
    pytest.param("int", "1.5", "must be an integer, got '1.5'", id="int"),
    pytest.param("bool", "yes", "must be a bool, got 'yes'", id="bool"),
])
def test_mxnet_bad_strings_name_the_attribute(kind: str, text: str, message: str) -> None:
    with pytest.raises(ImportError_, match=rf"^{W}: attribute 'v' {message}$"):
        getattr(MxAttrs({"v": text}, WHERE), kind)("v")
    assert getattr(MxAttrs({"v": "None"}, WHERE), kind)("v", None) is None
