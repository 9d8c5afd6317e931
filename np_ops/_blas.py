"""One BLAS thread while fc's own pool runs the GEMMs of a convolution.

A convolution of the channels-last path is cut into tiles (row blocks, or output-channel
blocks when the image is small) that fc's thread pool hands out from a shared counter
(``fc.np_ops._parallel``): each thread builds its tile's im2col block, multiplies it and
applies the epilogue, with the data in its own core's cache, and a thread the OS does not
schedule in time simply gets fewer tiles. For that the GEMMs must run single-threaded: a
multi-threaded OpenBLAS serializes concurrent callers on a lock, and its static split makes
every GEMM wait for its slowest thread (on a shared machine, for a descheduled one; its idle
workers also spin on the CPU after each call, taking it from fc's pool threads).

``single_threaded()`` sets OpenBLAS to one thread for the duration of a ``with`` block and
restores the previous count when the last concurrent user leaves; it yields whether the
GEMMs may be called from several threads (False when numpy's BLAS is not an OpenBLAS with
pthreads, whose thread count fc cannot scope: the caller then keeps BLAS's own threads). This
is a call into the library (``openblas_set_num_threads``), never an environment variable:
fc reads and sets none. While a convolution runs, numpy GEMMs of other threads of the
process run on one thread too.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
import time
from collections.abc import Iterator

import numpy as np

__all__ = ["blas_threads", "note_threaded_gemm", "since_threaded_gemm", "single_threaded"]

# (setter, getter) of numpy's OpenBLAS, found once (None: not an OpenBLAS fc can scope)
_api: tuple[ctypes._CFuncPtr, ctypes._CFuncPtr] | None = None
_api_done = False
_lock = threading.Lock()
_depth = 0
_saved = 1

# perf_counter() when fc last ran a GEMM on OpenBLAS's own threads (more than one)
_last_threaded = float("-inf")

_SUFFIXES = ("64_", "", "_64")
_PREFIXES = ("", "scipy_")


def _mapped_openblas() -> list[str]:
    """Paths of the shared libraries with "openblas" in their path mapped into this process,
    numpy's own (under its package directory or numpy.libs) first."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split(None, 5)[-1].strip() for line in f if "openblas" in line.lower()}
    except OSError:
        return []
    paths = {p for p in paths if p.startswith("/") and ".so" in p and os.path.exists(p)}
    home = os.path.dirname(os.path.dirname(np.__file__))
    own = os.path.join(home, "numpy")
    return sorted(paths, key=lambda p: not p.startswith(own))


def _find_api() -> tuple[ctypes._CFuncPtr, ctypes._CFuncPtr] | None:
    for path in _mapped_openblas():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for pre in _PREFIXES:
            for suf in _SUFFIXES:
                setter = getattr(lib, f"{pre}openblas_set_num_threads{suf}", None)
                getter = getattr(lib, f"{pre}openblas_get_num_threads{suf}", None)
                parallel = getattr(lib, f"{pre}openblas_get_parallel{suf}", None)
                if setter is None or getter is None or parallel is None:
                    continue
                setter.argtypes, setter.restype = [ctypes.c_int], None
                getter.argtypes, getter.restype = [], ctypes.c_int
                parallel.argtypes, parallel.restype = [], ctypes.c_int
                # 0: sequential build (safe from any thread as is), 1: pthreads (the count is
                # global), 2: OpenMP (the count is per calling thread: fc cannot scope it).
                mode = parallel()
                if mode == 0:
                    return setter, lambda: 1
                if mode == 1:
                    return setter, getter
                return None
    return None


def _get_api() -> tuple[ctypes._CFuncPtr, ctypes._CFuncPtr] | None:
    global _api, _api_done
    if not _api_done:
        with _lock:
            if not _api_done:
                _api = _find_api()
                _api_done = True
    return _api


def blas_threads() -> int | None:
    """OpenBLAS's current thread count (None if numpy's BLAS is not one fc can scope)."""
    api = _get_api()
    return None if api is None else int(api[1]())


@contextlib.contextmanager
def single_threaded() -> Iterator[bool]:
    """OpenBLAS on one thread inside the block (nested and concurrent blocks share one
    setting; the count before the outermost one is restored). Yields whether GEMMs may be
    called from several threads at once."""
    global _depth, _saved
    api = _get_api()
    if api is None:
        yield False
        return
    setter, getter = api
    with _lock:
        if _depth == 0:
            _saved = int(getter())
            if _saved > 1:
                setter(1)
        _depth += 1
    try:
        yield True
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved > 1:
                setter(_saved)


def note_threaded_gemm() -> None:
    """Record that a GEMM just ran on OpenBLAS's own threads, if it has more than one: its
    idle workers now spin (a ``sched_yield`` loop) for about 0.1 s before they sleep."""
    global _last_threaded
    api = _get_api()
    if api is not None and api[1]() > 1:
        _last_threaded = time.perf_counter()


def since_threaded_gemm() -> float:
    """Seconds since ``note_threaded_gemm`` last recorded a multi-threaded GEMM (inf if
    never)."""
    return time.perf_counter() - _last_threaded
