"""A small real model with real data for the checklist and the historical scripts.

The digits CNN (``fc.zoo.torch.digits``) is trained here on scikit-learn's handwritten digits
(a few seconds) and exported as a ``.pt2``; its images are written as PNG files: a
calibration folder (training images) and a labelled test folder (``test.list``: ``file
label`` per line, ``classes.txt``: one class per line), and a quantization config naming them
all, in the seed's layout (MODEL in ``moffett_ir/``, relative to the project root).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@dataclass
class DigitsProject:
    root: Path
    pt2: Path
    config: Path
    #: test images and their labels, as the labelled list gives them
    x_test: np.ndarray
    y_test: np.ndarray


def _png(x: np.ndarray, path: Path) -> None:
    Image.fromarray(np.round(x[0] * 255).astype(np.uint8)).save(path)


@pytest.fixture(scope="session")
def digits_project(tmp_path_factory) -> DigitsProject:
    import torch

    from fc.zoo.torch.digits import train_digits_cnn

    root = tmp_path_factory.mktemp("digits")
    model, data = train_digits_cnn(epochs=15)
    # a copy: x_test's channel axis (size 1) has stride 0 from numpy's x[:, None], which
    # torch.export records as an as_strided that fc's torch frontend does not convert
    example = torch.from_numpy(data.x_test[:2].copy())
    program = torch.export.export(model, (example,), dynamic_shapes=({0: torch.export.Dim("n")},))
    pt2 = root / "digits.pt2"
    torch.export.save(program, pt2)
    (root / "calibrate").mkdir()
    for i, x in enumerate(data.x_train[:64]):
        _png(x, root / "calibrate" / f"{i:03d}.png")
    (root / "test").mkdir()
    x_test, y_test = data.x_test[:120], data.y_test[:120]
    lines = []
    for i, (x, y) in enumerate(zip(x_test, y_test)):
        _png(x, root / "test" / f"{i:03d}.png")
        lines.append(f"{i:03d}.png {int(y)}\n")
    (root / "test.list").write_text("".join(lines))
    (root / "classes.txt").write_text("".join(f"digit_{d}\n" for d in range(10)))
    config = root / "digits.yml"
    config.write_text("""MODEL:
    graph: 'moffett_ir/IR_fused_for_CModel_graph.json'
QUAN:
    strategy: 'symmetry_max'
    qconfig:
        weight_quan: 'perchannel'
        table: 'calibrations/digits.json'
        image_path: 'calibrate'
        method: 'percentile'
        batch_size: 32
EVALUATION:
    input_images: 'test'
    image_file: 'test.list'
    label_file: 'classes.txt'
    batch_size: 64
SAVE_PATH: 'pbs/digits_quan.pb'
""")
    return DigitsProject(root, pt2, config, x_test, y_test)
