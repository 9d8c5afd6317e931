"""The torch lowering table: one function per IR op, keyed by the op's schema name.

A lowering has the calling convention of kernels and shape rules, with the :class:`Builder`
first: ``conv(b, x, w, bias=None, *, strides, pads, dilations, group, activation, ...)``.
Tensors arrive as IR ``Value``s (``None`` when an optional input is absent), attributes
keyword-only with the schema's names (``OpTable`` checks them at registration). It returns
the fx node of each IR output. Lowerings live one module per op family, listed explicitly
in :func:`_load`.
"""

from __future__ import annotations

from fc.errors import ReconstructError
from fc.ir.registry import OpTable

__all__ = ["LOWERINGS"]


def _load() -> None:
    from fc.reconstruct.torch import ops_elementwise, ops_nn, ops_quant, ops_tensor  # noqa: F401


LOWERINGS = OpTable("torch lowering", loader=_load, error=ReconstructError)
