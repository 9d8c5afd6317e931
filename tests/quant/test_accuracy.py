"""Accuracy over a labelled list (fc.quant.accuracy): the list's mistakes, and the trained
digits CNN's hold-out accuracy through fc against torch on the very same pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fc.quant.accuracy import DatasetError, evaluate, read_dataset, topk


def _png(x: np.ndarray, path: Path) -> np.ndarray:
    """Write a [0, 1] (1, H, W) image as 8-bit PNG; return the pixels fc will read, in [0, 1]."""
    q = np.round(x[0] * 255).astype(np.uint8)
    Image.fromarray(q).save(path)
    return q.astype(np.float32)[None] / np.float32(255)


@pytest.fixture(scope="module")
def digits_eval(digits, tmp_path_factory):
    """The digits CNN as fused IR on disk, its hold-out split as PNGs + list, a config."""
    from fc.ir import save

    model, data, fused = digits
    root = tmp_path_factory.mktemp("digits_acc")
    save(fused, root / "ir" / "IR_fused_for_CModel")
    (root / "cal").mkdir()
    (root / "test").mkdir()
    for i, x in enumerate(data.x_train[:64]):
        _png(x, root / "cal" / f"{i:03d}.png")
    pixels, lines = [], []
    for i, (x, y) in enumerate(zip(data.x_test, data.y_test)):
        pixels.append(_png(x, root / "test" / f"{i:03d}.png"))
        lines.append(f"{i:03d}.png {int(y)}\n")
    (root / "test.list").write_text("".join(lines))
    (root / "classes.txt").write_text("".join(f"digit_{d}\n" for d in range(10)))
    cfg = root / "digits.yml"
    cfg.write_text("""MODEL:
    graph: 'ir/IR_fused_for_CModel_graph.json'
QUAN:
    strategy: 'symmetry_max'
    qconfig:
        weight_quan: 'perchannel'
        table: 'calibration.json'
        image_path: 'cal'
        batch_size: 32
EVALUATION:
    input_images: 'test'
    image_file: 'test.list'
    label_file: 'classes.txt'
    batch_size: 64
""")
    with torch.no_grad():
        torch_logits = model(torch.from_numpy(np.stack(pixels))).numpy()
    return root, cfg, data.y_test, torch_logits


def test_topk_orders_best_first():
    x = np.array([[0.1, 0.7, 0.2], [0.5, 0.5, 0.0]])
    assert topk(x, 2).tolist() == [[1, 2], [0, 1]]


@pytest.mark.parametrize("text, message", [
    pytest.param("a.png 1\nb.png\n", "list.txt:2: expected 'relative/path label'", id="malformed"),
    pytest.param("a.png 1\n\nmissing.png 0\n", "list.txt:3: image not found", id="missing"),
    pytest.param("a.png 1\na.png cat\n", "list.txt:2: unknown label 'cat'", id="unknown_name"),
    pytest.param("a.png 1\na.png 7\n", "list.txt:2: label 7 is not a class index (0..2)", id="index"),
])
def test_a_bad_list_line_is_named_and_skip_missing_counts_it(tmp_path, text, message):
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "list.txt").write_text(text)
    (tmp_path / "classes.txt").write_text("n01440764 tench\nn01443537 goldfish\nn01484850\n")
    with pytest.raises(DatasetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_dataset(tmp_path / "list.txt", tmp_path, tmp_path / "classes.txt")
    ds = read_dataset(tmp_path / "list.txt", tmp_path, tmp_path / "classes.txt", skip_missing=True)
    assert (len(ds), ds.skipped) == (1, 1)
    assert ds.labels.tolist() == [1]


def test_labels_by_synset_or_index(tmp_path):
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "classes.txt").write_text("n01440764 tench\nn01443537 goldfish\n")
    (tmp_path / "list.txt").write_text("# comment\na.png n01443537\na.png 0\n")
    ds = read_dataset(tmp_path / "list.txt", tmp_path, tmp_path / "classes.txt")
    assert ds.labels.tolist() == [1, 0] and ds.classes == ("n01440764", "n01443537")
    assert [len(ds.shard(i, 2)) for i in range(2)] == [1, 1]


def test_digits_float_and_per_channel_symmetry_max(digits_eval):
    from fc.quant import pipeline
    from fc.quant.accuracy import dataset_for
    from fc.quant.config import load_config

    root, cfg_path, y_test, torch_logits = digits_eval
    cfg = load_config(cfg_path)
    graph = pipeline.load_model(cfg)
    ds = dataset_for(cfg)
    assert len(ds) == len(y_test)
    ref = evaluate(graph, cfg, None, None, ds, progress=False)
    # the oracle: torch on the same 8-bit pixels
    assert ref.top1 == pytest.approx(float(np.mean(torch_logits.argmax(1) == y_test)))
    assert np.array_equal(ref.predictions[:, 0], torch_logits.argmax(1))
    assert ref.top1 >= 0.97
    table, _ = pipeline.table_for(cfg, graph, progress=False)
    q = evaluate(graph, cfg, "symmetry_max", "perchannel", ds, table=table,
                 float_top1=ref.predictions[:, 0], progress=False)
    assert abs(q.top1 - ref.top1) <= 0.01
    assert q.agreement >= 0.97 and q.top5 >= q.top1
    spec = pipeline.spec_for(cfg, graph, table)
    acc = pipeline.accuracy(cfg, graph, spec, progress=False)
    assert (acc.top1, acc.top5, acc.images) == (q.top1, q.top5, q.images)
