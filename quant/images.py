"""Images for calibration and evaluation: read with Pillow, preprocessed as the config says.

One code path serves calibration (a folder of images) and evaluation (a labelled list):
``Preprocess`` turns a file into the model's (C, H, W) float32 input, ``ImageFolder`` lists
a folder's JPEG/PNG files in sorted order, ``batches`` groups arrays with a progress bar.
A file Pillow cannot read is one ``FcError`` line naming it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fc.errors import FcError

__all__ = ["Preprocess", "ImageFolder", "IMAGE_SUFFIXES", "batches", "load_image"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


def _pair(v: int | Sequence[int] | None) -> tuple[int, int] | int | None:
    if v is None or isinstance(v, int):
        return v
    return int(v[0]), int(v[1])


@dataclass(frozen=True)
class Preprocess:
    """File -> (C, H, W) float32: resize, centre crop, channel order, (p * scale - mean) / std.

    ``resize``: (H, W), or an int for the shorter side (aspect kept); None with no crop: the
    model input's H x W. ``crop``: (H, W) or an int (square), taken from the centre.
    """

    height: int
    width: int
    channels: int
    resize: tuple[int, int] | int | None = None
    crop: tuple[int, int] | int | None = None
    scale: float = 1 / 255
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    channel_order: str = "RGB"

    @classmethod
    def from_config(cls, cfg: Any, input_shape: Sequence[int]) -> Preprocess:
        """From a ``QuantConfig`` and the model input's (N, C, H, W) shape."""
        if len(input_shape) != 4 or input_shape[1] not in (1, 3):
            raise FcError(f"model input shape {list(input_shape)} is not (N, 1|3, H, W): fc reads "
                          "images only for such inputs")

        def seq(v: Any) -> tuple[float, ...]:
            return tuple(float(x) for x in (v if isinstance(v, list) else [v]))

        mean, std = seq(cfg["PREPROCESS.mean"]), seq(cfg["PREPROCESS.std"])
        c = int(input_shape[1])
        for name, v in (("mean", mean), ("std", std)):
            if len(v) not in (1, c):
                raise FcError(f"{cfg.path}: PREPROCESS.{name}: {len(v)} values for a {c}-channel "
                              "input")
        return cls(int(input_shape[2]), int(input_shape[3]), c, _pair(cfg["PREPROCESS.resize"]),
                   _pair(cfg["PREPROCESS.crop"]), float(cfg["PREPROCESS.scale"]), mean, std,
                   cfg["PREPROCESS.channel_order"])

    def settings(self) -> dict[str, Any]:
        """What a calibration table depends on."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def __call__(self, path: str | os.PathLike) -> np.ndarray:
        img = load_image(path, "L" if self.channels == 1 else "RGB")
        from PIL import Image

        resize = self.resize
        if resize is None and self.crop is None:
            resize = (self.height, self.width)
        if isinstance(resize, int):
            w, h = img.size
            k = resize / min(w, h)
            resize = (max(1, round(h * k)), max(1, round(w * k)))
        if resize is not None:
            img = img.resize((resize[1], resize[0]), Image.BILINEAR)
        if self.crop is not None:
            ch, cw = (self.crop, self.crop) if isinstance(self.crop, int) else self.crop
            w, h = img.size
            if ch > h or cw > w:
                raise FcError(f"{path}: crop {ch}x{cw} is larger than the resized image {h}x{w}")
            top, left = (h - ch) // 2, (w - cw) // 2
            img = img.crop((left, top, left + cw, top + ch))
        a = np.asarray(img, dtype=np.float32)
        a = a[:, :, None] if a.ndim == 2 else a
        if self.channel_order == "BGR":
            a = a[:, :, ::-1]
        if a.shape[:2] != (self.height, self.width):
            raise FcError(f"{path}: preprocessed to {a.shape[0]}x{a.shape[1]}, the model takes "
                          f"{self.height}x{self.width} (check PREPROCESS.resize/crop)")
        a = a * np.float32(self.scale)
        a -= np.asarray(self.mean, np.float32)
        a /= np.asarray(self.std, np.float32)
        return np.ascontiguousarray(a.transpose(2, 0, 1), dtype=np.float32)


def _decoded_bytes(im: Any) -> int:
    """Bytes Pillow holds for ``im`` decoded: 4 per pixel for images of several bands (RGB
    too: Pillow keeps 32 bits a pixel), 4 for 32-bit modes, 2 for 16-bit, else 1."""
    w, h = im.size
    mode = im.mode
    if len(im.getbands()) > 1 or mode in ("I", "F") or mode.startswith("I;32"):
        per = 4
    elif mode.startswith("I;16"):
        per = 2
    else:
        per = 1
    return int(w) * int(h) * per


def load_image(path: str | os.PathLike, mode: str) -> Any:
    """A Pillow image in ``mode`` ("RGB" or "L"); one line naming the file if unreadable.

    The size its header declares is judged by ``fc.limits`` before Pillow decodes it (a
    small PNG or JPEG can declare 30000x30000 pixels), and Pillow's own decompression-bomb
    check is one line too (its warning below that is silenced: fc's limit is the one)."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    from fc.limits import check_bytes

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                check_bytes(_decoded_bytes(im), f"{path}: image of {w}x{h} pixels ({im.mode}) "
                                                "decoded")
                im.load()
                return im.convert(mode)
    except FileNotFoundError:
        raise FcError(f"{path}: image not found") from None
    except Image.DecompressionBombError as e:
        raise FcError(f"{path}: refused by Pillow as a decompression bomb ({e})") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise FcError(f"{path}: not a readable image ({type(e).__name__}: {e})") from None


class ImageFolder:
    """The image files of a folder (by suffix, sorted by name), optionally the first ``limit``."""

    def __init__(self, folder: str | os.PathLike, limit: int | None = None):
        folder = Path(folder)
        if not folder.is_dir():
            raise FcError(f"{folder}: image folder not found")
        files = sorted(p for p in folder.iterdir()
                       if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise FcError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        self.folder = folder
        self.files = files[:limit] if limit else files

    def __len__(self) -> int:
        return len(self.files)

    def fingerprint_parts(self) -> list[Any]:
        return [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in self.files]


def batches(files: Sequence[Path], pre: Preprocess, batch_size: int, *, desc: str = "",
            progress: bool = True) -> Iterator[tuple[list[Path], np.ndarray]]:
    """(files, (N, C, H, W) array) per batch, with a tqdm bar over images."""
    bar = _bar(len(files), desc, progress)
    try:
        for i in range(0, len(files), batch_size):
            chunk = list(files[i:i + batch_size])
            yield chunk, np.stack([pre(f) for f in chunk])
            bar.update(len(chunk))
    finally:
        bar.close()


def _bar(total: int, desc: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=not enabled, leave=False,
                dynamic_ncols=True)


def array_batches(x: np.ndarray, batch_size: int) -> Iterable[np.ndarray]:
    return (x[i:i + batch_size] for i in range(0, len(x), batch_size))
