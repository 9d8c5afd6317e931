"""fcc compress prune|thin|sensitivity|lowrank: files written, what is printed, the outputs
kept where they must be, one-line errors (exit 2)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import yaml

import fc.ir as ir
import fc.np_ops as npo
from fc.cli import main
from fc.ir import Graph
from fc.ir.complexity import complexity
from fc.ir.serialize import write_npz
from fc.testing import MODEL_REL_L2, check_close


def _model() -> Graph:
    """conv1-relu-conv2-relu-GAP-flatten-fc, seeded weights."""
    rng = np.random.default_rng(0)

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32)

    g = Graph("small")
    x = g.add_input("x", (1, 3, 8, 8))
    h = g.add_node("Conv", [x, g.add_const("conv1.weight", w(8, 3, 3, 3)),
                            g.add_const("conv1.bias", w(8))],
                   {"pads": (1, 1, 1, 1), "activation": "relu"}, name="conv1").output
    h = g.add_node("Conv", [h, g.add_const("conv2.weight", w(16, 8, 3, 3)),
                            g.add_const("conv2.bias", w(16))],
                   {"pads": (1, 1, 1, 1), "activation": "relu"}, name="conv2").output
    h = g.add_node("GlobalAveragePool", [h], name="gap").output
    h = g.add_node("Flatten", [h], name="flat").output
    y = g.add_node("Gemm", [h, g.add_const("fc.weight", w(10, 16)), g.add_const("fc.bias", w(10))],
                   {"transB": 1}, name="fc").output
    g.outputs = [y]
    return g


@pytest.fixture
def model(tmp_path) -> tuple[Path, Graph]:
    g = _model()
    gpath, _ = ir.save(g, tmp_path / "small")
    return gpath, g


def _x(n: int = 6) -> np.ndarray:
    return np.random.default_rng(1).standard_normal((n, 3, 8, 8)).astype(np.float32)


def _run(g: Graph, x: np.ndarray) -> np.ndarray:
    return npo.run(g, {"x": x})[g.outputs[0].name]


def test_prune_thin_and_masks(model, tmp_path, capsys):
    gpath, g = model
    cfg = tmp_path / "ratios.yaml"
    cfg.write_text("criterion: l2\nprune_ratios:\n  conv1: 0.5\n  conv2.weight: 0.25\n")
    out = tmp_path / "pruned"
    assert main(["compress", "prune", "--graph", str(gpath), "--config", str(cfg), "--criterion",
                 "fpgm", "--masks", str(tmp_path / "m.npz"), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "prune conv1 (Conv): 4/8 filters (fpgm, ratio 0.5)" in text
    assert "prune conv2 (Conv): 4/16 filters (fpgm, ratio 0.25)" in text
    pruned = ir.load(f"{out}_graph.json")
    masks = ir.serialize.read_npz(tmp_path / "m.npz")
    assert sorted(masks) == ["conv1.bias", "conv1.weight", "conv2.bias", "conv2.weight"]
    assert np.all(pruned.initializers["conv1.weight"].const[masks["conv1.weight"]] == 0)

    thin_out = tmp_path / "thinned"
    assert main(["compress", "thin", "--graph", f"{out}_graph.json", "-o", str(thin_out)]) == 0
    text = capsys.readouterr().out
    assert "thin conv1 (Conv): 8 -> 4 channels" in text and "thin conv2 (Conv): 16 -> 12" in text
    before, after = re.search(r"dense_flops: (\d+) -> (\d+)", text).groups()
    thinned = ir.load(f"{thin_out}_graph.json")
    assert int(after) == complexity(thinned).dense_flops < int(before)
    check_close(_run(thinned, _x()), _run(pruned, _x()), rel_l2_max=MODEL_REL_L2)

    # --thin in one go gives the same files (the IR is deterministic)
    both = tmp_path / "both"
    assert main(["compress", "prune", "--graph", str(gpath), "--config", str(cfg), "--criterion",
                 "fpgm", "--thin", "-o", str(both)]) == 0
    assert Path(f"{both}_graph.json").read_bytes() == Path(f"{thin_out}_graph.json").read_bytes()
    assert Path(f"{both}_params.npz").read_bytes() == Path(f"{thin_out}_params.npz").read_bytes()


def test_lowrank(model, tmp_path, capsys):
    gpath, g = model
    out = tmp_path / "lr"
    cfg = tmp_path / "lr.yaml"
    cfg.write_text(yaml.safe_dump({"default": {"energy": 0.95}, "layers": {"conv2": {"rank": 16}},
                                   "exclude": ["fc"]}))
    assert main(["compress", "lowrank", "--graph", str(gpath), "--config", str(cfg),
                 "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "lowrank conv2 (Conv, channel): rank 16/16, energy kept 1.0000" in text
    assert re.search(r"lowrank conv1 \(Conv\): kept: keeping 0.95 of the energy needs rank \d+, "
                     r"which saves no FLOPs", text)
    got = ir.load(f"{out}_graph.json")
    assert [n.op_type for n in got].count("Conv") == 3
    check_close(_run(got, _x()), _run(g, _x()), op="Conv")  # full rank: the same model


@pytest.mark.parametrize("labels", [pytest.param(True, id="accuracy"),
                                    pytest.param(False, id="distance")])
def test_sensitivity_then_prune_with_its_yaml(model, tmp_path, capsys, labels):
    gpath, g = model
    x = _x(40)
    arrays = {"x": x}
    if labels:
        arrays["labels"] = _run(g, x).argmax(1)
    write_npz(tmp_path / "data.npz", arrays)
    files = {k: tmp_path / f"s.{k}" for k in ("csv", "png", "yaml")}
    assert main(["compress", "sensitivity", "--graph", str(gpath), "--data",
                 str(tmp_path / "data.npz"), "--ratios", "0.25,0.5,0.75", "--batch-size", "16",
                 "--csv", str(files["csv"]), "--plot", str(files["png"]), "--max-drop",
                 "0.2" if labels else "0.3", "--yaml", str(files["yaml"])]) == 0
    captured = capsys.readouterr()
    metric = "accuracy" if labels else "distance"
    assert f"baseline {metric}: {1 if labels else 0}" in captured.out
    assert "sensitivity: 7/7 done" in captured.err  # progress on stderr
    assert all(f.exists() for f in files.values())
    ratios = yaml.safe_load(files["yaml"].read_text())["prune_ratios"]
    assert ratios and set(ratios) <= {"conv1", "conv2"}
    assert main(["compress", "prune", "--graph", str(gpath), "--config", str(files["yaml"]),
                 "--thin", "-o", str(tmp_path / "p")]) == 0


@pytest.mark.parametrize("argv, message", [
    pytest.param(["prune", "--ratio", "0.5", "--exclude", "conv9"],
                 "no Conv/ConvTranspose/Gemm/MatMul layer named ['conv9']", id="unknown_layer"),
    pytest.param(["prune"], "nothing to prune", id="nothing_to_prune"),
    pytest.param(["prune", "--config", "{cfg}"], "unknown key(s) ['ratios']", id="bad_yaml_key"),
    pytest.param(["lowrank", "--rank", "99"], "rank 99 exceeds the full rank", id="rank_too_big"),
    pytest.param(["lowrank"], "give --energy, --flops or --rank", id="no_rank_choice"),
    pytest.param(["sensitivity", "--yaml", "x.yaml"], "--yaml needs --max-drop", id="yaml_no_drop"),
    pytest.param(["sensitivity"], "no data", id="sensitivity_no_data"),
])
def test_errors_are_one_line(model, tmp_path, capsys, argv, message):
    gpath, _ = model
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("ratios: {conv1: 0.5}\n")
    argv = [a.replace("{cfg}", str(cfg)) for a in argv]
    out = [] if argv[0] == "sensitivity" else ["-o", str(tmp_path / "never")]
    assert main(["compress", *argv, "--graph", str(gpath), *out]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not list(tmp_path.glob("never*"))
