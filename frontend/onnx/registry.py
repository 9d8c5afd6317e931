"""The ONNX converter registry: one function per (ONNX op type, opset range).

Two tables, keyed the same way:

* **converters** (``@converter("Conv", since=1)``) translate one ONNX node into fc IR nodes
  through a :class:`~fc.frontend.onnx.context.ConvertContext` and return the fc ``Value`` of
  each ONNX output (``None`` for an output they do not produce);
* **folders** (``@folder("Range", since=11)``) evaluate a node whose inputs are all constant
  with numpy at import and return one array per output. They exist for the shape-arithmetic
  ops fc's IR does not have (Shape, Range, Equal, Where, Expand, ...) and for integer
  arithmetic; a folder may return ``None`` to hand the node to the converter path, which then
  folds it through fc's own numpy kernels.

``since``/``until`` are the first and last opset (inclusive) a function handles; ``until=None``
means "to the newest". Ranges of one op must not overlap: registering twice raises. The
converter modules are imported explicitly by :func:`_ensure_loaded` (no discovery).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fc.errors import ImportError_

__all__ = [
    "converter",
    "folder",
    "find_converter",
    "find_folder",
    "get_converter",
    "supported_ops",
]

Fn = Callable[..., Any]


@dataclass(frozen=True)
class _Entry:
    op_type: str
    since: int
    until: int | None
    fn: Fn

    def covers(self, opset: int) -> bool:
        return self.since <= opset and (self.until is None or opset <= self.until)

    def overlaps(self, other: _Entry) -> bool:
        hi, ohi = self.until or 10**9, other.until or 10**9
        return self.since <= ohi and other.since <= hi


_CONVERTERS: dict[str, list[_Entry]] = {}
_FOLDERS: dict[str, list[_Entry]] = {}


def _register(table: dict[str, list[_Entry]], kind: str, op_type: str, since: int,
              until: int | None) -> Callable[[Fn], Fn]:
    if until is not None and until < since:
        raise ValueError(f"{kind} {op_type!r}: until={until} < since={since}")

    def deco(fn: Fn) -> Fn:
        entry = _Entry(op_type, since, until, fn)
        for other in table.get(op_type, []):
            if entry.overlaps(other):
                raise ValueError(f"ONNX {kind} for {op_type!r} registered twice (opsets "
                                 f"{since}..{until or 'latest'} and "
                                 f"{other.since}..{other.until or 'latest'})")
        table.setdefault(op_type, []).append(entry)
        return fn

    return deco


def converter(op_type: str, *, since: int = 1, until: int | None = None) -> Callable[[Fn], Fn]:
    """Register ``fn(ctx) -> Value | list[Value | None]`` for ``op_type`` at opsets
    ``since..until`` (inclusive)."""
    return _register(_CONVERTERS, "converter", op_type, since, until)


def folder(op_type: str, *, since: int = 1, until: int | None = None) -> Callable[[Fn], Fn]:
    """Register ``fn(ctx) -> list[np.ndarray] | None`` that evaluates an all-constant node."""
    return _register(_FOLDERS, "folder", op_type, since, until)


def _ensure_loaded() -> None:
    # The explicit list of converter modules; each registers its ops on import.
    import fc.frontend.onnx.ops_constant  # noqa: F401
    import fc.frontend.onnx.ops_elementwise  # noqa: F401
    import fc.frontend.onnx.ops_nn  # noqa: F401
    import fc.frontend.onnx.ops_tensor  # noqa: F401


def _find(table: dict[str, list[_Entry]], op_type: str, opset: int) -> Fn | None:
    _ensure_loaded()
    for entry in table.get(op_type, ()):
        if entry.covers(opset):
            return entry.fn
    return None


def find_converter(op_type: str, opset: int) -> Fn | None:
    return _find(_CONVERTERS, op_type, opset)


def find_folder(op_type: str, opset: int) -> Fn | None:
    return _find(_FOLDERS, op_type, opset)


def get_converter(op_type: str, opset: int) -> Fn:
    """The converter of ``op_type`` at ``opset``; a miss raises naming the op and opset."""
    fn = find_converter(op_type, opset)
    if fn is None:
        raise ImportError_(f"no ONNX converter for {op_type!r} at opset {opset}")
    return fn


def supported_ops() -> dict[str, list[tuple[int, int | None]]]:
    """Op type -> opset ranges fc converts (folding-only ops excluded)."""
    _ensure_loaded()
    return {op: sorted((e.since, e.until) for e in entries)
            for op, entries in sorted(_CONVERTERS.items())}
