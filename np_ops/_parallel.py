"""A small thread pool for the memory-bound work around the GEMMs (im2col copies, padding,
bias + activation, residual adds), which numpy runs on one core while OpenBLAS runs its
GEMMs on all of them.

numpy releases the GIL in its copy and ufunc loops, so threads that each copy or add one
contiguous block of rows run in parallel. The pool has as many workers as the CPUs this
process may run on (``os.sched_getaffinity``), at most ``MAX_WORKERS``; fc reads no
environment setting to change it and sets none. Work smaller than ``MIN_PARALLEL_BYTES``
stays on the calling thread: handing a block to a worker costs ~20 us.

The caller works through the parts itself too and waits only for parts already started,
and workers never wait on the pool, so nested or concurrent callers (two interpreters in two
threads) cannot deadlock: their parts simply queue.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

__all__ = ["MIN_PARALLEL_BYTES", "num_workers", "parallel_for", "parallel_blocks", "split"]

MAX_WORKERS = 8
#: below this many bytes touched, splitting costs more than it saves
MIN_PARALLEL_BYTES = 256 << 10

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


#: the CPUs this process may run on are read again at most this often (seconds): a syscall,
#: ~0.5-1 us in cache and a few us out of it, which a ResNet-50 run asked ~120 times
_WORKERS_TTL = 0.05
_workers: tuple[float, int] = (float("-inf"), 1)  # (time.monotonic() read, count)


def num_workers() -> int:
    """Threads used for one parallel loop (the caller included); an affinity change shows
    within ``_WORKERS_TTL`` seconds."""
    global _workers
    now = time.monotonic()
    read, n = _workers
    if now - read < _WORKERS_TTL:
        return n
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    n = max(1, min(MAX_WORKERS, n))
    _workers = (now, n)
    return n


def _get_pool() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = ThreadPoolExecutor(max(1, num_workers() - 1),
                                           thread_name_prefix="fc-np_ops")
    return _pool


def split(n: int, parts: int) -> list[tuple[int, int]]:
    """``range(n)`` as at most ``parts`` contiguous, nearly equal, non-empty ``(start, stop)``."""
    parts = max(1, min(parts, n))
    bounds = [n * i // parts for i in range(parts + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(parts) if bounds[i] < bounds[i + 1]]


def parallel_for(fn: Callable[[int, int], None], n: int, nbytes: int, *,
                 parts: int | None = None) -> None:
    """``fn(start, stop)`` over contiguous parts of ``range(n)``, on the pool when the work
    (``nbytes`` touched in all) is large enough; exceptions propagate to the caller.

    The parts (two per thread, or ``parts`` of them) are handed out from a shared counter,
    the caller taking its share like the workers: on a busy machine a worker that is not
    scheduled in time simply gets no part (its task is cancelled), instead of the caller
    waiting for it; and a thread descheduled in the middle of a part holds the others up
    by the rest of that part at most, so callers whose items are large (a convolution's
    tiles) ask for one part per item."""
    workers = num_workers() if nbytes >= MIN_PARALLEL_BYTES else 1
    ranges = split(n, (parts or 2 * workers) if workers > 1 else 1)
    if len(ranges) <= 1:
        if n > 0:
            fn(0, n)
        return
    tickets = itertools.count()  # next() on it is atomic under the GIL

    def drain() -> None:
        for i in tickets:
            if i >= len(ranges):
                return
            fn(*ranges[i])

    pool = _get_pool()
    futures: list[Future] = [pool.submit(drain) for _ in range(workers - 1)]
    try:
        drain()
    finally:
        for f in futures:
            if not f.cancel():
                f.result()


def outer_axis(a: np.ndarray) -> int:
    """The axis of ``a`` with the largest stride among those longer than 1 (0 if none): slabs
    along it are the largest contiguous-ish pieces, whatever the layout."""
    best, best_stride = 0, -1
    for ax, (n, st) in enumerate(zip(a.shape, a.strides)):
        if n > 1 and abs(st) > best_stride:
            best, best_stride = ax, abs(st)
    return best


def parallel_blocks(fn: Callable[[tuple[slice, ...]], None], out: np.ndarray,
                    nbytes: int | None = None) -> None:
    """``fn(index)`` for slabs ``out[index]`` along ``out``'s outermost memory axis, over the
    pool (``nbytes``: bytes touched in all, default 3x ``out``'s, two inputs and the output)."""
    if out.ndim == 0:
        fn(())
        return
    ax = outer_axis(out)
    lead = (slice(None),) * ax

    def part(a: int, b: int) -> None:
        fn(lead + (slice(a, b),))

    parallel_for(part, out.shape[ax], 3 * out.nbytes if nbytes is None else nbytes)
