"""The pretrained ImageNet EfficientNet-Lite0 (a depthwise, MobileNet-v2-like network) on a
labelled list of photos shipped in pip packages: float top-1 against torch's on the same
pixels, every strategy's agreement with float, and Krishnamoorthi's (2018) depthwise effect:
per-layer asymmetric weights collapse where per-channel weights hold."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

LIST = Path(__file__).parent / "data" / "imagenet_photos.list"
CLASSES = Path("/work/shared/data/imagenet_classes.json")


@pytest.mark.slow
def test_efficientnet_lite0_photos_every_strategy(efficientnet, tmp_path):
    from fc.ir import save
    from fc.quant.sweep import sweep
    from fc.quant.testing import sample_photos

    model, fused, pre = efficientnet
    site = Path(np.__file__).parents[1]
    names = json.loads(CLASSES.read_text()) if CLASSES.exists() else [f"c{i}" for i in range(1000)]
    (tmp_path / "classes.txt").write_text("".join(f"{n}\n" for n in names))
    save(fused, tmp_path / "IR_fused_for_CModel")
    (tmp_path / "cal").mkdir()
    for p in sample_photos():  # every photo calibrates (labelled or not)
        (tmp_path / "cal" / f"{p.parent.name}_{p.name}").symlink_to(p)
    cfg = tmp_path / "effnet.yml"
    cfg.write_text(f"""MODEL:
    graph: 'IR_fused_for_CModel_graph.json'
QUAN:
    qconfig:
        image_path: 'cal'
        batch_size: 8
PREPROCESS:
    resize: 256
    crop: 224
    scale: 1.0
    mean: 127.0
    std: 128.0
EVALUATION:
    input_images: '{site}'
    image_file: '{LIST}'
    label_file: 'classes.txt'
    batch_size: 8
""")
    table = sweep(cfg, progress=False)
    print("\n" + "\n".join(table.lines()))
    lines = [ln.split() for ln in LIST.read_text().splitlines() if ln and not ln.startswith("#")]
    x = np.stack([pre(site / p) for p, _ in lines])
    labels = np.array([int(y) for _, y in lines])
    with torch.no_grad():
        torch_top1 = model(torch.from_numpy(x)).numpy().argmax(1)
    base = table.row("null").accuracy
    assert np.array_equal(base.predictions[:, 0], torch_top1)  # the oracle
    assert base.top1 == pytest.approx(float(np.mean(torch_top1 == labels)))
    assert base.top1 >= 4 / 7
    for r in table.rows:
        assert r.accuracy is not None, f"{r.config.name}: {r.error}"
    holds = table.row("symmetry_max/perchannel").accuracy.agreement
    assert holds >= 5 / 7
    # the depthwise effect: per-layer asymmetric weights lose what per-channel ones keep
    pl, pc = (table.row(f"minmax/{w}").accuracy for w in ("perlayer", "perchannel"))
    assert pc.agreement >= 5 / 7
    assert pl.agreement < pc.agreement and pl.top1 <= pc.top1
