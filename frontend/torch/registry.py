"""The ATen converter table (``fc.frontend.registry.ConverterRegistry``), keyed by the ATen
overload name as ``str(op)`` spells it: ``@converter("aten.convolution.default")``. Aliases
register one function for several overloads (``aten.add.Tensor``, ``aten.add.Scalar``).
Converter modules, one per op family, are listed explicitly in :func:`_load`."""

from __future__ import annotations

from fc.frontend.registry import ConverterRegistry

__all__ = ["CONVERTERS", "converter"]


def _load() -> None:
    from fc.frontend.torch import ops_elementwise, ops_nn, ops_tensor  # noqa: F401


CONVERTERS = ConverterRegistry("PyTorch ATen", loader=_load)
#: ``@converter("aten.convolution.default", check=...)``
converter = CONVERTERS.register
