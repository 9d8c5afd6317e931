"""The ONNX export table: one function per IR op, keyed by the op's schema name.

An exporter has the schemas' calling convention with the :class:`Builder` first:
``conv(b, x, w, bias=None, *, strides, pads, ...)``. Tensors arrive as ONNX tensor names
(``None`` for an absent optional input), attributes keyword-only with the schema's names;
it emits ONNX nodes through ``b.emit`` and writes the IR node's outputs (``b.outs``).
Exporters live in ``ops.py``.
"""

from __future__ import annotations

from fc.errors import FcError
from fc.ir.registry import OpTable

__all__ = ["EXPORTERS", "ExportError"]


class ExportError(FcError):
    """The IR cannot be written as ONNX (an op or attribute ONNX has no form for)."""


def _load() -> None:
    from fc.reconstruct.onnx import ops  # noqa: F401


EXPORTERS = OpTable("ONNX exporter", loader=_load, error=ExportError)
