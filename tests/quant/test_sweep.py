"""Accuracy sweeps: the table of every configuration on the digits CNN, the same whether the
tasks run in turn, in a local process pool or on a Dask LocalCluster; fcc quant accuracy."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from fc.cli import main
from fc.quant.sweep import sweep

# digits_eval: the trained digits CNN on disk, its hold-out PNGs, list and config
from tests.quant.test_accuracy import digits_eval  # noqa: F401


def _figures(table):
    return [{k: v for k, v in d.items() if k != "images_per_s"} for d in table.dicts()]


@pytest.fixture(scope="module")
def local_table(digits_eval):  # noqa: F811
    _, cfg, _, _ = digits_eval
    return sweep(cfg, progress=False)


def test_every_strategy_and_weight_mode_and_per_channel_holds(local_table, digits_eval):  # noqa: F811
    from fc.quant.strategies import STRATEGIES

    _, _, y_test, torch_logits = digits_eval
    names = [r.config.name for r in local_table.rows]
    assert names == ["null"] + [f"{s}/{w}" for s in STRATEGIES if s != "null"
                                for w in ("perlayer", "perchannel")]
    base = local_table.row("null").accuracy
    assert base.top1 == pytest.approx(float(np.mean(torch_logits.argmax(1) == y_test)))
    assert base.top1 >= 0.97 and base.agreement == 1.0
    for r in local_table.rows:
        assert r.accuracy is not None, r.error
        assert r.accuracy.images == len(y_test)
    pc = local_table.row("symmetry_max/perchannel").as_dict()
    assert abs(pc["drop_top1"]) <= 1.0
    # integer execution agrees with its simulation on nearly every image
    for s in ("symmetry_max", "scale_shift"):
        sim = local_table.row(f"{s}/perchannel").accuracy.predictions[:, 0]
        ints = local_table.row(f"{s}_t/perchannel").accuracy.predictions[:, 0]
        assert np.mean(sim == ints) >= 0.99
    print("\n" + "\n".join(local_table.lines()))


def test_a_process_pool_and_a_dask_cluster_give_the_same_table(local_table, digits_eval):  # noqa: F811
    from dask.distributed import LocalCluster

    _, cfg, _, _ = digits_eval
    pooled = sweep(cfg, shards=3, jobs=2, progress=False)
    assert _figures(pooled) == _figures(local_table)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster:
        remote = sweep(cfg, shards=4, dask=cluster.scheduler_address, progress=False)
    assert _figures(remote) == _figures(local_table)


def test_fcc_quant_accuracy_prints_and_writes_the_table(local_table, digits_eval, capsys,  # noqa: F811
                                                        tmp_path):
    root, cfg, _, _ = digits_eval
    rc = main(["quant", "accuracy", "--config", str(cfg), "--strategies", "symmetry_max,minmax",
               "--output-dir", str(tmp_path), "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "(reused)" in out  # calibrated by the fixture's sweep, same inputs
    for name in ("null", "minmax/perlayer", "symmetry_max/perchannel"):
        m = re.search(rf"^{re.escape(name)}\s+([\d.]+)\s+([\d.]+)", out, re.M)
        d = local_table.row(name).as_dict()
        assert (float(m.group(1)), float(m.group(2))) == (round(d["top1"], 4), round(d["top5"], 4))
    doc = json.loads((tmp_path / "accuracy.json").read_text())
    assert [r["config"] for r in doc["rows"]] == ["null", "symmetry_max/perlayer",
                                                 "symmetry_max/perchannel", "minmax/perlayer",
                                                 "minmax/perchannel"]
    csv = (tmp_path / "accuracy.csv").read_text().splitlines()
    assert csv[0].startswith("config,top1,top5,drop_top1") and len(csv) == 6
    assert "| symmetry_max/perchannel |" in (tmp_path / "accuracy.md").read_text()
    assert (tmp_path / "accuracy.png").stat().st_size > 0


def test_a_bad_list_is_one_line_or_a_count(digits_eval, capsys, tmp_path):  # noqa: F811
    root, cfg, _, _ = digits_eval
    bad = tmp_path / "bad.list"
    lines = (root / "test.list").read_text().splitlines()
    bad.write_text("\n".join(lines[:5] + ["gone.png 3", "001.png eleven"] + lines[5:10]) + "\n")
    argv = ["quant", "accuracy", "--config", str(cfg), "--set", f"EVALUATION.image_file={bad}",
            "--strategies", "symmetry_max", "--output-dir", str(tmp_path / "out"), "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{bad}:6: image not found" in err
    assert not (tmp_path / "out").exists()
    assert main(argv + ["--skip-missing"]) == 0
    out = capsys.readouterr().out
    assert "skipped 2 line(s)" in out and "(10 images, 2 skipped)" in out
