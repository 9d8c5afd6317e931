"""fcc checklist: the row of a real model against what each command prints; failed and
skipped steps; models files, merged tables and a Dask cluster."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from fc.checklist import (
    FAILED,
    OK,
    SKIPPED,
    STEPS,
    ChecklistError,
    Failed,
    ModelEntry,
    Skip,
    Step,
    load_models,
    read_checklist,
    run_checklist,
    run_model,
)
from fc.cli import main
from fc.errors import FcError

PRODUCT = [f"{p}_{s}" for p in ("IR_for_reconstruct", "IR_fused_for_CModel")
           for s in ("graph.json", "params.npz")]
STEP = {s.key: s for s in STEPS}


def _fcc(capsys, *argv) -> tuple[int, str]:
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    return rc, capsys.readouterr().out


def _line(text: str, prefix: str) -> str:
    found = [ln[len(prefix):] for ln in text.splitlines() if ln.startswith(prefix)]
    assert len(found) == 1, text
    return found[0]


# -- the digits CNN through every step --------------------------------------------------------
@pytest.fixture(scope="module")
def checklist(digits_project, tmp_path_factory):
    """``fcc checklist torch digits.pt2 --config digits.yml``: (exit status, DIR, JSON, stderr)."""
    out = tmp_path_factory.mktemp("checklist") / "out"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(["checklist", "torch", str(digits_project.pt2), "--config",
                   str(digits_project.config), "-o", str(out), "--no-png", "--name", "digits_cnn",
                   "--orig-top1", "0.981", "--training-date", "2026-11-20"])
    return rc, out, json.loads((out / "checklist.json").read_text()), err.getvalue()


def test_every_column_matches_what_the_commands_print(checklist, digits_project, tmp_path, capsys):
    _, out, doc, _ = checklist
    (model,) = doc["models"]
    row, steps = model["row"], {s["key"]: s for s in model["steps"]}
    assert row["model"] == "digits_cnn" and model["out_dir"] == str(out / "digits_cnn")
    assert row["orig model top1"] == "0.981" and row["training date"] == "2026-11-20"

    rc, text = _fcc(capsys, "compile", "torch", digits_project.pt2, "-o", tmp_path / "ir",
                    "--no-png")
    assert rc == 0
    before, after = re.fullmatch(r"(\d+) \(IR for reconstruct\) -> (\d+) \(IR fused for CModel\)",
                                 _line(text, "nodes: ")).groups()
    assert row["compiler pass"] == f"yes ({before} → {after} nodes)"
    for name in PRODUCT:  # the checklist checked the very files fcc compile writes
        assert (out / "digits_cnn" / name).read_bytes() == (tmp_path / "ir" / name).read_bytes()

    ir = out / "digits_cnn"
    rc, text = _fcc(capsys, "info", "--graph", ir / "IR_for_reconstruct_graph.json")
    dims = re.fullmatch(r"x: float32\[(.*)\]", _line(text, "input ").strip()).group(1)
    assert row["input_shape"] == "x".join(d.strip() for d in dims.split(","))

    rc, text = _fcc(capsys, "complexity", "--graph-json", ir / "IR_for_reconstruct_graph.json",
                    "--params-file", ir / "IR_for_reconstruct_params.npz", "-q")
    figures = dict(kv.split(": ") for kv in text.strip().split(", "))
    assert row["nnz/sparsity"] == f"{figures['nnz']} / {float(figures['sparsity']):.4f}"
    assert row["flops dense/sp M"] == (f"{float(figures['dense_flops']) / 1e6:.2f} / "
                                       f"{float(figures['sparse_flops']) / 1e6:.2f}")
    assert float(figures["dense_flops"]) > 0

    for key, column in (("torch", "torch rt"), ("tf", "tf rt")):
        rc, text = _fcc(capsys, *shlex.split(steps[key]["figures"]["command"])[1:])
        assert rc == 0 and row[column] == f"yes ({_line(text, 'distance: ')})"
        assert float(_line(text, "distance: ")) < 1e-5


def test_quantization_distances_are_those_of_fcc_quant_error(checklist, capsys):
    _, _, doc, _ = checklist
    step = next(s for s in doc["models"][0]["steps"] if s["key"] == "quant_error")
    assert step["status"] == OK
    strategies = step["figures"]["strategies"]
    from fc.quant.strategies import STRATEGIES

    assert list(strategies) == list(STRATEGIES)
    assert strategies["null"]["final_distance"] == 0
    for name in ("minmax", "scale_shift", "symmetry_max"):  # the config's strategy last
        rc, text = _fcc(capsys, *shlex.split(strategies[name]["command"])[1:])
        assert rc == 0
        assert _line(text, "final distance: ") == f"{strategies[name]['final_distance']:.6g}"
        assert 0 < strategies[name]["final_distance"] < 0.05


def test_accuracy_columns_are_those_of_fcc_quant_accuracy(checklist, capsys):
    """The config names labelled images: the accuracy step measures every strategy on them,
    and its figures are those `fcc quant accuracy` prints."""
    rc, _, doc, _ = checklist
    (model,) = doc["models"]
    step = next(s for s in model["steps"] if s["key"] == "quant_accuracy")
    assert step["status"] == OK, step["reason"]
    rows = {r["strategy"]: r for r in step["figures"]["rows"]}
    from fc.quant.strategies import STRATEGIES

    assert list(rows) == list(STRATEGIES)
    rc2, text = _fcc(capsys, *shlex.split(step["figures"]["command"])[1:])
    assert rc2 == 0
    printed = {}
    for name, top1, top5, agree in re.findall(
            r"^(\S+)\s+([\d.]+)\s+([\d.]+)\s+-?[\d.]+\s+-?[\d.]+\s+([\d.]+)\s+[\d.]+$", text, re.M):
        printed[name.split("/")[0]] = (top1, top5, agree)
    assert set(printed) == set(rows), text
    for name, r in rows.items():
        assert printed[name] == (f"{r['top1']:.4f}", f"{r['top5']:.4f}", f"{r['agreement']:.4f}")
    assert rows["null"]["images"] == 120 and rows["null"]["top1"] >= 0.9
    assert model["row"]["acc top1"] == printed["null"][0]
    assert model["row"]["quantacc (fpga/asic)"] == (f"{printed['scale_shift_t'][0]} / "
                                                    f"{printed['symmetry_max_t'][0]}")
    assert rc == 0 and model["passed"]
    print("\n| " + " | ".join(model["row"].values()) + " |\n" + text)


def test_the_markdown_holds_the_row_and_a_section_per_step(checklist):
    _, out, doc, stderr = checklist
    md = (out / "checklist.md").read_text()
    header = "| " + " | ".join(doc["columns"]) + " |"
    assert header.startswith("| model | acc top1 | orig model top1 | training date | input_shape |")
    lines = md.splitlines()
    row = lines[lines.index(header) + 2]
    assert row == "| " + " | ".join(doc["models"][0]["row"].values()) + " |"
    for step in doc["models"][0]["steps"]:
        assert f"### {step['title']}: " in md
        for path in step["files"]:
            assert Path(path).exists(), path
    assert "IR_quantized_for_CModel_graph.json" in md and "digits_quan.pb" in md
    # progress: a line before and after each step
    for i, step in enumerate(STEPS, 1):
        assert f"[digits_cnn {i}/{len(STEPS)}] {step.title} ..." in stderr
        assert f"[digits_cnn {i}/{len(STEPS)}] {step.title}: " in stderr


# -- a tiny ONNX model for the fast tests ----------------------------------------------------
def _tiny_onnx(path: Path, seed: int = 0, channels: int = 4) -> Path:
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((channels, 3, 3, 3)).astype(np.float32)
    g = rng.standard_normal((10, channels)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "g"], ["y"], transB=1)]
    graph = helper.make_graph(nodes, path.stem,
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(g, "g")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


FAST = tuple(STEP[k] for k in ("compile", "complexity"))


def _step(key: str, fn, after: tuple[str, ...] = ()) -> Step:
    return Step(key, key, fn, lambda f: [str(f)], after=after)


def _raise(e: BaseException):
    def run(job):
        raise e

    return run


def test_a_failed_step_is_no_with_its_reason_and_the_others_still_run(tmp_path):
    model = _tiny_onnx(tmp_path / "tiny.onnx")
    steps = (STEP["compile"],
             _step("fc_error", _raise(FcError("node 'c' (Conv): bad"))),
             _step("bug", _raise(RuntimeError("oops\nsecond line"))),
             _step("skip", _raise(Skip("EVALUATION.image_file"))),
             _step("check", _raise(Failed("distance 1e-2 above tol", {"distance": 0.01}))),
             _step("after_bug", lambda job: ({"n": 1}, []), after=("bug",)),
             STEP["complexity"])
    r = run_model(ModelEntry("onnx", str(model)), tmp_path / "out", steps=steps, draw=False)
    got = {s.key: (s.status, s.reason) for s in r.steps}
    assert got == {"compile": (OK, ""), "fc_error": (FAILED, "node 'c' (Conv): bad"),
                   "bug": (FAILED, "RuntimeError: oops"),
                   "skip": (SKIPPED, "needs EVALUATION.image_file"),
                   "check": (FAILED, "distance 1e-2 above tol"),
                   "after_bug": (FAILED, "needs bug"), "complexity": (OK, "")}
    assert r.result("check").figures == {"distance": 0.01}
    assert not r.passed and r.name == "tiny"


def test_a_model_that_does_not_compile_still_gets_its_row(tmp_path, capsys):
    rc = main(["checklist", "onnx", str(tmp_path / "missing.onnx"), "-o", str(tmp_path / "out")])
    assert rc == 1
    (m,) = read_checklist(tmp_path / "out" / "checklist.json")
    assert m.steps[0].status == FAILED and "missing.onnx" in m.steps[0].reason
    assert [(s.status, s.reason) for s in m.steps[1:]] == [(FAILED, "needs compile")] * 5
    assert m.row()["compiler pass"] == "no" and m.row()["torch rt"] == "no"
    assert "missing: failed: compile, complexity" in capsys.readouterr().out


@pytest.mark.parametrize("config, error, accuracy", [
    pytest.param(None, "needs --config C.yml", "needs --config C.yml", id="no_config"),
    pytest.param("QUAN:\n  strategy: minmax\n", "needs QUAN.qconfig.image_path",
                 "needs QUAN.qconfig.image_path", id="no_calibration_images"),
    pytest.param("QUAN:\n  qconfig:\n    image_path: img\n", "needs EVALUATION.input_images",
                 "needs EVALUATION.image_file", id="no_evaluation_images"),
    pytest.param("QUAN:\n  qconfig:\n    image_path: img\nEVALUATION:\n  input_images: img\n",
                 None, "needs EVALUATION.image_file", id="no_labelled_list"),
])
def test_steps_without_their_data_are_skipped_naming_the_key(tmp_path, config, error, accuracy):
    from PIL import Image

    (tmp_path / "img").mkdir()
    for i in range(2):
        Image.fromarray(np.full((8, 8, 3), 60 * i, np.uint8)).save(tmp_path / "img" / f"{i}.png")
    if config is not None:
        (tmp_path / "c.yml").write_text(config)
    entry = ModelEntry("onnx", str(_tiny_onnx(tmp_path / "tiny.onnx")),
                       config=None if config is None else str(tmp_path / "c.yml"))
    steps = (STEP["compile"], STEP["quant_error"], STEP["quant_accuracy"])
    from fc.spelling import cli_spelling

    with cli_spelling():
        r = run_model(entry, tmp_path / "out", steps=steps, draw=False)
    e, a = r.result("quant_error"), r.result("quant_accuracy")
    if error is None:
        assert e.status == OK and e.figures["strategies"]["minmax"]["final_distance"] > 0
    else:
        assert (e.status, e.reason) == (SKIPPED, error)
    assert (a.status, a.reason) == (SKIPPED, accuracy)
    assert r.passed and r.row()["quantacc (fpga/asic)"] == "skipped"


def test_a_models_file_gives_one_row_each_and_reruns_replace_their_row(tmp_path):
    for i in range(3):
        _tiny_onnx(tmp_path / f"m{i}.onnx", seed=i, channels=4 + i)
    (tmp_path / "models.yml").write_text(
        "- {framework: onnx, model: m0.onnx, name: first, orig_top1: 0.75, training_date: "
        "'2019-03-01'}\n- {framework: onnx, model: m1.onnx}\n")
    out = tmp_path / "out"
    results, written = run_checklist(load_models(tmp_path / "models.yml"), out, steps=FAST,
                                     draw=False)
    assert [r.name for r in results] == ["first", "m1"] and all(r.passed for r in results)
    assert written == [out / "checklist.json", out / "checklist.md"]
    assert results[0].row()["orig model top1"] == "0.75"
    assert results[0].row()["training date"] == "2019-03-01"
    nnz = [r.row()["nnz/sparsity"] for r in results]
    assert nnz == ["148 / 0.0000", "185 / 0.0000"]  # 4x3x3x3 + 10x4, 5x3x3x3 + 10x5

    # rerun: "first" is now m2 (its row changes in place), a new model is appended
    (tmp_path / "again.yml").write_text("- {framework: onnx, model: m2.onnx, name: first}\n"
                                        "- {framework: onnx, model: m0.onnx, name: third}\n")
    run_checklist(load_models(tmp_path / "again.yml"), out, steps=FAST, draw=False)
    rows = [m.row() for m in read_checklist(out / "checklist.json")]
    assert [(r["model"], r["nnz/sparsity"]) for r in rows] == [
        ("first", "222 / 0.0000"), ("m1", "185 / 0.0000"), ("third", "148 / 0.0000")]
    assert rows[0]["orig model top1"] == "—"
    md = (out / "checklist.md").read_text()
    assert md.count("\n| first |") == 1 and "\n## third\n" in md


@pytest.mark.parametrize("text, message", [
    pytest.param("- {framework: onnx}\n", "model 1: model is required", id="no_model"),
    pytest.param("- {framework: onnx, model: a.onnx, colour: red}\n", "unknown key 'colour'",
                 id="unknown_key"),
    pytest.param("{framework: onnx}\n", "expected a non-empty list", id="not_a_list"),
    pytest.param("- {framework: onnx, model: a.onnx}\n- 3\n", "model 2: expected a mapping",
                 id="not_a_mapping"),
    pytest.param("- {framework: onnx, model: a.onnx, config: nope.yml}\n",
                 "config: file not found", id="missing_config"),
    pytest.param("- {framework: onnx, model: a.onnx, orig_top1: high}\n",
                 "orig_top1: expected a number", id="top1_type"),
    pytest.param("- framework: onnx\n  model: a.onnx\n  input_shape: '1,x'\n", "bad shape",
                 id="shape"),
    pytest.param("- [\n", "invalid YAML at line", id="yaml"),
])
def test_a_bad_models_file_is_one_line_naming_the_file(tmp_path, capsys, text, message):
    path = tmp_path / "models.yml"
    path.write_text(text)
    with pytest.raises(FcError, match=re.escape(message)):
        load_models(path)
    assert main(["checklist", "--models", str(path), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, message", [
    pytest.param([], "give FRAMEWORK MODEL", id="nothing"),
    pytest.param(["onnx"], "give FRAMEWORK MODEL", id="no_model"),
    pytest.param(["onnx", "a.onnx", "--models", "m.yml"], "not both", id="both"),
    pytest.param(["--models", "m.yml", "--config", "c.yml"], "--config is per model",
                 id="per_model_flag"),
])
def test_usage_mistakes_exit_2(tmp_path, capsys, argv, message):
    assert main(["checklist", *argv, "-o", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_two_models_with_one_name_are_refused(tmp_path):
    entries = [ModelEntry("onnx", "a/m.onnx"), ModelEntry("onnx", "b/m.onnx")]
    with pytest.raises(ChecklistError, match="several models are named 'm'"):
        run_checklist(entries, tmp_path / "out", steps=FAST)


def test_an_unreadable_earlier_checklist_is_refused_before_any_step(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "checklist.json").write_text('{"format": "something else"}')
    with pytest.raises(ChecklistError, match="not an fc checklist"):
        run_checklist([ModelEntry("onnx", str(tmp_path / "m.onnx"))], tmp_path / "out", steps=FAST)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["checklist.json"]


def test_models_run_on_a_dask_cluster_as_they_run_here(tmp_path):
    from dask.distributed import LocalCluster

    for i in range(2):
        _tiny_onnx(tmp_path / f"m{i}.onnx", seed=i, channels=3 + i)
    entries = [ModelEntry("onnx", str(tmp_path / f"m{i}.onnx")) for i in range(2)]
    local, _ = run_checklist(entries, tmp_path / "local", steps=FAST, draw=False)
    lines: list[str] = []
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster:
        remote, _ = run_checklist(entries, tmp_path / "dask", steps=FAST, draw=False,
                                  dask=cluster.scheduler_address, report=lines.append)
    assert [r.row() for r in remote] == [r.row() for r in local]
    assert sorted(lines) == ["[m0] done on the cluster: passed", "[m1] done on the cluster: passed"]
    for name in ("m0", "m1"):
        for f in PRODUCT:
            assert (tmp_path / "dask" / name / f).read_bytes() == \
                (tmp_path / "local" / name / f).read_bytes()


def test_an_unreachable_scheduler_is_one_line(tmp_path):
    import dask

    quick = {"distributed.comm.timeouts.connect": "1s"}
    with dask.config.set(quick), pytest.raises(ChecklistError, match="--dask tcp://127.0.0.1:9: "
                                                                     "cannot reach"):
        run_checklist([ModelEntry("onnx", "m.onnx")], tmp_path / "out", steps=FAST,
                      dask="tcp://127.0.0.1:9")
