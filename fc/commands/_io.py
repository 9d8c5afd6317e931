"""Helpers the commands share: reading .npy inputs, one-line array summaries."""

from __future__ import annotations

import numpy as np

from fc.errors import FcError

__all__ = ["load_npy", "summary"]


def load_npy(path: str, what: str) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise FcError(f"{path}: {what} file not found") from None
    except (ValueError, OSError, EOFError) as e:
        raise FcError(f"{path}: not a readable .npy array ({str(e).splitlines()[0]})") from None
    if not isinstance(arr, np.ndarray):
        raise FcError(f"{path}: expected a single .npy array, got an archive")
    return arr


def summary(name: str, arr: np.ndarray) -> str:
    a = np.asarray(arr)
    stats = ""
    if a.size and a.dtype.kind in "fiub":
        f = a.astype(np.float64)
        stats = f" min {f.min():.6g} max {f.max():.6g} mean {f.mean():.6g} std {f.std():.6g}"
        if a.ndim == 2 and a.shape[1] > 1:
            stats += f" argmax {np.argmax(a, axis=1).tolist()[:8]}"
    return f"{name}: {a.dtype.name}{list(a.shape)}{stats}"
