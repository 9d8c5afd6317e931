"""Helpers the commands share: reading .npy inputs, one-line array summaries."""

from __future__ import annotations

import os

import numpy as np

from fc.errors import FcError
from fc.ir.core import Graph

__all__ = ["load_npy", "load_inputs", "load_outputs", "summary"]


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


def load_inputs(graph: Graph, graph_path: str, input_npy: str | None,
                specs: list[str] | None) -> dict[str, np.ndarray]:
    """``--input_npy FILE`` (a one-input graph) and ``--input NAME=FILE`` as a feed dict."""
    inputs: dict[str, np.ndarray] = {}
    if input_npy:
        if len(graph.inputs) != 1:
            raise FcError(f"{graph_path}: graph has {len(graph.inputs)} inputs; use --input "
                          "NAME=FILE.npy")
        inputs[graph.inputs[0].name] = load_npy(input_npy, "input")
    for spec in specs or []:
        name, sep, path = spec.partition("=")
        if not sep:
            raise FcError(f"--input {spec!r}: expected NAME=FILE.npy")
        inputs[name] = load_npy(path, f"input {name!r}")
    if not inputs:
        raise FcError("no input given: use --input_npy FILE.npy or --input NAME=FILE.npy")
    return inputs


def load_outputs(graph: Graph, path: str) -> dict[str, np.ndarray]:
    """Expected outputs: a .npy for a one-output graph, or an .npz keyed by output name (what
    ``fcc run --output_npy`` writes for several outputs)."""
    names = [v.name for v in graph.outputs]
    if path.endswith(".npz"):
        if not os.path.exists(path):
            raise FcError(f"{path}: result file not found")
        from fc.ir.serialize import read_npz

        arrays = read_npz(path)
        missing = [n for n in names if n not in arrays]
        if missing:
            raise FcError(f"{path}: no array for output(s) {missing} (it has {sorted(arrays)})")
        return {n: arrays[n] for n in names}
    if len(names) != 1:
        raise FcError(f"{path}: the graph has {len(names)} outputs {names}; give an .npz with "
                      "one array per output name")
    return {names[0]: load_npy(path, "result")}


def summary(name: str, arr: np.ndarray) -> str:
    a = np.asarray(arr)
    stats = ""
    if a.size and a.dtype.kind in "fiub":
        f = a.astype(np.float64)
        stats = f" min {f.min():.6g} max {f.max():.6g} mean {f.mean():.6g} std {f.std():.6g}"
        if a.ndim == 2 and a.shape[1] > 1:
            stats += f" argmax {np.argmax(a, axis=1).tolist()[:8]}"
    return f"{name}: {a.dtype.name}{list(a.shape)}{stats}"
