"""Quantization sensitivity (fc.quant.sensitivity) on the trained digits CNN: a layer's
distance against a torch reconstruction quantized by hand with torch's fake_quantize, the
ranking, the proposed mix fed back meets its target, and the command's files."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from fc.quant.config import load_config
from fc.quant.plan import LayerSetting
from fc.quant.quantize import build_spec
from fc.quant.sensitivity import array_evaluator, candidate_layers, propose, sensitivity, write_layers_yaml
from fc.quant.strategies import get_strategy
from fc.quant.testing import calibrate_arrays, split

GEMM = "/fc/Gemm"


@pytest.fixture(scope="module")
def setup(digits):
    model, data, fused = digits
    table = calibrate_arrays(fused, split(data.x_train[:256], 64))

    def build(layers, bits=4):
        return build_spec(fused, table, get_strategy("symmetry_max"), weight_bits=bits,
                          act_bits=bits, layers=layers)

    xs, ys = split(data.x_test, 150), split(data.y_test, 150)
    ev = array_evaluator(fused, build, xs, ys)
    report = sensitivity(fused, ev, strategy="symmetry_max/4 bits", keep="16", labelled=True,
                         progress=False)
    return model, data, fused, table, build, ev, report


def test_layers_and_rows(setup):
    *_, fused, _, _, _, report = setup
    assert [r.name for r in report.layers] == candidate_layers(fused)
    assert {"/stem/stem.0/Conv", "/Add", GEMM, "/GlobalAveragePool"} <= set(candidate_layers(fused))
    assert "/pool/MaxPool" not in candidate_layers(fused)
    for r in report.layers:  # one layer quantized is closer to float than all of them
        assert r.only.distance.rel_l2 < report.quantized.distance.rel_l2
    assert report.float_.distance.rel_l2 == 0 and report.float_.top1 > 0.95
    print("\n" + "\n".join(report.lines()))


def test_one_layer_distance_against_torch_fake_quantize(setup):
    """Only the classifier quantized (4 bits): its input (the pooled features), per-channel
    weights and logits fake-quantized by torch with fc's scales, on the torch model's own
    trunk: the same final distance."""
    from fc.quant.report import Distance

    model, data, fused, table, build, _, report = setup
    spec = build({n.name: LayerSetting(float=True) for n in fused
                  if n.name != GEMM and n.op_type != "Flatten"})
    node = fused.node_by_name(GEMM)
    pin, pout = spec.params(node.inputs[0].name), spec.params(node.outputs[0].name)
    _, wp = spec.weights[(GEMM, 1)]
    x = torch.from_numpy(data.x_test)
    with torch.no_grad():
        h = model.pool(model.stem(x))
        h = model.head(torch.relu(h + model.conv2(model.conv1(h))))
        feats = torch.flatten(torch.nn.functional.adaptive_avg_pool2d(h, 1), 1)
        ref = model.fc(feats)
        fq = torch.fake_quantize_per_tensor_affine(feats, float(pin.scale), 0, pin.qmin, pin.qmax)
        w = torch.fake_quantize_per_channel_affine(
            model.fc.weight, torch.from_numpy(wp.scale.copy()),
            torch.zeros(len(wp.scale), dtype=torch.int32), 0, wp.qmin, wp.qmax)
        y = torch.nn.functional.linear(fq, w, model.fc.bias)
        y = torch.fake_quantize_per_tensor_affine(y, float(pout.scale), 0, pout.qmin, pout.qmax)
    d = Distance()
    d.add(y.numpy(), ref.numpy())
    got = next(r for r in report.layers if r.name == GEMM).only.distance.rel_l2
    print(f"\nclassifier alone at 4 bits: fc {got:.5f}, torch {d.rel_l2:.5f}")
    assert got == pytest.approx(d.rel_l2, rel=0.02)


def test_proposal_fed_back_meets_the_target(setup, tmp_path, digits):
    import fc.ir

    *_, fused, table, build, ev, report = setup
    q_drop = report.drop(report.quantized)
    target = max(0.5, q_drop / 4)
    prop = propose(report, ev, target_drop=target, progress=False)
    print(f"\n4-bit top-1 drop {q_drop:.2f} points; keep {prop['layers']} at 16 bits -> "
          f"{prop['drop']:.2f} (target {target:g})")
    assert prop["met"] and 0 < len(prop["layers"]) < len(report.layers)
    path = write_layers_yaml(prop, tmp_path / "layers.yml")
    fc.ir.save(fused, tmp_path / "m")
    cfg = tmp_path / "c.yml"
    cfg.write_text(f"MODEL:\n  graph: m_graph.json\nQUAN:\n  qconfig:\n    layers: {path.name}\n")
    layers = load_config(cfg).layer_settings(fused)
    assert sorted(layers) == sorted(prop["layers"])
    again = ev(layers)
    assert 100 * (report.float_.top1 - again.top1) <= target + 1e-9


@pytest.fixture(scope="module")
def sens_project(digits, tmp_path_factory):
    """The digits CNN's fused IR, calibration PNGs, a labelled hold-out list, a 4-bit config."""
    from PIL import Image

    import fc.ir

    _, data, fused = digits
    tmp_path = tmp_path_factory.mktemp("sens")
    fc.ir.save(fused, tmp_path / "ir" / "IR_fused_for_CModel")
    for d in ("cal", "test"):
        (tmp_path / d).mkdir()
    for i, x in enumerate(data.x_train[:48]):
        Image.fromarray(np.round(x[0] * 255).astype(np.uint8)).save(tmp_path / "cal" / f"{i:03d}.png")
    lines = []
    for i, (x, y) in enumerate(zip(data.x_test[:120], data.y_test[:120])):
        Image.fromarray(np.round(x[0] * 255).astype(np.uint8)).save(tmp_path / "test" / f"{i:03d}.png")
        lines.append(f"{i:03d}.png {int(y)}\n")
    (tmp_path / "test.list").write_text("".join(lines))
    (tmp_path / "classes.txt").write_text("".join(f"d{k}\n" for k in range(10)))
    cfg = tmp_path / "c.yml"
    cfg.write_text("MODEL:\n  graph: ir/IR_fused_for_CModel_graph.json\nQUAN:\n  qconfig:\n"
                   "    image_path: cal\n    bits: 4\nEVALUATION:\n  input_images: test\n"
                   "  image_file: test.list\n  label_file: classes.txt\n  batch_size: 30\n"
                   "OUTPUT_DIR: out\n")
    return tmp_path, cfg


def test_cli_writes_sorted_csv_json_png_and_layers(digits, sens_project, capsys):
    from fc.cli import main

    _, _, fused = digits
    tmp_path, cfg = sens_project
    assert main(["quant", "sensitivity", "--config", str(cfg), "--no-progress",
                 "--target-distance", "0.05"]) == 0
    out = capsys.readouterr().out
    assert "proposal: keep" in out and "verified" in out
    stem = tmp_path / "out" / "sensitivity_symmetry_max_perchannel"
    rows = list(csv.DictReader(open(f"{stem}.csv")))
    drops = [float(r["only_drop"]) for r in rows]
    assert drops == sorted(drops, reverse=True) and len(rows) == len(candidate_layers(fused))
    assert (tmp_path / "out" / "sensitivity_symmetry_max_perchannel.png").stat().st_size > 1000
    doc = json.loads(open(f"{stem}.json").read())
    assert doc["proposal"]["met"] and len(doc["layers"]) == len(rows)
    kept = load_config(cfg, {"QUAN.qconfig.layers": f"{stem}_layers.yml"}).layer_settings(fused)
    assert sorted(kept) == sorted(doc["proposal"]["layers"])
    assert main(["quant", "sensitivity", "--config", str(cfg), "--no-progress",
                 "--set", "QUAN.qconfig.layers={nope: float}"]) == 2


def test_a_process_pool_and_a_dask_cluster_give_the_same_report(sens_project, tmp_path, capsys):
    """fcc quant sensitivity with its runs as tasks (mix x image shard) on 2 local processes
    and on a dask.distributed LocalCluster with 2 workers: the same report file to the byte
    as the in-process run (the per-batch sums are folded in batch order), proposal included."""
    from dask.distributed import LocalCluster

    from fc.cli import main

    root, cfg = sens_project
    docs = {}
    base = ["quant", "sensitivity", "--config", str(cfg), "--no-progress", "--target-distance",
            "0.05"]
    for how, extra in (("local", []), ("pool", ["--jobs", "2", "--shards", "3"])):
        out = tmp_path / how
        assert main(base + ["--output-dir", str(out)] + extra) == 0
        docs[how] = (out / "sensitivity_symmetry_max_perchannel.json").read_text()
    printed = capsys.readouterr().out
    assert "(tasks ran in 2 local worker processes)" in printed
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster:
        out = tmp_path / "dask"
        assert main(base + ["--output-dir", str(out), "--dask", cluster.scheduler_address,
                            "--shards", "2"]) == 0
        docs["dask"] = (out / "sensitivity_symmetry_max_perchannel.json").read_text()
    assert f"(tasks ran on the Dask cluster at {cluster.scheduler_address})" in capsys.readouterr().out
    assert docs["pool"] == docs["local"] and docs["dask"] == docs["local"]
    doc = json.loads(docs["local"])
    assert doc["proposal"]["met"] and len(doc["layers"]) >= 6 and doc["quantized"]["images"] == 120


def test_a_layers_file_of_several_16_bit_layers_reads_back(digits, tmp_path):
    """Every kept layer gets its own mapping in the file (no YAML anchor/alias, which fc's
    config reader refuses), and the config reads them all back at 16 bits."""
    import fc.ir

    _, _, fused = digits
    names = candidate_layers(fused)[:3]
    path = write_layers_yaml({"layers": names, "keep": "16", "verified": "test"},
                             tmp_path / "layers.yml")
    assert "&" not in path.read_text() and "*" not in path.read_text()
    fc.ir.save(fused, tmp_path / "m")
    cfg = tmp_path / "c.yml"
    cfg.write_text("MODEL:\n  graph: m_graph.json\nQUAN:\n  qconfig:\n    layers: layers.yml\n")
    layers = load_config(cfg).layer_settings(fused)
    assert sorted(layers) == sorted(names)
    assert all(s.weight_bits == s.act_bits == 16 and not s.float for s in layers.values())
