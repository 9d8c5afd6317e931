"""fcc reconstruct torch: the distance line, exit 1 above --tol, --per-layer naming the first
bad node, --json, --save_path/--save_py, and one-line errors (exit 2) that write nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fc.cli import main
from fc.reconstruct.torch import LOWERINGS


def _model(tmp: Path) -> Path:
    """Conv -> BN -> Relu -> Gemm, compiled by fcc into tmp/fc_ir."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def init(name, *shape, positive=False):
        a = rng.standard_normal(shape).astype(np.float32)
        return numpy_helper.from_array(np.abs(a) + 0.5 if positive else a, name)

    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "g", "be", "m", "v"], ["n"], name="bn1"),
        helper.make_node("Relu", ["n"], ["r"], name="relu1"),
        helper.make_node("Flatten", ["r"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], name="fc", transB=1),
    ]
    inits = [init("w", 4, 3, 3, 3), init("b", 4), init("g", 4, positive=True), init("be", 4),
             init("m", 4), init("v", 4, positive=True), init("fw", 10, 4 * 4 * 4), init("fb", 10)]
    graph = helper.make_graph(
        nodes, "small", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), tmp / "m.onnx")
    assert main(["compile", "onnx", str(tmp / "m.onnx"), "-o", str(tmp / "fc_ir"), "--no-png"]) == 0
    np.save(tmp / "in.npy", rng.standard_normal((1, 3, 4, 4)).astype(np.float32))
    return tmp / "fc_ir"


@pytest.fixture(scope="module")
def ir(tmp_path_factory) -> Path:
    return _model(tmp_path_factory.mktemp("recon"))


def _reconstruct(ir: Path, which: str, *extra: str) -> int:
    return main(["reconstruct", "torch", "--graph", str(ir / f"{which}_graph.json"),
                 "--input_npy", str(ir.parent / "in.npy"), *extra])


@pytest.mark.parametrize("which", [pytest.param("IR_for_reconstruct", id="reconstruct_ir"),
                                   pytest.param("IR_fused_for_CModel", id="fused_ir")])
def test_distance_line_and_exit_0(ir, which, capsys) -> None:
    assert _reconstruct(ir, which) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("distance: ")
    assert float(out[0].split()[1]) < 1e-6
    assert out[1].startswith("max_abs: ") and out[2].startswith("cosine: ")


def test_result_npy_above_tol_exits_1(ir, tmp_path, capsys) -> None:
    from fc.ir import load
    from fc.np_ops import run

    g = load(ir / "IR_fused_for_CModel_graph.json")
    y = run(g, np.load(ir.parent / "in.npy"))["y"]
    np.save(tmp_path / "off.npy", y * 1.01)  # distance 0.01
    assert _reconstruct(ir, "IR_fused_for_CModel", "--result_npy", str(tmp_path / "off.npy")) == 1
    first = capsys.readouterr().out.splitlines()[0]
    assert float(first.split()[1]) == pytest.approx(0.01 / 1.01, rel=1e-3)
    assert _reconstruct(ir, "IR_fused_for_CModel", "--result_npy", str(tmp_path / "off.npy"),
                        "--tol", "0.05") == 0


def test_per_layer_names_first_node_above_tol(ir, tmp_path, capsys) -> None:
    """A deliberately wrong Relu lowering (leaky): the per-layer report finds that node."""
    import torch.nn.functional as F

    good = LOWERINGS.get("Relu")

    def leaky(b, x):
        return b.call(F.leaky_relu, x, 0.1)

    LOWERINGS.register("Relu", override=True)(leaky)
    try:
        rc = _reconstruct(ir, "IR_for_reconstruct", "--per-layer", "--json", str(tmp_path / "r.json"))
    finally:
        LOWERINGS.register("Relu", override=True)(good)
    assert rc == 1
    out = capsys.readouterr().out
    assert "first above tol 0.001: node 'relu1' (Relu) from relu1, value 'r'" in out
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["first_above_tol"]["node"] == "relu1"
    assert [d["node"] for d in doc["per_layer"]] == ["conv1", "bn1", "relu1", "flat", "fc"]
    assert doc["per_layer"][1]["rel_l2"] < 1e-6


def test_save_path_and_save_py(ir, tmp_path) -> None:
    import torch

    pt2, py = tmp_path / "m.pt2", tmp_path / "m.py"
    assert _reconstruct(ir, "IR_fused_for_CModel", "--save_path", str(pt2), "--save_py", str(py)) == 0
    assert (tmp_path / "m.pt").is_file() and py.read_text().startswith('"""')
    prog = torch.export.load(pt2)
    x = torch.from_numpy(np.load(ir.parent / "in.npy"))
    assert prog.module()(x).shape == (1, 10)


@pytest.mark.parametrize("extra, message", [
    pytest.param(["--save_py", "{tmp}/bad-name.py"], "must be a Python module name", id="bad_py_name"),
    pytest.param(["--result_npy", "{tmp}/missing.npy"], "result file not found", id="missing_result"),
    pytest.param(["--tol", "-1"], "--tol -1.0: must be a non-negative", id="negative_tol"),
])
def test_bad_input_one_line_exit_2_writes_nothing(ir, tmp_path, capsys, extra, message) -> None:
    extra = [e.format(tmp=tmp_path) for e in extra]
    assert _reconstruct(ir, "IR_fused_for_CModel", "--save_path", str(tmp_path / "m.pt2"),
                        *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_op_without_lowering_exit_2(ir, tmp_path, capsys) -> None:
    good = LOWERINGS.get("Gemm")
    LOWERINGS.unregister("Gemm")
    try:
        assert _reconstruct(ir, "IR_fused_for_CModel", "--save_py", str(tmp_path / "m.py")) == 2
    finally:
        LOWERINGS.register("Gemm")(good)
    err = capsys.readouterr().err.strip()
    assert err == "fcc: error: graph 'small': 1 op type(s) have no torch lowering: Gemm x1 ('fc')"
    assert list(tmp_path.iterdir()) == []


def test_example_script_takes_the_seed_arguments(ir, tmp_path) -> None:
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[2] / "examples" / "test_pytorch_reconstructor.py"
    from fc.ir import load
    from fc.np_ops import run

    g = load(ir / "IR_fused_for_CModel_graph.json")
    np.save(tmp_path / "out.npy", run(g, np.load(ir.parent / "in.npy"))["y"])
    proc = subprocess.run([sys.executable, str(script),
                           "--graph", str(ir / "IR_fused_for_CModel_graph.json"),
                           "--params", str(ir / "IR_fused_for_CModel_params.npz"),
                           "--input_npy", str(ir.parent / "in.npy"),
                           "--result_npy", str(tmp_path / "out.npy")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].startswith("distance: ")
    assert float(proc.stdout.split()[1]) < 1e-6
