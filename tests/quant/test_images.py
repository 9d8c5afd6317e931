"""Image loading and preprocessing (Pillow), checked against direct numpy arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fc.errors import FcError
from fc.quant.images import ImageFolder, Preprocess, batches


def _photo(tmp_path, name="a.png", size=(40, 30)):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / name)
    return tmp_path / name, arr


def test_defaults_resize_to_the_input_and_scale_to_unit_range(tmp_path):
    path, arr = _photo(tmp_path)
    x = Preprocess(30, 40, 3)(path)  # same size: no resampling
    assert x.shape == (3, 30, 40) and x.dtype == np.float32
    np.testing.assert_allclose(x, arr.transpose(2, 0, 1) / 255, rtol=1e-6)


def test_grey_input_and_bgr_mean_std(tmp_path):
    path, arr = _photo(tmp_path)
    grey = Preprocess(30, 40, 1)(path)
    ref = np.asarray(Image.open(path).convert("L"), np.float32) / 255
    np.testing.assert_allclose(grey[0], ref, rtol=1e-6)
    p = Preprocess(30, 40, 3, scale=1.0, mean=(1.0, 2.0, 3.0), std=(2.0, 4.0, 8.0),
                   channel_order="BGR")
    x = p(path)
    bgr = arr[:, :, ::-1].astype(np.float32)
    np.testing.assert_allclose(x, ((bgr - [1, 2, 3]) / [2, 4, 8]).transpose(2, 0, 1), rtol=1e-6)


def test_shorter_side_resize_then_centre_crop(tmp_path):
    path, _ = _photo(tmp_path, size=(64, 48))
    x = Preprocess(32, 32, 3, resize=40, crop=32)(path)
    assert x.shape == (3, 32, 32)
    ref = np.asarray(Image.open(path).convert("RGB").resize((53, 40), Image.BILINEAR),
                     np.float32)[4:36, 10:42] / 255
    np.testing.assert_allclose(x, ref.transpose(2, 0, 1), rtol=1e-6)


def test_a_broken_image_names_the_file(tmp_path):
    _photo(tmp_path)
    (tmp_path / "b.jpg").write_bytes(b"not a jpeg")
    folder = ImageFolder(tmp_path)
    assert [p.name for p in folder.files] == ["a.png", "b.jpg"]
    with pytest.raises(FcError, match=r"b\.jpg: not a readable image"):
        list(batches(folder.files, Preprocess(30, 40, 3), 2, progress=False))


def test_empty_or_missing_folder(tmp_path):
    with pytest.raises(FcError, match="no images"):
        ImageFolder(tmp_path)
    with pytest.raises(FcError, match="image folder not found"):
        ImageFolder(tmp_path / "nope")
