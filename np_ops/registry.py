"""The kernel table: one numpy function per op, keyed by the schema's op name.

Kernels take tensors positionally and the node's complete attributes keyword-only, with the
schema's names: ``conv(x, w, b=None, *, strides, pads, dilations, group, ...)``. They must
not mutate their inputs (the interpreter shares arrays between nodes).

``KERNELS`` is an ``fc.ir.registry.OpTable``: a kernel for an op without a schema, or whose
keyword names differ from the schema's attributes, fails at registration; the built-in
kernel modules are imported before the first lookup or outside registration, so the order
of imports cannot break a lookup; replacing a built-in globally needs ``override=True``
(for one run, pass ``overrides`` to ``fc.np_ops.run`` instead).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fc.errors import ExecutionError
from fc.ir.registry import OpTable

__all__ = ["KERNELS", "Kernel", "kernel", "get_kernel", "has_kernel", "registered_ops", "call"]

Kernel = Callable[..., Any]


def _load_builtin_kernels() -> None:
    import fc.np_ops.kernels  # noqa: F401  (explicit list of kernel modules)


KERNELS = OpTable("numpy kernel", loader=_load_builtin_kernels, error=ExecutionError)


def kernel(*op_types: str, override: bool = False) -> Callable[[Kernel], Kernel]:
    """Register the decorated function as the kernel of each op in ``op_types``.

    Twice raises unless ``override=True``; an op without a schema, or keyword-only
    parameters other than the schema's attributes, raise ``ValueError`` here."""
    return KERNELS.register(*op_types, override=override)


def get_kernel(op_type: str) -> Kernel:
    """The kernel of ``op_type``; ``ExecutionError`` naming the op if there is none."""
    return KERNELS.get(op_type)


def has_kernel(op_type: str) -> bool:
    return op_type in KERNELS


def registered_ops() -> list[str]:
    return KERNELS.ops()


def call(op_type: str, *inputs: Any, **attrs: Any) -> Any:
    """Run one op on arrays, filling attribute defaults from its schema (tests, folding)."""
    from fc.ir.schema import complete_attrs

    fn = get_kernel(op_type)
    return fn(*inputs, **complete_attrs(op_type, attrs))
