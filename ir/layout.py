"""The layout a model's own framework uses at the graph boundary.

fc's IR is channels-first (``N, C, spatial...``). A model whose framework is channels-last
(Keras: ``N, H, W, C``) keeps its users' view at the boundary: ``Graph.layouts`` maps a graph
input or output *name* to the layout its source framework feeds or returns (``"NHWC"``); the
IR tensor of that name stays ``NCHW``. Everything that talks to a user (``fcc run``,
``fcc reconstruct``, :func:`fc.api.run`) converts at the boundary with the two functions
below, so a Keras user feeds NHWC arrays and reads NHWC outputs while the compiled graph has
no Transpose.

A layout is a string of distinct letters starting with ``N`` and holding ``C``; the IR's
order of the same letters is ``N``, ``C``, then the spatial letters in the source's order
(``"NHWC"`` -> ``"NCHW"``, ``"NWC"`` -> ``"NCW"``). A name absent from ``Graph.layouts`` is
already in the IR's layout.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from fc.errors import IRError

__all__ = ["ir_layout", "to_source_perm", "to_ir_perm", "check_layout", "to_ir_layout",
           "to_source_layout", "NHWC"]

#: the channels-last image layout of TensorFlow/Keras
NHWC = "NHWC"


def check_layout(layout: str, where: str = "layout") -> str:
    """``layout`` if it is a valid source layout, else an ``IRError`` naming ``where``."""
    if (not isinstance(layout, str) or len(layout) < 2 or layout[0] != "N" or "C" not in layout
            or len(set(layout)) != len(layout) or not layout.isalpha() or not layout.isupper()):
        raise IRError(f"{where}: {layout!r} is not a layout (distinct capital letters starting "
                      "with N and holding C, e.g. 'NHWC')")
    return layout


def ir_layout(source: str) -> str:
    """The IR's (channels-first) order of ``source``'s letters: ``"NHWC"`` -> ``"NCHW"``."""
    check_layout(source)
    return "NC" + "".join(ch for ch in source if ch not in "NC")


def to_source_perm(source: str) -> tuple[int, ...]:
    """``np.transpose(ir_array, perm)`` gives the array in ``source`` layout."""
    ir = ir_layout(source)
    return tuple(ir.index(ch) for ch in source)


def to_ir_perm(source: str) -> tuple[int, ...]:
    """``np.transpose(source_array, perm)`` gives the array in the IR's layout."""
    return tuple(source.index(ch) for ch in ir_layout(source))


def _convert(graph: Any, arrays: Mapping[str, Any], to_ir: bool) -> dict[str, Any]:
    out = {}
    for name, arr in arrays.items():
        layout = graph.layouts.get(name)
        if layout is None:
            out[name] = arr
            continue
        arr = np.asarray(arr)
        if arr.ndim != len(layout):
            raise IRError(f"tensor {name!r}: a {arr.ndim}-D array, but its layout {layout} has "
                          f"{len(layout)} axes")
        perm = to_ir_perm(layout) if to_ir else to_source_perm(layout)
        out[name] = np.ascontiguousarray(np.transpose(arr, perm))
    return out


def to_ir_layout(graph: Any, arrays: Mapping[str, Any]) -> dict[str, Any]:
    """Boundary arrays (graph inputs or outputs, by name) given in the source layout,
    rearranged into the IR's layout; names without a recorded layout pass unchanged."""
    return _convert(graph, arrays, True)


def to_source_layout(graph: Any, arrays: Mapping[str, Any]) -> dict[str, Any]:
    """Boundary arrays of the IR, rearranged into the layout the source model uses."""
    return _convert(graph, arrays, False)
