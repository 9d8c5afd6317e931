"""The historical example scripts still do their job through the library."""

from __future__ import annotations

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
