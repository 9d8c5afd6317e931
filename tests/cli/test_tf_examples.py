"""The TensorFlow training example does its job through the library (the reconstructor
scripts are run by tests/cli/test_examples.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

import fc.ir
from fc.ir import Graph

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _ir(tmp: Path) -> Path:
    """Conv -> BN -> Relu -> global pool -> Gemm, fed NHWC."""
    rng = np.random.default_rng(0)
    g = Graph("small")
    x = g.add_input("image", (1, 3, 6, 6))
    g.layouts["image"] = "NHWC"
    y = g.add_node("Conv", [x, g.add_const("w", rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
                                           * 0.3)], {"pads": (1, 1, 1, 1)}, name="conv").output
    bn = [g.add_const(n, a.astype(np.float32)) for n, a in (
        ("gamma", rng.uniform(0.5, 1.5, 4)), ("beta", rng.normal(0, 0.1, 4)),
        ("mean", rng.normal(0, 0.1, 4)), ("var", rng.uniform(0.5, 1.5, 4)))]
    y = g.add_node("BatchNormalization", [y, *bn], name="bn").output
    y = g.add_node("Relu", [y], name="relu").output
    y = g.add_node("GlobalAveragePool", [y], name="gap").output
    y = g.add_node("Flatten", [y], name="flat").output
    g.outputs.append(g.add_node("Gemm", [y, g.add_const("fc_w", rng.standard_normal(
        (3, 4)).astype(np.float32))], {"transB": 1}, name="fc").output)
    fc.ir.save(g, tmp / "m")
    np.save(tmp / "x.npy", rng.standard_normal((8, 6, 6, 3)).astype(np.float32))
    np.save(tmp / "labels.npy", rng.integers(0, 3, 8))
    return tmp / "m_graph.json"


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(EXAMPLES / script), *args], capture_output=True,
                          text=True, timeout=600)


def test_training_script_lowers_the_loss_and_writes_the_ir(tmp_path: Path) -> None:
    graph = _ir(tmp_path)
    prefix = tmp_path / "trained" / "IR_for_reconstruct"
    proc = _run("test_tensorflow_recostructor_train.py", "--graph", str(graph), "--input_npy",
                str(tmp_path / "x.npy"), "--label_npy", str(tmp_path / "labels.npy"),
                "--steps", "8", "--lr", "0.2", "--save_prefix", str(prefix),
                "--save_path", str(tmp_path / "trained.pb"))
    assert proc.returncode == 0, proc.stderr
    steps = [float(line.split()[-1]) for line in proc.stdout.splitlines() if line.startswith("step")]
    assert len(steps) == 8 and steps[-1] < steps[0]
    before, after = fc.ir.load(graph), fc.ir.load(f"{prefix}_graph.json")
    assert not np.array_equal(before.initializers["w"].const, after.initializers["w"].const)
    np.testing.assert_array_equal(before.initializers["mean"].const, after.initializers["mean"].const)
    assert (tmp_path / "trained.pb").is_file()
