"""fcc quant end to end on the trained digits CNN with real image files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import fc.ir
from fc.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A model folder (fused IR of the trained digits CNN), two image folders, a config."""
    import torch

    from fc.quant.testing import torch_to_fused
    from fc.zoo.torch.digits import train_digits_cnn

    root = tmp_path_factory.mktemp("quant")
    model, data = train_digits_cnn(epochs=15)
    fused = torch_to_fused(model, torch.from_numpy(data.x_test[:1]), "digits_cnn")
    fc.ir.save(fused, root / "model" / "IR_fused_for_CModel")
    for folder, xs in (("calib", data.x_train[:96]), ("compare", data.x_test[:64])):
        (root / folder).mkdir()
        for i, x in enumerate(xs):
            Image.fromarray(np.round(x[0] * 255).astype(np.uint8)).save(root / folder / f"{i:03d}.png")
    cfg = root / "digits.yml"
    cfg.write_text("""MODEL:
    graph: 'model/IR_fused_for_CModel_graph.json'
QUAN:
    strategy: 'symmetry_max'
    qconfig:
        table: 'cal/digits.json'
        image_path: 'calib'
        method: 'percentile'
        batch_size: 32
EVALUATION:
    input_images: 'compare'
    output_node: 'logits:0'
OUTPUT_DIR: 'reports'
SAVE_PATH: 'pbs/digits_quan.pb'
""")
    return root, cfg


def test_calibrate_writes_both_table_forms(project, capsys):
    root, cfg = project
    assert main(["quant", "calibrate", "--config", str(cfg)]) == 0
    doc = json.loads((root / "cal" / "digits.json").read_text())
    assert doc["method"] == "percentile" and doc["meta"]["images"] == 96
    assert "input" in doc["tensors"] and len(doc["tensors"]) == 8
    text = (root / "cal" / "digits.txt").read_text().splitlines()
    assert text[1] == "# name threshold min max" and len(text) == 2 + 8
    assert "calibrated 8 tensors on 96 images" in capsys.readouterr().out


def test_error_reports_every_layer_and_the_final_distance(project, capsys):
    root, cfg = project
    assert main(["quant", "error", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "(reused)" in out  # the table of the previous test: same inputs
    final = [ln for ln in out.splitlines() if ln.startswith("final distance: ")]
    assert len(final) == 1 and 0 < float(final[0].split(": ")[1]) < 0.05
    assert "worst 5 layers by isolated SQNR" in out
    stem = root / "reports" / "error_symmetry_max_perchannel"
    doc = json.loads(stem.with_suffix(".json").read_text())
    assert [r["op"] for r in doc["layers"]] == ["Conv", "MaxPool", "Conv", "Conv", "Add", "Conv",
                                                "GlobalAveragePool", "Flatten", "Gemm"]
    assert doc["final_sqnr_db"] > 25 and doc["top1_agreement"][1] == 64
    assert stem.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    assert "![per-layer SQNR](error_symmetry_max_perchannel.png)" in stem.with_suffix(".md").read_text()
    assert stem.with_suffix(".csv").read_text().count("\n") == 10
    assert (root / "pbs" / "digits_quan.pb").stat().st_size > 1000
    q = fc.ir.load(root / "model" / "IR_quantized_for_CModel_graph.json")
    assert sum(n.op_type == "QuantizeLinear" for n in q) == 8


def test_flags_override_and_recalibrate_when_inputs_change(project, capsys):
    root, cfg = project
    assert main(["quant", "quantize", "--config", str(cfg), "--method", "max", "--no-png",
                 "--strategy", "scale_shift"]) == 0
    assert "(calibrated now)" in capsys.readouterr().out
    assert json.loads((root / "cal" / "digits.json").read_text())["method"] == "max"


def test_bad_image_is_one_line_and_exit_2(project, tmp_path, capsys):
    root, cfg = project
    bad = tmp_path / "imgs"
    bad.mkdir()
    (bad / "x.png").write_bytes(b"garbage")
    assert main(["quant", "calibrate", "--config", str(cfg), "--image-path", str(bad),
                 "--table", str(tmp_path / "t.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "x.png: not a readable image" in err
    assert not (tmp_path / "t.json").exists()


def test_example_scripts_run_the_same_commands(project):
    root, cfg = project
    for script in ("test_calibration.py", "test_quantize_error.py"):
        proc = subprocess.run([sys.executable, str(EXAMPLES / script), "--config-file", str(cfg),
                               "--no-png"], capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
    assert "final distance: " in proc.stdout


def test_error_of_a_true_quantization_strategy_dumps_integer_layers(project, tmp_path, capsys):
    root, cfg = project
    dump = tmp_path / "dump"
    assert main(["quant", "error", "--config", str(cfg), "--strategy", "scale_shift_t", "--no-png",
                 "--dump", str(dump)]) == 0
    out = capsys.readouterr().out
    assert "integer run vs simulation, output differences in steps: {0: 640} (100.00% within" in out
    files = sorted(p.name for p in dump.iterdir())
    assert len(files) == 8 and "input.npy" in files
    assert np.load(dump / "logits.npy").dtype == np.int8


def test_dump_accumulators_writes_each_layers_int32_sums(project, tmp_path, capsys):
    """--dump-accumulators: each Conv/Gemm's int32 accumulator (bias included) beside its int8
    output; for the first Conv it is the integer correlation of the dumped input (int64
    loops here), and requantized by the layer's multiplier (gemmlowp, the definitions'
    int64 code) and clamped it gives the dumped output. Without --dump: one line, exit 2."""
    import re

    from fc.np_ops import integer as ia
    from fc.quant.pipeline import QUANTIZED_PREFIX

    root, cfg = project
    dump = tmp_path / "dump"
    assert main(["quant", "error", "--config", str(cfg), "--strategy", "symmetry_max_t", "--no-png",
                 "--dump", str(dump), "--dump-accumulators"]) == 0
    capsys.readouterr()
    accs = sorted(p.name for p in dump.glob("*.acc.npy"))
    outs = {p.name for p in dump.glob("*.npy")} - set(accs)
    assert accs and all(a.replace(".acc.npy", ".npy") in outs for a in accs)
    for name in accs:
        acc = np.load(dump / name)
        assert acc.dtype == np.int32 and acc.shape == np.load(dump / name.replace(".acc", "")).shape
    # the first Conv, from the written quantized IR: its accumulator is the integer
    # correlation of the dumped input with the int8 weights plus the int32 bias, and the
    # requantized, clamped accumulator is its dumped output
    qg = fc.ir.load(next((root / "model").glob(f"{QUANTIZED_PREFIX}*_graph.json")))
    conv = next(n for n in qg if n.op_type == "Conv")
    q = conv.output.users[0]
    out_name = re.sub(r"[^A-Za-z0-9_.-]", "_", q.name[: -len("_quantize")].lstrip("/"))
    x = np.load(dump / "input.npy").astype(np.int64)
    dq = [conv.inputs[i].producer for i in (1, 2)]
    w, b = (d.inputs[0].const.astype(np.int64) for d in dq)
    assert tuple(conv.attrs["strides"]) == (1, 1) and conv.attrs["group"] == 1
    t, l_, _, _ = conv.attrs["pads"]
    kh, kw = w.shape[2:]
    acc = np.load(dump / f"{out_name}.acc.npy")
    xp = np.pad(x, ((0, 0), (0, 0), (t, acc.shape[2] + kh - 1 - x.shape[2] - t),
                    (l_, acc.shape[3] + kw - 1 - x.shape[3] - l_)))
    want = np.zeros(acc.shape, np.int64) + b.reshape(1, -1, 1, 1)
    for i in range(kh):
        for j in range(kw):
            win = xp[:, :, i:i + acc.shape[2], j:j + acc.shape[3]]
            want += np.einsum("nchw,oc->nohw", win, w[:, :, i, j])
    np.testing.assert_array_equal(acc, want)
    s_x = float(conv.inputs[0].producer.inputs[1].const)
    real = s_x * dq[0].inputs[1].const.astype(np.float64) / float(q.inputs[1].const)
    y = ia.requantize(acc, real, rounding="gemmlowp")
    lo = max(q.attrs["qmin"], 0) if conv.attrs.get("activation") == "relu" else q.attrs["qmin"]
    assert conv.attrs.get("activation") in ("", "relu")
    np.testing.assert_array_equal(np.clip(y, lo, q.attrs["qmax"]), np.load(dump / f"{out_name}.npy"))
    assert main(["quant", "error", "--config", str(cfg), "--strategy", "symmetry_max_t",
                 "--dump-accumulators"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--dump-accumulators needs --dump" in err
    # --dump where nothing would be dumped: one line, exit 2, nothing written
    for argv, says in ((["calibrate"], "fcc quant calibrate` does not"),
                       (["error", "--strategy", "symmetry_max"], "'symmetry_max' is simulated")):
        other = tmp_path / f"dump_{argv[0]}"
        assert main(["quant", argv[0], "--config", str(cfg), *argv[1:], "--dump", str(other)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and says in err and not other.exists()


@pytest.mark.parametrize("rounding", ["gemmlowp", "single"])
def test_error_of_symmetry_max_t_takes_the_configs_rounding(project, capsys, monkeypatch, rounding):
    """QUAN.qconfig.rounding reaches the integer run, and the simulation it is checked
    against (the fixed-point one of the same rounding) equals it bit for bit."""
    from fc.quant import integer_run

    root, cfg = project
    seen = {}
    orig = integer_run.IntegerInterpreter.__init__

    def spy(self, graph, **kw):
        seen["rounding"] = kw.get("rounding")
        orig(self, graph, **kw)

    monkeypatch.setattr(integer_run.IntegerInterpreter, "__init__", spy)
    assert main(["quant", "error", "--config", str(cfg), "--strategy", "symmetry_max_t", "--no-png",
                 "--set", f"QUAN.qconfig.rounding={rounding}"]) == 0
    out = capsys.readouterr().out
    assert seen["rounding"] == rounding
    assert "integer run vs simulation, output differences in steps: {0: 640} (100.00% within" in out


_GOOD = """MODEL:
    graph: 'model/IR_fused_for_CModel_graph.json'
QUAN:
    strategy: 'symmetry_max'
    qconfig:
        table: 'cal/t.json'
        image_path: 'calib'
EVALUATION:
    input_images: 'calib'
OUTPUT_DIR: 'reports'
SAVE_PATH: 'pbs/q.pb'
"""


@pytest.mark.parametrize("step", ["calibrate", "error"])
@pytest.mark.parametrize("old, new, key, message", [
    pytest.param("        image_path", "        methd: max\n        image_path",
                 "QUAN.qconfig.methd", "unknown key", id="unknown_key"),
    pytest.param("        image_path", "        bits: eight\n        image_path",
                 "QUAN.qconfig.bits", "expected int, got str", id="wrong_type"),
    pytest.param("IR_fused_for_CModel_graph.json", "nothing_graph.json",
                 "MODEL.graph", "file not found", id="missing_file"),
    pytest.param("'calib'\nEVALUATION", "'no_such_folder'\nEVALUATION",
                 "QUAN.qconfig.image_path", "folder not found", id="missing_folder"),
    pytest.param("'symmetry_max'", "'symmetric'", "QUAN.strategy",
                 "unknown quantization strategy", id="bad_strategy"),
])
def test_config_mistakes_exit_2_with_one_line_and_write_nothing(project, tmp_path, capsys, step,
                                                                old, new, key, message):
    """The command, not only the loader: each mistake is one stderr line naming the config file
    and the key, exit status 2, and no file appears anywhere under the config's folder (no
    table, report, .pb or quantized IR beside the model)."""
    import shutil

    root, _ = project
    shutil.copytree(root / "model", tmp_path / "model",
                    ignore=shutil.ignore_patterns("IR_quantized*"))
    shutil.copytree(root / "calib", tmp_path / "calib")
    cfg = tmp_path / "bad.yml"
    assert old in _GOOD
    cfg.write_text(_GOOD.replace(old, new, 1))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    capsys.readouterr()
    assert main(["quant", step, "--config", str(cfg), "--no-png", "--no-progress"]) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert str(cfg) in err and key in err and message in err, err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_a_config_mistake_is_exit_status_2_of_the_process(project, tmp_path):
    """The same through the installed entry point (``python -m fc``), as a shell sees it."""
    cfg = tmp_path / "bad.yml"
    cfg.write_text(_GOOD.replace("    strategy:", "    stratgy:").replace(
        "'model/", f"'{project[0]}/model/").replace("'calib'", f"'{project[0]}/calib'"))
    proc = subprocess.run([sys.executable, "-m", "fc", "quant", "calibrate", "--config", str(cfg)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "unknown key QUAN.stratgy" in proc.stderr
    assert str(cfg) in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yml"]
