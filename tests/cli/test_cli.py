"""The command line: the compile product, run/info, one-line errors, atomic output."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from fc.cli import main
from fc.testing import MODEL_REL_L2, check_close

PRODUCT = [
    "IR_for_reconstruct_graph.json", "IR_for_reconstruct_params.npz", "IR_for_reconstruct_graph.png",
    "IR_fused_for_CModel_graph.json", "IR_fused_for_CModel_params.npz", "IR_fused_for_CModel_graph.png",
]


def _small_cnn(path: Path) -> Path:
    """Conv -> BN -> Relu -> MaxPool -> Flatten -> Gemm, with random weights (ONNX opset 13)."""
    rng = np.random.default_rng(0)

    def init(name, *shape, positive=False):
        a = rng.standard_normal(shape).astype(np.float32)
        return numpy_helper.from_array(np.abs(a) + 0.5 if positive else a, name)

    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "g", "be", "m", "v"], ["n"], name="bn1"),
        helper.make_node("Relu", ["n"], ["r"], name="relu1"),
        helper.make_node("MaxPool", ["r"], ["p"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], name="fc", transB=1),
    ]
    inits = [init("w", 4, 3, 3, 3), init("b", 4), init("g", 4, positive=True), init("be", 4),
             init("m", 4), init("v", 4, positive=True), init("fw", 10, 4 * 4 * 4), init("fb", 10)]
    graph = helper.make_graph(
        nodes, "small_cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return _small_cnn(tmp_path_factory.mktemp("model") / "small.onnx")


@pytest.fixture(scope="module")
def compiled(model_path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("out") / "fc_ir"
    assert main(["compile", "onnx", str(model_path), "-o", str(out)]) == 0
    return out


def test_compile_writes_the_six_files(compiled):
    assert sorted(p.name for p in compiled.iterdir()) == sorted(PRODUCT)
    assert (compiled / "IR_fused_for_CModel_graph.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fused = json.loads((compiled / "IR_fused_for_CModel_graph.json").read_text())
    ops = [n["op"] for n in fused["nodes"]]
    assert ops == ["Conv", "MaxPool", "Flatten", "Gemm"]
    conv = fused["nodes"][0]
    assert conv["attrs"]["activation"]["value"] == "relu"
    assert conv["provenance"] == ["conv1", "bn1", "relu1"]


def test_compile_is_deterministic(model_path, compiled, tmp_path):
    out = tmp_path / "again"
    assert main(["compile", "onnx", str(model_path), "-o", str(out), "--no-png"]) == 0
    for name in PRODUCT:
        if name.endswith(".png"):
            continue
        assert (out / name).read_bytes() == (compiled / name).read_bytes(), name


@pytest.mark.parametrize("prefix", ["IR_for_reconstruct", "IR_fused_for_CModel"])
def test_run_matches_onnxruntime(model_path, compiled, tmp_path, prefix, capsys):
    x = np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    rc = main(["run", "--graph", str(compiled / f"{prefix}_graph.json"),
               "--params", str(compiled / f"{prefix}_params.npz"),
               "--input_npy", str(tmp_path / "x.npy"), "--output_npy", str(tmp_path / "y.npy")])
    assert rc == 0
    assert "y: float32[1, 10]" in capsys.readouterr().out
    (expected,) = ort.InferenceSession(str(model_path)).run(None, {"x": x})
    check_close(np.load(tmp_path / "y.npy"), expected, rel_l2_max=MODEL_REL_L2)


def test_run_at_another_batch_size(model_path, compiled, tmp_path):
    x = np.random.default_rng(2).standard_normal((3, 3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert main(["run", "--graph", str(compiled / "IR_fused_for_CModel_graph.json"),
                 "--input", f"x={tmp_path / 'x.npy'}", "--output_npy", str(tmp_path / "y.npy")]) == 0
    sess = ort.InferenceSession(str(model_path))
    expected = np.concatenate([sess.run(None, {"x": x[i:i + 1]})[0] for i in range(3)])
    check_close(np.load(tmp_path / "y.npy"), expected, rel_l2_max=MODEL_REL_L2)


def test_info(compiled, capsys):
    assert main(["info", "--graph", str(compiled / "IR_for_reconstruct_graph.json")]) == 0
    out = capsys.readouterr().out
    assert "input  x: float32[1, 3, 8, 8]" in out
    assert "Conv 1" in out and "BatchNormalization 1" in out
    assert f"parameters: {4 * 27 + 4 * 5 + 640 + 10}" in out


@pytest.mark.parametrize(
    "argv, fragment",
    [
        pytest.param(["compile", "onnx", "/nonexistent/m.onnx"], "/nonexistent/m.onnx", id="missing_model"),
        pytest.param(["compile", "caffe", "m"], "unknown framework 'caffe'", id="unknown_framework"),
        pytest.param(["run", "--graph", "/nonexistent/g_graph.json", "--input_npy", "x.npy"],
                     "/nonexistent/g_graph.json", id="missing_ir"),
        pytest.param(["compile", "onnx", "m.onnx", "--input-shape", "1,x,3"], "bad shape '1,x,3'",
                     id="bad_shape"),
        pytest.param(["compile", "mxnet", "resnet51_v1"], "resnet51_v1", id="unknown_zoo_model"),
    ],
)
def test_user_errors_are_one_line_exit_2(argv, fragment, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fcc: error: ") and fragment in err, err


def test_failed_compile_leaves_no_output_dir(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file")
    out = tmp_path / "out"
    assert main(["compile", "onnx", str(bad), "-o", str(out)]) == 2
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [bad]  # no temporary directory left behind either


def test_failure_while_writing_leaves_no_partial_files(model_path, tmp_path, monkeypatch):
    import fc.api

    def broken_render(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("fc.ir.draw.render", broken_render)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        fc.api.compile_model("onnx", model_path, out)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == []


def test_without_dot_writes_dot_source_and_warns(model_path, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name == "dot" else "/bin/x")
    out = tmp_path / "out"
    assert main(["compile", "onnx", str(model_path), "-o", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert "IR_fused_for_CModel_graph.dot" in names and not any(n.endswith(".png") for n in names)
    assert "digraph" in (out / "IR_fused_for_CModel_graph.dot").read_text()
    err = capsys.readouterr().err
    assert err.count("warning: graphviz 'dot' not found") == 1


@pytest.mark.parametrize("sub", ["compile", "run", "info", "complexity"])
def test_every_subcommand_has_help(sub, capsys):
    with pytest.raises(SystemExit) as e:
        main([sub, "--help"])
    assert e.value.code == 0
    assert "usage: fcc " + sub in capsys.readouterr().out


@pytest.mark.parametrize("argv0", ["fc", "fcc"])
def test_console_scripts_installed(argv0):
    exe = shutil.which(argv0, path=os.path.dirname(sys.executable))
    assert exe is not None, f"{argv0} is not installed next to {sys.executable}"
    proc = subprocess.run([exe, "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("fc ")


def test_python_dash_m(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "fc", "compile", "onnx", str(tmp_path / "no.onnx")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("fcc: error:") and "Traceback" not in proc.stderr


def _dynamic_model(path: Path) -> Path:
    """Relu on x of shape (N, 3, H, W): the spatial dims need a shape from the user."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "dyn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def test_errors_from_fcc_name_fccs_flags(tmp_path, capsys):
    path = _dynamic_model(tmp_path / "dyn.onnx")
    assert main(["compile", "onnx", str(path), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "pass --input-shape x=1,3,H,W" in err and "input_shapes" not in err, err
    assert main(["compile", "onnx", str(path), "--params", "w.params"]) == 2
    assert "fcc: error: --params is not used with onnx models" in capsys.readouterr().err
    # and the shape it asks for works
    assert main(["compile", "onnx", str(path), "-o", str(tmp_path / "out"), "--no-png",
                 "--input-shape", "x=1,3,4,5"]) == 0


def test_errors_from_the_api_name_its_keywords(tmp_path):
    from fc.api import import_model
    from fc.errors import FcError

    path = _dynamic_model(tmp_path / "dyn.onnx")
    with pytest.raises(FcError, match=r"pass input_shapes=\{'x': \(1, 3, H, W\)\}$"):
        import_model("onnx", path)
    with pytest.raises(FcError, match=r"^params is not used with onnx models"):
        import_model("onnx", path, params="w.params")
