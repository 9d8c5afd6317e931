"""The historical example scripts still do their job through the library."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PRODUCT = {f"{p}_{s}" for p in ("IR_for_reconstruct", "IR_fused_for_CModel")
           for s in ("graph.json", "params.npz", "graph.png")}


def test_complier_script_compiles_a_zoo_model(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(EXAMPLES / "test_complier.py"), "mxnet", "resnet18v1",
                           "0", "-o", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert {p.name for p in out.iterdir()} == PRODUCT
    assert "seeded random (seed 0)" in proc.stdout


def test_complier_script_reports_errors_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, str(EXAMPLES / "test_complier.py"), "mxnet", "nosuchnet",
                           "0", "-o", str(tmp_path / "out")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "nosuchnet" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_model_complexity_script(tmp_path):
    from fc.cli import main

    model = tmp_path / "m"
    assert main(["compile", "mxnet", "squeezenet1.0", "-o", str(model), "--no-png"]) == 0
    proc = subprocess.run([sys.executable, str(EXAMPLES / "test_model_complexity.py"),
                           "--graph-json", str(model / "IR_fused_for_CModel_graph.json"),
                           "--params-file", str(model / "IR_fused_for_CModel_params.npz")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("nnz: ") and ", dense_flops: " in last and ", sparse_flops: " in last


def _script(capsys, name: str, *argv: str) -> str:
    """Run examples/NAME as ``python examples/NAME ARGV`` would (in this process: the
    frameworks load once); its stdout, after checking it exited 0."""
    import runpy

    capsys.readouterr()
    old = sys.argv
    sys.argv = [str(EXAMPLES / name), *argv]
    try:
        runpy.run_path(str(EXAMPLES / name), run_name="__main__")
        code = 0
    except SystemExit as e:
        code = e.code
    finally:
        sys.argv = old
    out, err = capsys.readouterr()
    assert code in (0, None), f"{name} exited {code}: {err}"
    return out


def test_the_seed_sequence_runs_verbatim(digits_project, monkeypatch, capsys):
    """The seed's README, command by command, from the project root: compile into moffett_ir/,
    then every later command reads it (the config's MODEL is moffett_ir/ too)."""
    import numpy as np
    import torch

    root = digits_project.root
    monkeypatch.chdir(root)
    out = _script(capsys, "test_complier.py", "torch", "digits.pt2", "0")
    assert {p.name for p in (root / "moffett_ir").iterdir()} == PRODUCT
    assert "nodes: 16 (IR for reconstruct) -> 9 (IR fused for CModel)" in out

    out = _script(capsys, "test_model_complexity.py", "--graph-json",
                  "moffett_ir/IR_for_reconstruct_graph.json", "--params-file",
                  "moffett_ir/IR_for_reconstruct_params.npz")
    assert out.splitlines()[-1].startswith("nnz: 9914, sparsity: 0.0, dense_flops: 101696.0")

    # the reconstructors against the original torch model's output on real digits
    x = digits_project.x_test[:4].copy()
    np.save("input.npy", x)
    program = torch.export.load(digits_project.pt2)
    with torch.no_grad():
        np.save("result.npy", program.module()(torch.from_numpy(x)).numpy())
    args = ["--graph", "moffett_ir/IR_for_reconstruct_graph.json", "--params",
            "moffett_ir/IR_for_reconstruct_params.npz", "--input_npy", "input.npy",
            "--result_npy", "result.npy"]
    for name in ("test_pytorch_reconstructor.py", "test_tensorflow_reconstructor.py",
                 "test_tensorflow_recostructor.py"):
        out = _script(capsys, name, *args)
        assert float(out.splitlines()[0].removeprefix("distance: ")) < 1e-5, (name, out)

    out = _script(capsys, "test_calibration.py", "--config-file", "digits.yml")
    assert "calibrated 8 tensors on 64 images (method percentile)" in out
    assert (root / "calibrations" / "digits.json").exists()
    out = _script(capsys, "test_quantize_error.py", "--config-file", "digits.yml")
    assert "calibration table: " in out and "(reused)" in out
    (final,) = [float(ln.removeprefix("final distance: ")) for ln in out.splitlines()
                if ln.startswith("final distance: ")]
    assert 0 < final < 0.05
    assert (root / "pbs" / "digits_quan.pb").exists()
    assert (root / "moffett_ir" / "IR_quantized_for_CModel_graph.json").exists()

    out = _script(capsys, "test_imagenet_quantize_acc.py", "--config-file", "digits.yml")
    assert "calibration table: " in out and "(reused)" in out
    rows = {ln.split()[0]: ln.split()[1:] for ln in out.splitlines()
            if re.match(r"(null|\w+/per(layer|channel)) +[\d.]+ ", ln)}
    assert len(rows) == 11, out
    assert float(rows["null"][0]) >= 0.9
    assert abs(float(rows["symmetry_max/perchannel"][0]) - float(rows["null"][0])) <= 0.02
    assert (root / "moffett_ir" / "quant" / "accuracy.md").exists()
