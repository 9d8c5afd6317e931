"""Messages that tell the user what to pass speak the caller's language.

The same importer runs under the library API (``import_onnx(m, input_shapes={'x': ...})``)
and under ``fcc`` (``--input-shape x=...``). An error that says how to fix it names the
option as the caller writes it: the CLI runs commands inside :func:`cli_spelling`, and the
messages are built with :func:`option` / :func:`input_shape_hint`, never with a hard-coded
keyword or flag.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["cli_spelling", "speaks_cli", "option", "input_shape_hint", "named_shapes_hint"]

_CLI: ContextVar[bool] = ContextVar("fc_cli_spelling", default=False)

#: option -> (fcc flag, API keyword)
_OPTIONS = {
    "input_shapes": ("--input-shape", "input_shapes"),
    "params": ("--params", "params"),
    "seed": ("--seed", "seed"),
    "max_tensor_size": ("--max-tensor-size", "fc.limits.limits(max_tensor_bytes=...)"),
    "max_total_size": ("--max-total-size", "fc.limits.limits(max_total_bytes=...)"),
}


@contextmanager
def cli_spelling() -> Iterator[None]:
    """Within this block, messages name fcc's flags instead of the API's keywords."""
    token = _CLI.set(True)
    try:
        yield
    finally:
        _CLI.reset(token)


def speaks_cli() -> bool:
    return _CLI.get()


def option(name: str, value: str | None = None) -> str:
    """Option ``name`` as the caller writes it, with ``value`` if given: ``--params FILE``
    from fcc, ``params=FILE`` from Python."""
    flag, keyword = _OPTIONS[name]
    if value is None:
        return flag if speaks_cli() else keyword
    return f"{flag} {value}" if speaks_cli() else f"{keyword}={value}"


def input_shape_hint(name: str, dims: Sequence[int | str | None] | None = None) -> str:
    """How to give input ``name`` a shape: ``--input-shape x=1,3,H,W`` from fcc,
    ``input_shapes={'x': (1, 3, H, W)}`` from Python. ``dims`` are the declared ones
    (symbolic names and ``None`` become placeholders to fill in)."""
    if dims is None:
        shown = ["..."]
    else:
        shown = [str(d) if isinstance(d, int) else (d or f"D{i}") for i, d in enumerate(dims)]
    if speaks_cli():
        return f"--input-shape {name}={','.join(shown)}"
    return f"input_shapes={{{name!r}: ({', '.join(shown)})}}"


def named_shapes_hint() -> str:
    """How to give several inputs their shapes."""
    if speaks_cli():
        return "name each one: --input-shape NAME=1,3,224,224 (repeated)"
    return "pass a dict input_shapes={name: shape}"
