"""Malformed ONNX files (issue 16): each minimal case is one line on stderr, exit 2, and no
output directory — never a traceback, a numpy warning before the line, or gigabytes
allocated."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from fc.cli import main

N = helper.make_node
F32 = np.float32


def _model(nodes, inits=(), x=(1, 2, 4, 4), outs=("y",), opset=13) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x))],
        [onnx.ValueInfoProto(name=o) for o in outs], list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _w(**edit) -> onnx.TensorProto:
    t = numpy_helper.from_array(np.ones((2, 2, 1, 1), F32), "w")
    for k, v in edit.items():
        setattr(t, k, v)
    return t


def _conv_with(attr: onnx.AttributeProto) -> onnx.ModelProto:
    node = N("Conv", ["x", "w"], ["y"], name="c")
    node.attribute.append(attr)
    return _model([node], [_w()])


def _op_with(op: str, attr: onnx.AttributeProto, opset: int = 13) -> onnx.ModelProto:
    node = N(op, ["x"], ["y"], name="n")
    node.attribute.append(attr)
    return _model([node], opset=opset)


def _patched(model: onnx.ModelProto, old: bytes, new: bytes) -> bytes:
    """The serialized model with ``old`` (a placeholder of the same length) replaced: the way
    to put bytes that are not UTF-8 into a string field, which protobuf refuses to set."""
    data = model.SerializeToString()
    assert old in data and len(old) == len(new)
    return data.replace(old, new)


def _pad_mode_not_utf8() -> bytes:
    node = N("Pad", ["x", "p"], ["y"], name="n", mode="MODEX")
    return _patched(_model([node], [numpy_helper.from_array(np.zeros(8, np.int64), "p")]),
                    b"MODEX", b"MOD\xffX")


def _string_shape() -> onnx.ModelProto:
    value = helper.make_tensor("v", TensorProto.STRING, [2], [b"1", b"-1"])
    return _model([N("Constant", [], ["s"], value=value), N("Reshape", ["x", "s"], ["y"])])


def _float_shape() -> onnx.ModelProto:
    return _model([N("Reshape", ["x", "s"], ["y"], name="rs")],
                  [numpy_helper.from_array(np.array([1.5, -1], F32), "s")])


def _big_constant() -> onnx.ModelProto:
    """137 bytes asking ConstantOfShape for 2e8 floats (800 MB)."""
    value = helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])
    return _model([N("ConstantOfShape", ["s"], ["big"], value=value, name="cos"),
                   N("Add", ["x", "big"], ["y"])],
                  [numpy_helper.from_array(np.array([200_000_000], np.int64), "s")], x=(1,))


def _broadcast_bomb() -> onnx.ModelProto:
    """Two 1-D 20000-element int constants compared by broadcasting: 4e8 bools."""
    a = numpy_helper.from_array(np.arange(20000, dtype=np.int64).reshape(1, -1), "a")
    b = numpy_helper.from_array(np.arange(20000, dtype=np.int64).reshape(-1, 1), "b")
    return _model([N("Equal", ["a", "b"], ["e"], name="eq"), N("Cast", ["e"], ["ef"], to=1),
                   N("Add", ["x", "ef"], ["y"])], [a, b], x=(1, 1))


def _nan_cast_then_unsupported() -> onnx.ModelProto:
    """Folding Cast(NaN -> int) makes numpy warn; the model is refused after it."""
    nan = numpy_helper.from_array(np.array([np.nan], F32), "nan")
    return _model([N("Cast", ["nan"], ["i"], to=TensorProto.INT64),
                   N("Hardmax", ["x"], ["y"], name="hard")], [nan])


CASES: dict[str, tuple[Callable[[], onnx.ModelProto | bytes], str]] = {
    "raw_data_too_short": (lambda: _model([N("Conv", ["x", "w"], ["y"])],
                                          [_w(raw_data=_w().raw_data[:5])]),
                           "initializer 'w': cannot be decoded"),
    "data_type_undefined": (lambda: _model([N("Conv", ["x", "w"], ["y"])], [_w(data_type=0)]),
                            "initializer 'w': ONNX element type UNDEFINED has no numpy dtype"),
    "data_type_99": (lambda: _model([N("Conv", ["x", "w"], ["y"])], [_w(data_type=99)]),
                     "initializer 'w': ONNX element type 99 has no numpy dtype"),
    "kernel_shape_int": (lambda: _conv_with(helper.make_attribute("kernel_shape", 1)),
                         "attribute 'kernel_shape' must be a list of integers, got INT 1"),
    "dilations_strings": (lambda: _conv_with(helper.make_attribute("dilations", [b"a", b"b"])),
                          "attribute 'dilations' must be a list of integers, got STRINGS"),
    "softmax_axis_ints": (lambda: _op_with("Softmax", helper.make_attribute("axis", [1])),
                          "attribute 'axis' must be an integer, got INTS [1]"),
    "split_axis_ints": (lambda: _op_with("Split", helper.make_attribute("axis", [1])),
                        "attribute 'axis' must be an integer, got INTS [1]"),
    "dropout_ratio_floats": (lambda: _op_with("Dropout", helper.make_attribute("ratio", [0.5]),
                                              opset=11),
                             "attribute 'ratio' must be a number, got FLOATS [0.5]"),
    "string_attribute_not_utf8": (_pad_mode_not_utf8,
                                  "attribute 'mode' must be a string, got bytes that are not "
                                  "UTF-8"),
    "op_type_not_utf8": (lambda: _patched(_model([N("Relu", ["x"], ["y"])]), b"Relu",
                                          b"R\xfflu"), "node #0 op_type b'R\\xfflu' is not UTF-8"),
    "node_name_not_utf8": (lambda: _patched(_model([N("Relu", ["x"], ["y"], name="NAMEX")]),
                                            b"NAMEX", b"NAM\xffX"),
                           "node #0 name b'NAM\\xffX' is not UTF-8"),
    "tensor_name_not_utf8": (lambda: _patched(_model([N("Relu", ["x"], ["TNAMEX"])],
                                                     outs=("TNAMEX",)), b"TNAMEX", b"TNAM\xffX"),
                             "is not UTF-8"),
    "string_constant_as_shape": (_string_shape, "element type STRING is not supported"),
    "float_constant_as_shape": (_float_shape, "input 1 (shape) 's' must be an integer tensor, "
                                              "got a float32 tensor"),
    "complex_initializer": (lambda: _model([N("Add", ["x", "c"], ["y"])], [
        numpy_helper.from_array(np.ones(1, np.complex64), "c")]),
        "initializer 'c': element type COMPLEX64 is not supported"),
    "constant_of_shape_2e8": (_big_constant, "node 'cos' (ConstantOfShape, opset 13): its "
                                             "folded output (float32[200000000]) would take "
                                             "763 MiB, above fc's limit of 512 MiB per tensor "
                                             "(raise it with --max-tensor-size)"),
    "broadcast_bomb": (_broadcast_bomb, "node 'eq' (Equal, opset 13): its folded output"),
    "numpy_warning_then_error": (_nan_cast_then_unsupported, "Hardmax x1 ('hard')"),
}


@pytest.mark.parametrize("case", [pytest.param(k, id=k) for k in CASES])
def test_malformed_model_is_one_line_exit_2(case: str, tmp_path: Path, capsys) -> None:
    make, fragment = CASES[case]
    model = make()
    path = tmp_path / "m.onnx"
    path.write_bytes(model if isinstance(model, bytes) else model.SerializeToString())
    out = tmp_path / "out"
    assert main(["compile", "onnx", str(path), "-o", str(out), "--no-png"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fcc: error: {path}: ") and err.count("\n") == 1, err
    assert fragment in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]  # no output, no temp


def test_external_data_of_the_wrong_length(tmp_path: Path, capsys) -> None:
    model = _model([N("Conv", ["x", "w"], ["y"])], [_w()])
    path = tmp_path / "m.onnx"
    onnx.save_model(model, path, save_as_external_data=True, location="w.bin",
                    size_threshold=0)
    (tmp_path / "w.bin").write_bytes(b"\0" * 5)
    assert main(["compile", "onnx", str(path), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot load its external data" in err, err


def test_declared_external_data_above_the_limit_is_refused_before_reading(tmp_path: Path,
                                                                          capsys) -> None:
    """External data is judged by its declared dims before a byte is read."""
    t = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1 << 20, 256])  # 1 GiB
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "w.bin"), ("offset", "0"), ("length", str(1 << 30))):
        t.external_data.add(key=k, value=v)
    path = tmp_path / "m.onnx"
    path.write_bytes(_model([N("Add", ["x", "w"], ["y"])], [t], x=(1, 256)).SerializeToString())
    assert main(["compile", "onnx", str(path)]) == 2
    err = capsys.readouterr().err
    assert "initializer 'w'" in err and "above fc's limit of 512 MiB" in err, err


def test_the_limit_can_be_raised(tmp_path: Path, capsys) -> None:
    value = helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])
    model = _model([N("ConstantOfShape", ["s"], ["big"], value=value, name="cos"),
                    N("Add", ["x", "big"], ["y"])],
                   [numpy_helper.from_array(np.array([1 << 18], np.int64), "s")], x=(1,))
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    assert main(["compile", "onnx", str(path), "-o", str(tmp_path / "a"), "--no-png",
                 "--max-tensor-size", "512K"]) == 2
    assert "above fc's limit of 512 KiB per tensor" in capsys.readouterr().err
    assert main(["compile", "onnx", str(path), "-o", str(tmp_path / "b"), "--no-png",
                 "--max-tensor-size", "2M"]) == 0
