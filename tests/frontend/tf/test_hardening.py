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


# -- SavedModel directories and HDF5 files: judged by what they declare -------------------

def _keras_model():  # noqa: ANN202
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, name="conv"),
                             keras.layers.GlobalAveragePooling2D(name="gap"),
                             keras.layers.Dense(5, name="fc")])


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    """A SavedModel directory, an .h5 and a .keras file of one small Keras model."""
    import warnings

    root = tmp_path_factory.mktemp("tf_sources")
    model = _keras_model()
    model.export(str(root / "saved"), verbose=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # .h5 is legacy
        model.save(root / "m.h5")
    model.save(root / "m.keras")
    return root


def _copy_saved(sources: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(sources / "saved", tmp_path / "saved"))


def _edit_saved_model(path: Path, edit: Callable) -> None:
    from tensorflow.core.protobuf import saved_model_pb2

    sm = saved_model_pb2.SavedModel()
    sm.ParseFromString((path / "saved_model.pb").read_bytes())
    edit(sm.meta_graphs[0])
    (path / "saved_model.pb").write_bytes(sm.SerializeToString())


def _index_entry_declares(path: Path, dims: tuple[int, ...] = (200_000_000,)) -> str:
    """The checkpoint entry of conv's kernel declares float32[2e8] (its data stays 432 bytes):
    TF's restore allocates the declared tensor before it reads the data."""
    from fc.frontend.tf.declared import checkpoint_index_entries, write_checkpoint_index

    index = path / "variables" / "variables.index"
    entries, name = [], None
    for key, value in checkpoint_index_entries(index):
        if key and name is None and [d.size for d in _entry(value).shape.dim] == [3, 3, 3, 4]:
            e = _entry(value)
            del e.shape.dim[:]
            for d in dims:
                e.shape.dim.add(size=d)
            value = e.SerializeToString()
            name = key.decode()
        entries.append((key, value))
    index.write_bytes(write_checkpoint_index(entries))
    if dims != (200_000_000,):
        return f"{index}: tensor {name!r} declares shape {list(dims)}, which no tensor has"
    return f"{index}: tensor {name!r} (float32[200000000]) would take 763 MiB, above fc's " \
           "limit of 512 MiB per tensor"


def _index_entry_negative_dim(path: Path) -> str:
    """Found by fc.fuzz: TF's checkpoint reader aborts the whole process (a CHECK failure
    in TensorShape) on a negative dim, so fc reads the index first."""
    return _index_entry_declares(path, (3, 3, -3, 4))


def _index_entry_overflowing_dims(path: Path) -> str:
    """Found by the 10-minute run: no element ([..., 0, ...]) but a running product above
    int64 on the way, the same abort."""
    return _index_entry_declares(path, (2**31 - 1, 2**62, 0, 1, 2**62))


def _index_entry_255_dims(path: Path) -> str:
    return _index_entry_declares(path, (1,) * 255)


def _entry(value: bytes):  # noqa: ANN202
    from tensorflow.core.protobuf import tensor_bundle_pb2

    e = tensor_bundle_pb2.BundleEntryProto()
    e.ParseFromString(value)
    return e


def _object_graph_variable(path: Path) -> str:
    def edit(meta) -> None:
        for node in meta.object_graph_def.nodes:
            if node.WhichOneof("kind") == "variable":
                node.variable.shape.dim[0].size = 100_000_000
                return

    _edit_saved_model(path, edit)
    return "/conv/kernel' (float32[100000000, 3, 3, 4]) would take 13.4 GiB"


def _declare_function_const(path: Path, dtype: int, size: int, values: tuple = ()) -> str:
    """Make the first Const of the saved ``__call__`` function a ``dtype`` tensor declared
    ``[size]`` that holds only the float ``values`` (TF fills the rest); returns where it is,
    as fc's error names it."""
    where: list[str] = []

    def edit(meta) -> None:
        for fn in meta.graph_def.library.function:
            for node in fn.node_def:
                if node.op == "Const" and fn.signature.name.startswith("__inference___call_"):
                    t = node.attr["value"].tensor
                    node.attr["dtype"].type = t.dtype = dtype
                    t.ClearField("tensor_content")
                    t.ClearField("int_val")
                    t.float_val[:] = values
                    del t.tensor_shape.dim[:]
                    t.tensor_shape.dim.add(size=size)
                    where.append(f"function {fn.signature.name!r}: node {node.name!r} (Const)")
                    return

    _edit_saved_model(path, edit)
    return where[0]


def _function_constant(path: Path) -> str:
    """One float_val filling a Const declared [2e8] inside the saved function."""
    where = _declare_function_const(path, 1, 200_000_000, (1.0,))  # DT_FLOAT
    return f"{where}: attribute 'value' (float32[200000000]) would take 763 MiB"


def _variable_op(path: Path) -> str:
    def edit(meta) -> None:
        for node in meta.graph_def.node:
            if node.op == "VarHandleOp":
                node.attr["shape"].shape.dim[0].size = 10**9
                edit.name = node.name
                return

    _edit_saved_model(path, edit)
    return f"variable {edit.name!r} (float32[1000000000"


def _saved_model_garbage(path: Path) -> str:
    (path / "saved_model.pb").write_bytes(b"\x0a\xff\xff\xff\xff\x0f not a proto")
    return "saved_model.pb: not a SavedModel (DecodeError"


def _index_garbage(path: Path) -> str:
    index = path / "variables" / "variables.index"
    index.write_bytes(index.read_bytes()[:-3])
    return f"{index}: not a TensorFlow checkpoint index (no table footer)"


SAVED_MODEL_CASES = {
    "checkpoint_entry_2e8": _index_entry_declares,
    "checkpoint_entry_negative_dim": _index_entry_negative_dim,
    "checkpoint_entry_overflowing_dims": _index_entry_overflowing_dims,
    "checkpoint_entry_255_dims": _index_entry_255_dims,
    "object_graph_variable_1e8": _object_graph_variable,
    "function_constant_2e8": _function_constant,
    "var_handle_op_1e9": _variable_op,
    "saved_model_pb_garbage": _saved_model_garbage,
    "index_truncated": _index_garbage,
}


@pytest.mark.parametrize("case", [pytest.param(k, id=k) for k in SAVED_MODEL_CASES])
def test_hostile_saved_model_is_one_line_exit_2(case: str, sources: Path, tmp_path: Path,
                                                capsys) -> None:
    path = _copy_saved(sources, tmp_path)
    fragment = SAVED_MODEL_CASES[case](path)
    assert main(["compile", "tf", str(path), "-o", str(tmp_path / "out"), "--no-png"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fcc: error: {path}") and err.count("\n") == 1, err
    assert fragment in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["saved"]


def test_saved_model_limits_count_every_checkpoint_tensor(sources: Path, tmp_path: Path,
                                                          capsys) -> None:
    """The real model: refused under a 100-byte tensor or a 1 KiB total limit (its kernels
    are 432 and 80 bytes, all weights 640), accepted at the defaults; the index read here
    lists what TF's own checkpoint reader lists."""
    from tensorflow.python.training import py_checkpoint_reader

    from fc.frontend.tf.declared import read_checkpoint_index

    saved = sources / "saved"
    prefix = saved / "variables" / "variables"
    tf_reader = py_checkpoint_reader.NewCheckpointReader(str(prefix))
    ours = read_checkpoint_index(prefix.with_suffix(".index"))
    assert {k: [d.size for d in e.shape.dim] for k, e in ours.items()} == \
        tf_reader.get_variable_to_shape_map()
    assert {k: e.dtype for k, e in ours.items()} == \
        {k: v.as_datatype_enum for k, v in tf_reader.get_variable_to_dtype_map().items()}
    out = tmp_path / "out"
    assert main(["compile", "tf", str(saved), "-o", str(out), "--no-png",
                 "--max-tensor-size", "100"]) == 2
    assert "(float32[3, 3, 3, 4]) would take 432 B, above fc's limit of 100 B per tensor" in \
        capsys.readouterr().err
    assert main(["compile", "tf", str(saved), "-o", str(out), "--no-png",
                 "--max-total-size", "1K"]) == 2
    assert "its tensors take more than 1 KiB in total" in capsys.readouterr().err
    assert not out.exists()
    assert main(["compile", "tf", str(saved), "-o", str(out), "--no-png"]) == 0


def test_corrupt_fingerprint_loads_without_a_traceback(sources: Path, tmp_path: Path,
                                                       capfd) -> None:
    """Found by fc.fuzz: TF loads a SavedModel whose fingerprint.pb is corrupt, logging a
    Python traceback through absl; fc keeps its own output."""
    path = _copy_saved(sources, tmp_path)
    (path / "fingerprint.pb").write_bytes(b"garbage")
    assert main(["compile", "tf", str(path), "-o", str(tmp_path / "out"), "--no-png"]) == 0
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Fingerprint" not in err, err


def _h5_dataset_declared(path: Path) -> str:
    """conv's kernel re-created as float32[2e8] with nothing written: a small file that
    reads back as 763 MiB of fill value."""
    import h5py

    with h5py.File(path, "r+") as f:
        name = next(n for n in _datasets(f) if f[n].shape == (3, 3, 3, 4))
        del f[name]
        f.create_dataset(name, shape=(200_000_000,), dtype="f4")
    assert path.stat().st_size < 1 << 20
    return f"dataset {name!r} (float32[200000000]) would take 763 MiB, above fc's limit"


def _datasets(f) -> list[str]:  # noqa: ANN001
    import h5py

    out: list[str] = []
    f.visititems(lambda n, o: out.append(n) if isinstance(o, h5py.Dataset) else None)
    return out


def _h5_external_storage(path: Path) -> str:
    import h5py

    other = path.parent / "elsewhere.bin"
    other.write_bytes(np.ones(20, np.float32).tobytes())
    with h5py.File(path, "r+") as f:
        name = next(n for n in _datasets(f) if f[n].shape == (5,))
        del f[name]
        f.create_dataset(name, shape=(5,), dtype="f4", external=[(str(other), 0, 20)])
    return f"dataset {name!r} keeps its data outside the file (external storage)"


def _h5_external_link(path: Path) -> str:
    import h5py

    other = path.parent / "elsewhere.h5"
    with h5py.File(other, "w") as g:
        g["x"] = np.ones(5, np.float32)
    with h5py.File(path, "r+") as f:
        name = next(n for n in _datasets(f) if f[n].shape == (5,))
        del f[name]
        f[name] = h5py.ExternalLink(str(other), "/x")
    return f"{name!r} links to '/x' in another file"


def _h5_garbage(path: Path) -> str:
    path.write_bytes(path.read_bytes()[:2000])
    return "not a readable HDF5 file ("


H5_CASES = {
    "dataset_declared_2e8": _h5_dataset_declared,
    "external_storage": _h5_external_storage,
    "external_link": _h5_external_link,
    "truncated": _h5_garbage,
}


@pytest.mark.parametrize("case", [pytest.param(k, id=k) for k in H5_CASES])
def test_hostile_h5_is_one_line_exit_2(case: str, sources: Path, tmp_path: Path,
                                       capsys) -> None:
    import shutil

    path = Path(shutil.copy(sources / "m.h5", tmp_path / "m.h5"))
    fragment = H5_CASES[case](path)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["compile", "tf", str(path), "-o", str(tmp_path / "out"), "--no-png"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fcc: error: {path}: ") and err.count("\n") == 1, err
    assert fragment in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_keras_weights_file_declaring_a_huge_dataset_is_refused(sources: Path, tmp_path: Path,
                                                                capsys) -> None:
    """The same declared dataset inside a .keras archive's model.weights.h5 (its member
    stays small, so the zip directory alone does not tell)."""
    import zipfile

    with zipfile.ZipFile(sources / "m.keras") as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    weights = tmp_path / "w.h5"
    weights.write_bytes(members["model.weights.h5"])
    fragment = _h5_dataset_declared(weights)
    members["model.weights.h5"] = weights.read_bytes()
    weights.unlink()
    path = tmp_path / "m.keras"
    with zipfile.ZipFile(path, "w") as zf:
        for name, raw in members.items():
            zf.writestr(name, raw)
    assert main(["compile", "tf", str(path), "-o", str(tmp_path / "out"), "--no-png"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fcc: error: {path}: model.weights.h5: ") and err.count("\n") == 1
    assert fragment in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras"]


def test_h5_and_keras_limits_count_every_dataset(sources: Path, tmp_path: Path, capsys) -> None:
    for name in ("m.h5", "m.keras"):
        out = tmp_path / name
        assert main(["compile", "tf", str(sources / name), "-o", str(out), "--no-png",
                     "--max-tensor-size", "100"]) == 2
        assert "(float32[3, 3, 3, 4]) would take 432 B, above fc's limit of 100 B" in \
            capsys.readouterr().err
        assert main(["compile", "tf", str(sources / name), "-o", str(out), "--no-png"]) == 0


def test_string_constant_is_judged_by_its_element_count(sources: Path, tmp_path: Path,
                                                        capsys) -> None:
    """A DT_STRING Const declared [3e7] with no value: TF makes 3e7 empty strings (24 bytes
    each, 687 MiB) before anything reads them."""
    path = _copy_saved(sources, tmp_path)
    _declare_function_const(path, 7, 30_000_000)  # DT_STRING
    assert main(["compile", "tf", str(path), "-o", str(tmp_path / "out"), "--no-png"]) == 2
    err = capsys.readouterr().err
    assert "attribute 'value' (string[30000000]) would take 687 MiB" in err, err


def test_h5_global_heap_that_loops_libhdf5_is_refused(sources: Path, tmp_path: Path) -> None:
    """Found by the 10-minute tf-h5 run: a global heap collection (where model_config's
    string lives) whose first object is a free-space entry of size 0 makes libhdf5 loop
    forever in C (no signal reaches it: fcc hung). Run as a subprocess, so that a
    regression fails on the timeout instead of hanging the test run."""
    import subprocess
    import sys

    data = bytearray((sources / "m.h5").read_bytes())
    at = data.find(b"GCOL")
    assert at > 0 and data[at + 4] == 1
    data[at + 16:at + 32] = bytes(16)  # object index 0, size 0
    path = tmp_path / "m.h5"
    path.write_bytes(bytes(data))
    run = subprocess.run([sys.executable, "-m", "fc", "compile", "tf", str(path), "-o",
                          str(tmp_path / "out"), "--no-png"], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 2, run.stderr
    last = run.stderr.strip().splitlines()[-1]  # TF's own start-up lines come before
    assert last == f"fcc: error: {path}: not a readable HDF5 file (its global heap at byte " \
                   f"{at} holds object 0 of size 0, on which libhdf5 loops forever)", last
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.h5"]
