"""fcc's outputs under faults (issue 16): every bad output path or failing file system is one
line and exit 2, and OUT is either complete or as it was."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from fc.cli import main

PRODUCT = sorted([
    "IR_for_reconstruct_graph.json", "IR_for_reconstruct_params.npz",
    "IR_fused_for_CModel_graph.json", "IR_fused_for_CModel_params.npz",
])


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 3, 3, 3))
                                .astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["y"], name="relu")], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    path = tmp_path_factory.mktemp("model") / "tiny.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


@pytest.fixture(scope="module")
def compiled(model, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ir") / "ir"
    assert main(["compile", "onnx", str(model), "-o", str(out), "--no-png"]) == 0
    return out


def _one_line(capsys, fragment: str) -> str:
    err = capsys.readouterr().err
    assert err.startswith("fcc: error: ") and err.count("\n") == 1, err
    assert fragment in err, err
    return err


def _compile(model: Path, out: Path) -> int:
    return main(["compile", "onnx", str(model), "-o", str(out), "--no-png"])


def test_output_is_an_existing_file(model, tmp_path, capsys):
    out = tmp_path / "out"
    out.write_text("mine")
    assert _compile(model, out) == 2
    _one_line(capsys, f"{out}: exists and is not a directory")
    assert out.read_text() == "mine" and sorted(os.listdir(tmp_path)) == ["out"]


def test_directory_in_the_way_of_an_output_file(model, tmp_path, capsys):
    out = tmp_path / "out"
    (out / "IR_fused_for_CModel_graph.json").mkdir(parents=True)
    assert _compile(model, out) == 2
    _one_line(capsys, "IR_fused_for_CModel_graph.json: a directory is in the way")
    assert os.listdir(out) == ["IR_fused_for_CModel_graph.json"]  # none of the 4 moved in


def test_compile_into_an_existing_directory_keeps_other_files(model, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert _compile(model, out) == 0
    assert sorted(os.listdir(out)) == sorted([*PRODUCT, "notes.txt"])


@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="needs a second file system")
def test_output_on_another_file_system(model, tmp_path):
    real = Path(tempfile.mkdtemp(dir="/dev/shm"))
    try:
        (tmp_path / "out").symlink_to(real)  # as a Docker volume mounted at OUT
        assert _compile(model, tmp_path / "out") == 0
        assert sorted(os.listdir(real)) == PRODUCT
    finally:
        for f in real.iterdir():
            f.unlink()
        real.rmdir()


@pytest.mark.parametrize(("fault", "fragment"), [
    pytest.param(errno.ENOSPC, "No space left on device", id="disk_full"),
    pytest.param(errno.EROFS, "Read-only file system", id="read_only"),
])
def test_file_system_failure_is_one_line_and_leaves_nothing(fault, fragment, model, tmp_path,
                                                            capsys, monkeypatch):
    def failing(*args, **kwargs):
        raise OSError(fault, os.strerror(fault))

    monkeypatch.setattr(np.lib.format, "write_array", failing)  # the first weight written
    assert _compile(model, tmp_path / "out") == 2
    _one_line(capsys, fragment)
    assert sorted(os.listdir(tmp_path)) == []


def test_unwritable_parent_is_one_line(model, tmp_path, capsys, monkeypatch):
    def failing(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(tmp_path))

    monkeypatch.setattr(tempfile, "mkdtemp", failing)
    assert _compile(model, tmp_path / "out") == 2
    _one_line(capsys, "Read-only file system")


@pytest.mark.parametrize("flag", [
    pytest.param("--output_npy", id="output_npy"),
])
def test_run_output_that_is_a_directory(flag, compiled, tmp_path, capsys):
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 3, 8, 8), np.float32))
    assert main(["run", "--graph", str(compiled / "IR_fused_for_CModel_graph.json"),
                 "--input_npy", str(x), flag, str(tmp_path)]) == 2
    _one_line(capsys, f"{tmp_path}: is a directory; give a file name")


@pytest.mark.parametrize("flag", [pytest.param("--csv", id="csv"), pytest.param("--json", id="json")])
def test_complexity_output_that_is_a_directory(flag, compiled, tmp_path, capsys):
    assert main(["complexity", "--graph-json", str(compiled / "IR_fused_for_CModel_graph.json"),
                 "--params-file", str(compiled / "IR_fused_for_CModel_params.npz"), "-q",
                 flag, str(tmp_path)]) == 2
    _one_line(capsys, f"{tmp_path}: is a directory; give a file name")


def test_run_refuses_tensors_above_the_limit_before_running(compiled, tmp_path, capsys):
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((64, 3, 8, 8), np.float32))
    graph = str(compiled / "IR_fused_for_CModel_graph.json")
    assert main(["run", "--graph", graph, "--input_npy", str(x), "--max-tensor-size", "63K"]) == 2
    _one_line(capsys, "float32[64, 4, 8, 8]) would take 64 KiB")  # at the fed batch, 64
    assert main(["run", "--graph", graph, "--input_npy", str(x), "--max-tensor-size", "64K"]) == 0
