"""How much memory an input may make fc allocate: checked before anything is allocated.

A 137-byte ONNX file can ask ConstantOfShape for 10^9 floats, and a 1 MB npz can hold a 1 GiB
member that decompresses on read. fc refuses, with one line naming the tensor, any tensor
*declared* larger than the per-tensor limit, and a file whose tensors together exceed the
total limit, before allocating them:

* ``max_tensor_bytes`` (default 512 MiB; fcc ``--max-tensor-size``): one tensor fc reads (an
  initializer, an MXNet parameter, an npz member), creates at import (a folded constant), or
  makes while running a graph (``fcc run`` checks every tensor of the graph at the batch it
  is fed);
* ``max_total_bytes`` (default 4 GiB; fcc ``--max-total-size``): the weights of one file.

Raise them for a model that needs it: ``with fc.limits.limits(max_tensor_bytes=2 << 30):``
in Python, ``--max-tensor-size 2G`` on the command line.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import numpy as np

from fc.errors import FcError, LimitError

__all__ = ["DEFAULT_MAX_TENSOR_BYTES", "DEFAULT_MAX_TOTAL_BYTES", "Limits", "limits", "current",
           "check_tensor", "check_bytes", "check_graph", "Budget", "parse_size", "format_size"]

DEFAULT_MAX_TENSOR_BYTES = 512 << 20
DEFAULT_MAX_TOTAL_BYTES = 4 << 30


@dataclass(frozen=True)
class Limits:
    max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES


_DEFAULT = Limits()  # frozen: safe to share
_LIMITS: ContextVar[Limits] = ContextVar("fc_limits", default=_DEFAULT)


@contextmanager
def limits(max_tensor_bytes: int | None = None, max_total_bytes: int | None = None
           ) -> Iterator[Limits]:
    """Within this block, fc accepts tensors up to the given sizes (``None``: unchanged)."""
    now = _LIMITS.get()
    new = Limits(now.max_tensor_bytes if max_tensor_bytes is None else int(max_tensor_bytes),
                 now.max_total_bytes if max_total_bytes is None else int(max_total_bytes))
    token = _LIMITS.set(new)
    try:
        yield new
    finally:
        _LIMITS.reset(token)


def current() -> Limits:
    return _LIMITS.get()


_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """``"512M"``, ``"2G"``, ``"1.5G"``, ``"1048576"`` -> bytes (binary units)."""
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = t[-1:] if t[-1:] in _UNITS and not t[-1:].isdigit() else ""
    try:
        value = float(t[: len(t) - len(unit)])
    except ValueError:
        raise FcError(f"bad size {text!r}: expected a number with an optional unit, like "
                      "512M or 2G") from None
    if not math.isfinite(value) or value <= 0:
        raise FcError(f"bad size {text!r}: must be positive")
    return int(value * _UNITS[unit])


def format_size(nbytes: int) -> str:
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.3g} {unit}"
    return f"{nbytes} B"


def _hint(flag: str) -> str:
    from fc.spelling import option

    return option(flag)


def check_bytes(nbytes: int, what: str) -> None:
    """Refuse one tensor of ``nbytes`` above the per-tensor limit; ``what`` names it."""
    limit = _LIMITS.get().max_tensor_bytes
    if nbytes > limit:
        raise LimitError(f"{what} would take {format_size(nbytes)}, above fc's limit of "
                         f"{format_size(limit)} per tensor (raise it with "
                         f"{_hint('max_tensor_size')})")


def nbytes_of(shape: Sequence[int], dtype: str | np.dtype) -> int:
    """Bytes of a tensor, in Python ints (no overflow for absurd shapes)."""
    return math.prod(int(d) for d in shape) * np.dtype(dtype).itemsize


def check_tensor(shape: Sequence[int], dtype: str | np.dtype, what: str) -> None:
    """Refuse a ``dtype`` tensor of ``shape`` above the per-tensor limit."""
    check_bytes(nbytes_of(shape, dtype), f"{what} ({np.dtype(dtype).name}{list(shape)})")


class Budget:
    """The running total of the tensors of one file, against the total limit."""

    def __init__(self, what: str):
        self.what = what
        self.used = 0

    def add(self, nbytes: int, what: str, *, one_tensor: bool = True) -> None:
        """Count ``nbytes`` more (``what`` names them); ``one_tensor=False`` for bytes that
        are not one tensor (a whole file read at once), judged against the total only."""
        if one_tensor:
            check_bytes(nbytes, what)
        self.used += nbytes
        limit = _LIMITS.get().max_total_bytes
        if self.used > limit:
            raise LimitError(f"{self.what}: its tensors take more than {format_size(limit)} in "
                             f"total (at {what}), fc's limit (raise it with "
                             f"{_hint('max_total_size')})")


def check_graph(graph: Any, inputs: Mapping[str, np.ndarray], where: str) -> None:
    """Refuse, before running ``graph`` on ``inputs``, any of its tensors above the per-tensor
    limit at the batch it is fed (dim 0 of the tensors that have the compiled batch scales
    with the feed)."""
    compiled = {v.shape[0] for v in graph.inputs if v.shape}
    fed = {int(inputs[v.name].shape[0]) for v in graph.inputs
           if v.name in inputs and np.ndim(inputs[v.name])}
    old, new = (compiled.pop(), fed.pop()) if len(compiled) == len(fed) == 1 else (None, None)
    for node in graph:
        for v in node.outputs:
            if v.shape is None or v.dtype is None:
                continue
            shape = list(v.shape)
            if old is not None and shape and shape[0] == old:
                shape[0] = new
            check_tensor(shape, v.dtype, f"{where}: tensor {v.name!r} of node {node.name!r}")
