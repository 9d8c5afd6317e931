"""One table implementation for every interpretation of the IR's ops.

Numpy kernels, reconstruct lowerings (torch, TF) and quantization rules are each an
``OpTable``: functions keyed by IR op name, with the schemas' calling convention (tensors
positional, attributes keyword-only with the schema's names). The table checks that at
registration, so a typo in a keyword or an op without a schema fails on import, not when a
model first reaches the op:

    KERNELS = OpTable("numpy kernel", loader=_load_builtin_kernels)

    @KERNELS.register("Conv")
    def conv(x, w, b=None, *, strides, pads, dilations, group, activation, act_alpha, act_beta):
        ...

Built-in entries are registered by an explicit ``loader`` (a function importing the table's
modules, no discovery). It runs once, before the first lookup *or* the first registration
from outside, so a user's registration can never collide with a built-in one that has not
been imported yet; replacing a built-in needs ``override=True``. A lookup miss raises the
table's error naming the op.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

from fc.errors import FcError

__all__ = ["OpTable", "check_signature"]

Fn = Callable[..., Any]


def check_signature(table: str, op_type: str, fn: Fn) -> None:
    """``fn``'s keyword-only parameters are exactly ``op_type``'s schema attributes (unless it
    takes ``**attrs``), and the op has a schema. Raises ``ValueError`` naming both."""
    from fc.ir.schema import get_schema, has_schema

    if not has_schema(op_type):
        raise ValueError(f"{table} {fn.__name__!r} registered for op {op_type!r}, which has no "
                         "schema (fc.ir.schemas)")
    params = inspect.signature(fn).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    kw = {p.name for p in params if p.kind is p.KEYWORD_ONLY}
    attrs = set(get_schema(op_type).attrs)
    if kw != attrs:
        missing, extra = sorted(attrs - kw), sorted(kw - attrs)
        raise ValueError(f"{table} {fn.__name__!r} for {op_type!r}: keyword-only parameters "
                         f"differ from the schema's attributes (missing {missing}, unknown "
                         f"{extra})")


class OpTable:
    """Functions keyed by IR op name, checked against the op schemas at registration."""

    def __init__(self, what: str, *, loader: Callable[[], None] | None = None,
                 error: type[FcError] = FcError, check: bool = True):
        #: what an entry is, for messages ("numpy kernel", "torch lowering")
        self.what = what
        self._loader = loader
        self._error = error
        self._check = check
        self._entries: dict[str, Fn] = {}
        self._state = "unloaded" if loader is not None else "loaded"

    # -- loading ----------------------------------------------------------------------------
    def _ensure_loaded(self) -> None:
        if self._state == "unloaded":
            self._state = "loading"
            try:
                assert self._loader is not None
                self._loader()
            except BaseException:
                self._state = "unloaded"
                raise
            self._state = "loaded"

    # -- registration -----------------------------------------------------------------------
    def register(self, *op_types: str, override: bool = False) -> Callable[[Fn], Fn]:
        """Register the decorated function for each op in ``op_types``.

        Registering an op twice raises unless ``override=True`` (which replaces the entry
        for every later lookup: for one run only, pass overrides to the interpreter instead).
        """
        if not op_types:
            raise ValueError(f"{self.what}: register() needs at least one op type")

        def deco(fn: Fn) -> Fn:
            if self._state == "unloaded":  # built-ins first, so a collision is seen now
                self._ensure_loaded()
            for op in op_types:
                if self._check:
                    check_signature(self.what, op, fn)
                if op in self._entries and not override:
                    raise ValueError(f"{self.what} for {op!r} registered twice "
                                     f"({self._entries[op].__name__} and {fn.__name__}); "
                                     "pass override=True to replace it")
                self._entries[op] = fn
            return fn

        return deco

    def unregister(self, op_type: str) -> None:
        """Remove an entry (tests that register a temporary op)."""
        self._ensure_loaded()
        self._entries.pop(op_type, None)

    # -- lookup -----------------------------------------------------------------------------
    def get(self, op_type: str) -> Fn:
        self._ensure_loaded()
        try:
            return self._entries[op_type]
        except KeyError:
            raise self._error(f"no {self.what} for op {op_type!r}") from None

    def find(self, op_type: str) -> Fn | None:
        self._ensure_loaded()
        return self._entries.get(op_type)

    def __contains__(self, op_type: object) -> bool:
        self._ensure_loaded()
        return op_type in self._entries

    def __iter__(self) -> Iterator[str]:
        self._ensure_loaded()
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        self._ensure_loaded()
        return len(self._entries)

    def ops(self) -> list[str]:
        """Every op with an entry, sorted."""
        return list(self)

    def __repr__(self) -> str:
        return f"OpTable({self.what!r}, {len(self._entries)} ops, {self._state})"
