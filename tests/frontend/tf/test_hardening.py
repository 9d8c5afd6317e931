"""Hostile frozen GraphDefs (issue 16): a declared constant above fc's limit is refused
before TensorFlow allocates it, a constant TF cannot decode is one line, and folding is
judged by the shape TF infers before it runs — one line, exit 2, no output."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from fc.cli import main

tf = pytest.importorskip("tensorflow")


def _node(gd, name: str, op: str, inputs=(), **attrs):
    n = gd.node.add()
    n.name, n.op = name, op
    n.input.extend(inputs)
    for k, v in attrs.items():
        n.attr[k].CopyFrom(v)
    return n


def _dtype(t):  # noqa: ANN202 - an AttrValue
    return tf.compat.v1.AttrValue(type=t.as_datatype_enum)


def _const(gd, name: str, array: np.ndarray):
    proto = tf.make_tensor_proto(array)
    return _node(gd, name, "Const", dtype=_dtype(tf.as_dtype(array.dtype)),
                 value=tf.compat.v1.AttrValue(tensor=proto))


def _graph(body: Callable) -> bytes:
    """x (Placeholder [1, 4]) + whatever ``body`` makes of it, read by an Identity 'out'."""
    gd = tf.compat.v1.GraphDef()
    shape = tf.TensorShape([1, 4]).as_proto()
    _node(gd, "x", "Placeholder", dtype=_dtype(tf.float32),
          shape=tf.compat.v1.AttrValue(shape=shape))
    last = body(gd)
    _node(gd, "out", "Identity", [last], T=_dtype(tf.float32))
    return gd.SerializeToString()


def _filled_constant(gd) -> str:
    """A few bytes declaring 2e8 floats: one float_val fills the declared shape."""
    c = _const(gd, "big", np.ones(1, np.float32))
    t = c.attr["value"].tensor
    del t.tensor_shape.dim[:]
    t.tensor_shape.dim.add(size=200_000_000)
    _node(gd, "add", "AddV2", ["x", "big"], T=_dtype(tf.float32))
    return "add"


def _unknown_dtype(gd) -> str:
    c = _const(gd, "c", np.ones(4, np.float32))
    c.attr["value"].tensor.dtype = 99
    _node(gd, "add", "AddV2", ["x", "c"], T=_dtype(tf.float32))
    return "add"


def _short_content(gd) -> str:
    c = _const(gd, "c", np.arange(4, dtype=np.float32))
    t = c.attr["value"].tensor
    t.tensor_content = t.tensor_content[:5]
    _node(gd, "add", "AddV2", ["x", "c"], T=_dtype(tf.float32))
    return "add"


def _fill(gd) -> str:
    """Fill([20000, 20000], 1.0): 1.6 GB folded by TF if nobody asks first."""
    _const(gd, "dims", np.array([20000, 20000], np.int32))
    _const(gd, "one", np.array(1.0, np.float32))
    _node(gd, "fill", "Fill", ["dims", "one"], T=_dtype(tf.float32),
          index_type=_dtype(tf.int32))
    _node(gd, "add", "AddV2", ["x", "fill"], T=_dtype(tf.float32))
    return "add"


def _broadcast(gd) -> str:
    _const(gd, "a", np.ones((20000, 1), np.float32))
    _const(gd, "b", np.ones((1, 20000), np.float32))
    _node(gd, "ab", "Mul", ["a", "b"], T=_dtype(tf.float32))
    _node(gd, "add", "AddV2", ["x", "ab"], T=_dtype(tf.float32))
    return "add"


def _input_dtype_0(gd) -> str:
    """Found by fc.fuzz: a Placeholder of element type 0 (DT_INVALID)."""
    gd.node[0].attr["dtype"].type = 0
    return "x"


CASES = {
    "input_dtype_0": (_input_dtype_0, "input 'x' has TF element type 0, which has no numpy "
                                      "dtype"),
    "filled_constant_2e8": (_filled_constant, "node 'big' (Const): its value "
                                              "(float32[200000000]) would take 763 MiB, above "
                                              "fc's limit of 512 MiB per tensor"),
    "unknown_dtype": (_unknown_dtype, "node 'c' (Const): constant of TF element type 99"),
    "short_tensor_content": (_short_content, "node 'c' (Const): its value cannot be decoded"),
    "fill_20000x20000": (_fill, "node 'fill' (Fill): its folded output (float32[20000, 20000])"),
    "broadcast_bomb": (_broadcast, "node 'ab' (Mul): its folded output (float32[20000, 20000])"),
}


@pytest.mark.parametrize("case", [pytest.param(k, id=k) for k in CASES])
def test_hostile_graph_def_is_one_line_exit_2(case: str, tmp_path: Path, capsys) -> None:
    body, fragment = CASES[case]
    path = tmp_path / "m.pb"
    path.write_bytes(_graph(body))
    assert main(["compile", "tf", str(path), "-o", str(tmp_path / "out"), "--no-png"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fcc: error: {path}: ") and err.count("\n") == 1, err
    assert fragment in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pb"]


def test_the_limit_can_be_raised_for_a_graph_def(tmp_path: Path, capsys) -> None:
    def body(gd) -> str:  # x + sum(Fill([300, 300], 1.0)): a 352 KiB folded constant
        _const(gd, "dims", np.array([300, 300], np.int32))
        _const(gd, "one", np.array(1.0, np.float32))
        _node(gd, "fill", "Fill", ["dims", "one"], T=_dtype(tf.float32),
              index_type=_dtype(tf.int32))
        _const(gd, "axes", np.array([0, 1], np.int32))
        _node(gd, "s", "Sum", ["fill", "axes"], T=_dtype(tf.float32), Tidx=_dtype(tf.int32))
        _node(gd, "add", "AddV2", ["x", "s"], T=_dtype(tf.float32))
        return "add"

    path = tmp_path / "m.pb"
    path.write_bytes(_graph(body))
    assert main(["compile", "tf", str(path), "-o", str(tmp_path / "a"), "--no-png",
                 "--max-tensor-size", "100K"]) == 2
    assert "above fc's limit of 100 KiB per tensor" in capsys.readouterr().err
    assert main(["compile", "tf", str(path), "-o", str(tmp_path / "b"), "--no-png",
                 "--max-tensor-size", "1M"]) == 0


def _keras_file(tmp_path: Path, units: int) -> Path:
    """A saved Dense(4) model whose config then declares ``units`` (its weights file keeps
    the 4-unit kernel): what an edited or hostile .keras looks like."""
    import json
    import zipfile

    keras = pytest.importorskip("keras")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, name="d")])
    src = tmp_path / "src.keras"
    model.save(src)
    path = tmp_path / "m.keras"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(path, "w") as zout:
        for info in zin.infolist():
            raw = zin.read(info)
            if info.filename == "config.json":
                config = json.loads(raw)
                config["config"]["layers"][-1]["config"]["units"] = units
                raw = json.dumps(config).encode()
            zout.writestr(info, raw)
    src.unlink()
    return path


def test_keras_config_declaring_a_huge_layer_is_refused_before_keras_builds_it(
        tmp_path: Path, capsys) -> None:
    """Keras allocates a layer's weights from the config before reading the weights file;
    fc judges each one first (the limit lowered so a failure of the guard stays small)."""
    path = _keras_file(tmp_path, 300_000)
    assert main(["compile", "tf", str(path), "-o", str(tmp_path / "out"), "--no-png",
                 "--max-tensor-size", "1M"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert f"{path}: layer 'd': weight 'kernel' (float32[4, 300000]) would take 4.58 MiB, " \
           "above fc's limit of 1 MiB per tensor" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras"]


def test_keras_layers_are_built_as_usual_after_a_load(tmp_path: Path, capsys) -> None:
    """The guard is fc's only while it loads a file: a Keras model built afterwards (and
    the file itself, at its real size) is not judged by it."""
    keras = pytest.importorskip("keras")
    path = _keras_file(tmp_path, 4)
    assert main(["compile", "tf", str(path), "-o", str(tmp_path / "out"), "--no-png"]) == 0
    from keras.src.layers.layer import Layer

    assert Layer.add_weight.__module__.startswith("keras"), Layer.add_weight
    assert keras.layers.Dense(300_000)(keras.ops.zeros((1, 4))).shape == (1, 300_000)
