"""The kernel registry: one numpy function per op, keyed by the schema's op name.

Kernels take tensors positionally and the node's complete attributes keyword-only, with the
schema's names: ``conv(x, w, b=None, *, strides, pads, dilations, group, ...)``. They must
not mutate their inputs (the interpreter shares arrays between nodes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fc.errors import ExecutionError

__all__ = ["kernel", "get_kernel", "has_kernel", "registered_ops", "call"]

Kernel = Callable[..., Any]
_KERNELS: dict[str, Kernel] = {}


def kernel(*op_types: str) -> Callable[[Kernel], Kernel]:
    """Register ``fn`` as the kernel of each op in ``op_types``; twice raises."""

    def deco(fn: Kernel) -> Kernel:
        for op in op_types:
            if op in _KERNELS:
                raise ValueError(f"kernel for {op!r} registered twice")
            _KERNELS[op] = fn
        return fn

    return deco


def _ensure_loaded() -> None:
    import fc.np_ops.kernels  # noqa: F401  (explicit list of kernel modules)


def get_kernel(op_type: str) -> Kernel:
    _ensure_loaded()
    try:
        return _KERNELS[op_type]
    except KeyError:
        raise ExecutionError(f"no numpy kernel for op {op_type!r}") from None


def has_kernel(op_type: str) -> bool:
    _ensure_loaded()
    return op_type in _KERNELS


def registered_ops() -> list[str]:
    _ensure_loaded()
    return sorted(_KERNELS)


def call(op_type: str, *inputs: Any, **attrs: Any) -> Any:
    """Run one op on arrays, filling attribute defaults from its schema (tests, folding)."""
    from fc.ir.schema import complete_attrs

    fn = get_kernel(op_type)
    return fn(*inputs, **complete_attrs(op_type, attrs))
