"""Ctrl-C in ``fcc``: exit 130 with "interrupted", and never a half-written output.

The CLI installs :func:`install` first thing. Its SIGINT handler records the interrupt and
raises ``KeyboardInterrupt`` — except inside :func:`deferred` sections (moving finished files
into place, cleaning up), where it only records it and the section raises on exit, so a
move is never cut in half. Library code that may swallow a ``KeyboardInterrupt`` (a
finalizer, a C extension's callback) cannot make fcc carry on as if nothing happened:
:func:`check` raises for a recorded interrupt before the output is committed, and the CLI
exits 130 whenever one was recorded.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["install", "interrupted", "check", "deferred"]

_state = threading.local()
_flag = threading.Event()
_installed = False


def _deferring() -> int:
    return getattr(_state, "depth", 0)


def _handler(signum: int, frame: FrameType | None) -> None:
    _flag.set()
    if _deferring() == 0:
        raise KeyboardInterrupt


def install() -> None:
    """Use fc's SIGINT handler (main thread only; elsewhere this does nothing)."""
    global _installed
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _handler)
        _installed = True


def interrupted() -> bool:
    """Whether Ctrl-C was pressed since :func:`install` (or the last :func:`reset`)."""
    return _flag.is_set()


def reset() -> None:
    _flag.clear()


def check() -> None:
    """Raise ``KeyboardInterrupt`` if Ctrl-C was pressed (and perhaps swallowed)."""
    if _flag.is_set():
        raise KeyboardInterrupt


@contextmanager
def deferred() -> Iterator[None]:
    """Ctrl-C inside this block is held until its end (then raised, unless the block is
    already raising). Without fc's handler installed, a Ctrl-C raises as usual."""
    _state.depth = _deferring() + 1
    try:
        yield
    finally:
        _state.depth -= 1
    if _installed and _deferring() == 0:
        check()
