"""The MXNet converter registry: one function per MXNet operator name.

``@converter("Convolution")`` registers ``fn(ctx) -> Value | list[Value | None]``, which
translates one symbol node into fc IR nodes through a
:class:`~fc.frontend.mxnet.context.ConvertContext` and returns the fc ``Value`` of each MXNet
output. One function may serve several aliases (``@converter("elemwise_add", "_plus")``);
registering a name twice raises.

Two optional declarations travel with a registration, so the importer can judge a whole
symbol *before* converting anything (an unsupported model lists all its problems at once):

* ``unsupported(attrs) -> str | None``: a reason when this node's attributes ask for
  something fc cannot translate (``Activation`` with ``act_type='softrelu'``); the node is
  then reported under ``"Op(reason)"`` with the unsupported ops;
* ``label_inputs``: input positions that are training labels (``SoftmaxOutput``'s second
  input). Inference ignores them, so a variable feeding only labels is not a graph input.

The converter modules are imported explicitly by :func:`_ensure_loaded` (no discovery).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fc.errors import ImportError_

__all__ = ["converter", "find_converter", "get_converter", "supported_ops", "Converter"]

Fn = Callable[..., Any]
Check = Callable[[Any], "str | None"]


@dataclass(frozen=True)
class Converter:
    """A registered converter and what it declares about its op."""

    op: str
    fn: Fn
    unsupported: Check | None = None
    label_inputs: tuple[int, ...] = ()


_CONVERTERS: dict[str, Converter] = {}


def converter(*ops: str, unsupported: Check | None = None,
              label_inputs: tuple[int, ...] = ()) -> Callable[[Fn], Fn]:
    """Register ``fn(ctx)`` for each MXNet operator name in ``ops``; twice raises."""
    if not ops:
        raise ValueError("converter() needs at least one MXNet op name")

    def deco(fn: Fn) -> Fn:
        for op in ops:
            if op in _CONVERTERS:
                raise ValueError(f"MXNet converter for {op!r} registered twice "
                                 f"({_CONVERTERS[op].fn.__name__} and {fn.__name__})")
            _CONVERTERS[op] = Converter(op, fn, unsupported, tuple(label_inputs))
        return fn

    return deco


def _ensure_loaded() -> None:
    # The explicit list of converter modules; each registers its ops on import.
    import fc.frontend.mxnet.ops_elementwise  # noqa: F401
    import fc.frontend.mxnet.ops_nn  # noqa: F401
    import fc.frontend.mxnet.ops_tensor  # noqa: F401


def find_converter(op: str) -> Converter | None:
    _ensure_loaded()
    return _CONVERTERS.get(op)


def get_converter(op: str) -> Converter:
    """The converter of ``op``; a miss raises naming the op."""
    found = find_converter(op)
    if found is None:
        raise ImportError_(f"no MXNet converter for operator {op!r}")
    return found


def supported_ops() -> list[str]:
    """Every MXNet operator name fc converts (aliases included), sorted."""
    _ensure_loaded()
    return sorted(_CONVERTERS)
