"""Feature-map buffers reused from one node to the next and from one run to the next.

Inside an executor run (``reuse()``, which ``fc.np_ops.interpreter`` enters), the kernels'
large outputs (``empty``: at least ``MIN_BYTES``; the convolutions', the stem's padded copy,
the MaxPool's) come from a pool of buffers kept by the calling thread: a buffer is handed out
again once nothing references it any more (no array and no view of it is alive: its
reference count is the pool's own), so reuse never aliases a live tensor, and a tensor the
caller keeps (a graph output, an array an observer holds) is simply not reused. Outside a run
``empty`` is ``np.empty``.

Why: a run allocates and frees a feature map at every node, and glibc's malloc gives large
freed blocks back to the system (trimming the heap's top, or unmapping a block above its
mmap threshold) and takes them back zeroed, page by page, on their first write, inside the
convolution that writes them. Whether that happens depends on the heap's history: in some
processes ResNet-50 at batch 8 took ~1,800 page faults per run (the kernel's page clearing
was 2.5% of the run's CPU time), in others none. With the pool no run after the first
faults.

What is kept: after a run, the buffers that run handed out (those free again), nothing else,
so the memory held between runs is one run's large intermediates. A buffer is reused for an
output of its exact size only. ``clear()`` drops the calling thread's pool; a thread's pool
goes with the thread.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator

import numpy as np

#: Outputs smaller than this come from np.empty (malloc keeps them in its heap anyway)
MIN_BYTES = 1 << 20

_local = threading.local()


def _free_refs() -> int:
    """The reference count ``sys.getrefcount`` reports, in ``_Pool.take``'s loop, for a buffer
    only the pool holds (measured, not assumed: it depends on the Python version)."""
    held = [np.empty(1, np.uint8)]
    for buf in held:
        return sys.getrefcount(buf)
    raise AssertionError


_FREE = _free_refs()


class _Pool:
    """One thread's buffers by size in bytes (1-D uint8 owners, handed out as views)."""

    __slots__ = ("by_size", "used", "depth")

    def __init__(self) -> None:
        self.by_size: dict[int, list[np.ndarray]] = {}
        self.used: set[int] = set()  # ids of the buffers handed out in the current run
        self.depth = 0

    def take(self, nbytes: int) -> np.ndarray:
        bufs = self.by_size.setdefault(nbytes, [])
        for buf in bufs:
            if sys.getrefcount(buf) == _FREE:  # no array or view of it is alive
                self.used.add(id(buf))
                return buf
        buf = np.empty(nbytes, np.uint8)
        bufs.append(buf)
        self.used.add(id(buf))
        return buf

    def trim(self) -> None:
        """Keep only the buffers the finished run handed out (dropping a previous graph's or
        batch size's; one still referenced lives on as its arrays' memory)."""
        for nbytes, bufs in list(self.by_size.items()):
            kept = [b for b in bufs if id(b) in self.used]
            if kept:
                self.by_size[nbytes] = kept
            else:
                del self.by_size[nbytes]
        self.used.clear()


def empty(shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
    """A C-contiguous uninitialised array, as ``np.empty``; inside ``reuse()`` a large one is a
    view of a pooled buffer that nothing else references."""
    pool: _Pool | None = getattr(_local, "pool", None)
    dtype = np.dtype(dtype)
    nbytes = dtype.itemsize
    for d in shape:
        nbytes *= d
    if pool is None or pool.depth == 0 or nbytes < MIN_BYTES:
        return np.empty(shape, dtype)
    return pool.take(nbytes).view(dtype).reshape(shape)


@contextlib.contextmanager
def reuse() -> Iterator[None]:
    """Within this block (an executor run; nested blocks count as one), ``empty`` takes large
    outputs from the calling thread's pool; at the end of the outermost block the buffers it
    did not use are dropped."""
    pool: _Pool | None = getattr(_local, "pool", None)
    if pool is None:
        pool = _local.pool = _Pool()
    pool.depth += 1
    try:
        yield
    finally:
        pool.depth -= 1
        if pool.depth == 0:
            pool.trim()


def clear() -> None:
    """Drop the calling thread's pool (buffers still referenced live on as their arrays)."""
    _local.pool = None


def held_bytes() -> int:
    """Bytes of the calling thread's pooled buffers."""
    pool: _Pool | None = getattr(_local, "pool", None)
    return 0 if pool is None else sum(b.nbytes for bufs in pool.by_size.values() for b in bufs)
