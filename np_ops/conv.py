"""The Conv kernel: channels-last GEMMs for ordinary convolutions, a grouped path for the rest.

Tensors stay logically NCHW everywhere (the IR, every kernel, observers, outputs), but an
ordinary (group=1) convolution *stores* its output channels-last: it returns the NCHW view
``y.transpose(0, 3, 1, 2)`` of an (N, H, W, M) buffer, as torch's ``channels_last`` memory
format does. Strides are invisible to numpy code, so every other kernel is correct on such
views; the elementwise ones (Add, Relu, BatchNormalization, ...) keep the layout, since
numpy allocates ufunc outputs in the inputs' memory order. What the layout buys:

- the batch folds into the GEMM's row dimension: one (N*Ho*Wo, K) @ (K, M) product for the
  whole batch, no per-image GEMMs and no transposes, so the small late-layer images of a
  batch make one GEMM OpenBLAS runs near its peak;
- a 1x1 stride-1 convolution of a channels-last input is a GEMM on the input itself;
- im2col copies runs of kw*C contiguous floats (C floats at stride 2) instead of Wo-float
  rows (runs shorter than ``_SHORT_RUN_BYTES``, the stem's 7 x 3 floats, as one opaque item
  each: ``_run_view``), and the padding copy moves whole rows;
- the bias is a row vector added along the contiguous axis.

fc's own GEMM (``fc.np_ops._gemm``, np_ops/_gemm.c; ``_C_GEMM``, ``gemm_kernel()``) runs a
float32 convolution wherever the extension was built with vector loops for this CPU (AVX-512
or AVX2) and the epilogue is bias / residual / relu (``_conv_tiles``): its weights are packed
once per array into 32-channel panels (``_packed_weight(w, panels=True)``), its im2col rows
are gathered from the channels-last input by blocks of ~256 KB that stay in L2 while every
weight panel reads them, the taps in the zero padding as zeros (no im2col matrix, no padding
copy; an NCHW input, the network's image, is copied once, padded; a 1x1 stride-1 convolution
reads its input in place), and each block's epilogue is fused into its last micro-kernel
call. One ``_gemm.tiles`` call runs the whole convolution on the calling thread and the
kernel's own worker threads (as many in all as fc's pool has), all drawing (rows, channels)
tiles from one ticket (``_tile_steps``: equal row tiles, up to ``_TILES_PER_THREAD`` per
thread; few rows, or fewer rows than channels, whole weight panels), so no Python runs per
tile and a thread the OS does not schedule in time simply draws fewer tiles. The workers are
C threads that spin (yielding their core to any other runnable thread) for 2 ms after a
convolution before they sleep: a thread woken from sleep joined a batch-1 convolution 0.1-0.3
ms late on this 2-core VM (p90 up to 1.3 ms), most of such a convolution, when fc's Python
pool handed the same tiles out (whole network, same process, alternated, load ~0.8: batch 1
min/median 59.2/66.6 -> 53.6/61.8 ms, batch 8 440/521 -> 410/454 ms, the same bits). No
OpenBLAS thread runs.
Each output is the same float32 sum whatever the tiles (its K blocks are OpenBLAS's: where
numpy runs OpenBLAS's SkylakeX kernels the bits are numpy's, and ResNet-50's logits are
bit-identical on both paths at batch 1 and 8). Measured against numpy's path (whole
fused ResNet-50, same process, 10 alternated rounds, load 0.9-1.2): batch 1 min/median
93.3/100.1 -> 69.0/76.4 ms, batch 8 566/737 -> 534/591 ms; peak RSS of a fresh process at
batch 1 259 MiB (the panels hold the 1x1 weights too, which numpy's path used in place).
``conv_post``'s elementwise step then runs on blocks of rows over the pool, after the
convolution. The rest
of this docstring is numpy's path, the fallback (other CPUs, dtypes and activations).

Who runs numpy's GEMMs: when fc's thread pool has more than one thread and numpy's BLAS is an
OpenBLAS whose thread count fc can scope (``fc.np_ops._blas``), OpenBLAS is set to one thread
for the convolution and the pool hands out tiles from a shared counter: blocks of output rows
(at least ``_MIN_TILE_ROWS`` GEMM rows, at most ``_BLOCK_BYTES`` of im2col and output, two or
more per thread), each thread building its tile's im2col block in a buffer of its own (reused across
layers), multiplying it and applying bias + activation while it is in its cache; an image
too small for that many row blocks (batch 1, late layers) is split into blocks of output
channels instead, on one im2col matrix. No GEMM then waits for a thread the OS has not
scheduled (OpenBLAS's static split does), and OpenBLAS's idle workers stop spinning on the
cores. That holds only for GEMMs with rows enough: fc's pool runs a convolution's GEMMs when
it has at least ``2 * workers * _OWN_TILE_ROWS`` GEMM rows (N*Ho*Wo), else BLAS's own threads
do. The reason is packing: OpenBLAS packs the whole (K, M) weight matrix on every call, so
each of the pool's row tiles packs it once more, while OpenBLAS's threads share one packed
copy; below ~200 rows per tile the repacking costs more than the pool saves. Measured on
ResNet-50 (2 cores, SkylakeX kernel, per-layer minimum of interleaved runs in a quiet
window): the late layers (196 and 49 rows at batch 1, 392 at batch 8) ran 1.1-1.7x faster
on BLAS's threads, the 784+-row layers with an im2col 1.1-1.3x faster on the pool; the whole
run went from 60 to 54 ms at batch 1 and from 338 to 297 ms at batch 8. The rule is
the shape's, not a table of this machine's timings. One exception: after a GEMM on BLAS's
threads (more than one), OpenBLAS's idle worker spins (``sched_yield``) for about 0.1 s
(measured: its CPU time grows for 96-100 ms after the call), so fc's pool threads started
in that window fight it for the cores; back-to-back batch-1 runs then came in two speeds
(early layers 27.7 vs 43.6 ms). A convolution of at most ``_SPIN_FLOPS`` (2 * rows * K * M;
ResNet-50's batch-1 layers, well below a millisecond or two each) started within
``_SPIN_SECONDS`` of such a GEMM runs on BLAS's threads instead, putting the spinning worker
to work; larger ones (batch 8) keep the pool. In back-to-back batch-1 runs (the benchmark's)
that sends every ResNet-50 convolution to BLAS's threads, the first ones included (each
starts within 0.1 s of the previous threaded GEMM, the previous run's last layers too): per
node, the padding, im2col and epilogue on the calling thread were 27 of 136 ms under load
(benchmarks/README). Otherwise the rows are processed in
blocks of about ``_BLOCK_BYTES`` of im2col matrix one after the other: build the block, one
GEMM on it (BLAS's own threads), then bias + activation on the block's output while it is in
cache. The padding copy, the im2col and the epilogue of that path run on the calling thread,
not on fc's pool: after each GEMM, OpenBLAS's idle workers keep spinning on the other cores
(a ``sched_yield`` loop, ~0.1 s before they sleep), so a pool thread handed a part fights one
of them for a core and the caller waits for it. Measured per thread (``/proc`` schedstat,
ResNet-50 batch 1, 2 cores): OpenBLAS's worker used CPU for the whole of the tiled layers
too, where OpenBLAS runs single-threaded; on the late layers (BLAS's threads) the
pool-free copies and epilogues cut the layers' per-node minima 30.0 -> 27.8 and 28.0 -> 26.3 ms (batch
1, two runs), batch 8 unchanged (42.4 / 42.8 ms). Either way the arithmetic is unchanged: each
output is one float32 dot product of length C*kh*kw computed by BLAS, then + bias, then the
activation.

The weights of a kh x kw convolution are reordered once to (M, kh*kw*C), matching the
im2col columns, and cached for the array's lifetime (``_packed_weight``; reordering every
call cost ~15 ms per ResNet-50 run). The GEMM takes them transposed, as it takes a 1x1
convolution's (M, C) weights: OpenBLAS (SkylakeX kernels) runs (rows, K) @ (M, K).T faster
than (rows, K) @ (K, M) with a C-contiguous (K, M), never slower, and much faster with few
rows (ResNet-50's shapes, alternated minima under load, 2 threads: 49 x 4608 -> 512 4.6 ->
1.7 ms, 196 x 2304 -> 256 1.36 -> 1.11 ms; one thread 4.5 -> 2.5 and 2.25 -> 1.71 ms),
with the same bits on ResNet-50. The original array is made read-only then, so that writing
into it, which would leave the cache stale, raises instead of silently computing with the
old values (replace ``Value.const`` instead); 64 sampled elements are compared on each use,
against writes through another alias of the memory (a torch tensor, a base).

The stem (ResNet-50's 7x7 stride-2 3 -> 64, K = 147; same process, alternated minima, load
~1): its whole-matrix GEMM runs fastest as (M, K) @ (rows, K).T (b1 2.34 ms, b8 14.2 ms, the
per-shape floor) against 2.90 / 21.7 ms for the (rows, K) @ (M, K).T used here, but in the
~3472-row blocks this path multiplies (in cache) both orientations run alike (0.38 ms, 2
threads; one thread 0.64 vs 0.70 ms, this one faster), so the GEMM's orientation is not
where the stem's time over its floor goes: that is the serial im2col (0.93 ms at b1, 0.65
with ``_run_view``), the epilogue (0.47 ms; after a MaxPool it now runs on the pooled quarter,
``fc.np_ops.nn.conv_max_pool``) and the MaxPool (1.2-1.4 ms, ~0.95 with the H taps first).
Convolution alone: 4.67 ms at b1 on BLAS's threads (2.0x the whole-matrix floor), 21.9 ms at
b8 on fc's pool (1.54x). torch's stem (conv2d + relu + max_pool2d, 2 threads) measured 10.7
ms at b1 and 129 ms at b8 in the same process, under load (fc's: 5.4 and 63 ms).

The epilogue (bias, fused residual, relu) runs in C where the optional extension
``fc.np_ops._epilogue`` was built (``np_ops/_epilogue.c``; numpy's ``_epilogue`` is its
definition and runs otherwise, or for other activations and dtypes): one pass over each
block instead of numpy's one per step, the same float32 operations in the same order, the
same bits (NaN payloads included, see ``_epilogue``; tests/np_ops/test_epilogue_kernel.py,
and every test of test_conv.py runs with both). Measured (one thread, load ~0.8): bias +
relu on an in-cache (896, 256) tile 0.126 -> 0.040 ms, bias + residual (from memory, into)
+ relu 0.220 -> 0.132 ms; ResNet-50, whole network, same process, alternated, load 0.8-1.1:
batch 8 (10 rounds) minimum 572 -> 540 ms, median 791 -> 657; batch 1 (20 rounds) minimum
141 -> 126 ms, median 191 -> 150; logits bit-identical.

Grouped convolutions (depthwise included) keep the NCHW path: a batched matmul over the
group axis on a strided im2col view (G products of (M/G, K) @ (K, Ho*Wo); measured 1.5-2.3x
faster than multiply-adding kh*kw shifted views for depthwise).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable

import numpy as np
from numpy.lib.stride_tricks import as_strided

from fc.errors import ExecutionError
from fc.np_ops import _blas, _parallel, buffers
from fc.np_ops._parallel import parallel_for
from fc.np_ops.activation import activate_inplace
from fc.np_ops.registry import kernel

try:  # the epilogue in C (np_ops/_epilogue.c); optional at install (setup.py)
    from fc.np_ops import _epilogue as _epilogue_c
except ImportError:  # no C compiler at install: numpy's _epilogue, the definition
    _epilogue_c = None
try:  # fc's GEMM on packed weights (np_ops/_gemm.c); optional at install (setup.py)
    from fc.np_ops import _gemm as _gemm_c
except ImportError:  # no C compiler at install: numpy's matmul
    _gemm_c = None

__all__ = ["conv", "conv_post", "conv_residual", "epilogue_kernel", "gemm_kernel",
           "is_channels_last"]

Array = np.ndarray

#: im2col bytes per block: the block, its GEMM output and the weights stay in L2/L3
_BLOCK_BYTES = 2 << 20
#: an NCHW input with at most this many channels is padded plane by plane (see _pad_nhwc)
_FEW_CHANNELS = 4
#: im2col runs (kw*C contiguous elements) shorter than this are copied as single opaque items
#: (see _run_view)
_SHORT_RUN_BYTES = 256
#: output bytes per chunk of the epilogue's elementwise steps (see _epilogue)
_EPILOGUE_BYTES = 256 << 10
#: the C epilogue (``fc.np_ops._epilogue``) where it was built and applies (tests switch it);
#: rows of at least _C_MIN_ROW floats only (see _epilogue)
_C_EPILOGUE = _epilogue_c is not None
_C_MIN_ROW = 16
#: but at least this many rows per GEMM, which OpenBLAS needs to run near its peak
_MIN_BLOCK_ROWS = 512
#: when fc's pool runs the GEMMs (one BLAS thread each): GEMM rows per tile at least, and the
#: granularity of output-channel tiles (small images)
_MIN_TILE_ROWS = 128
_M_ALIGN = 32
#: fc's pool runs the GEMMs only with at least 2 * workers * this many GEMM rows (each thread
#: two tiles of that many or more); below, each tile's repacking of the weights costs more
#: than OpenBLAS's own threads, which share one packed copy (see the module docstring)
_OWN_TILE_ROWS = 192
#: row tiles: their count rounded up to a multiple of parallel_for's 2 * workers parts, the
#: tiles made smaller (never larger, never under _MIN_TILE_ROWS rows), so that each part has
#: as many tiles; else one thread gets a whole tile more (see run_tiles)
_BALANCE_TILES = True
#: row tiles handed out one at a time (one parallel_for part each) rather than in 2 * workers
#: parts of several tiles: a thread descheduled mid-part then delays the layer's end by one
#: tile at most (see run_tiles)
_TILE_TICKETS = True
#: while OpenBLAS's idle workers probably still spin after a multi-threaded GEMM (measured:
#: worker CPU grows for 96-100 ms after the call, 2 cores), a convolution of at most this many
#: flops (2 * rows * K * M) runs on BLAS's threads instead of fc's pool, whose threads would
#: fight the spinning worker for the cores (see the module docstring)
_SPIN_SECONDS = 0.1
_SPIN_FLOPS = 2.5e8
#: fc's own GEMM (``fc.np_ops._gemm``) runs whole channels-last convolutions where it was
#: built with vector loops for this CPU (its generic loop is slow), epilogue fused, im2col
#: gathered by blocks (see _conv_tiles; tests switch it)
_GEMM_ISAS = ("avx512", "avx2")
_C_GEMM = _gemm_c is not None and _gemm_c.ISA in _GEMM_ISAS
#: the kernel's weight panel width (np_ops/_gemm.c's NR)
_NR = 32
#: its row tiles: at least this many rows, at most _TILES_PER_THREAD per pool thread
_TILE_MIN_ROWS = 64
_TILES_PER_THREAD = 4
#: a convolution of fewer flops runs as one call on the calling thread
_TILES_SERIAL_FLOPS = 4e6
# Grouped path: im2col matrices of a batch in chunks of at most this many bytes, and images
# with fewer output pixels than _FOLD_HW share one GEMM across the batch.
_COLS_BYTES = 8 << 20
_FOLD_HW = 128


def epilogue_kernel() -> str:
    """Which code runs the channels-last epilogue: ``"C (avx512)"`` (the instruction set of
    ``fc.np_ops._epilogue``'s loops) or ``"numpy"`` (the extension not built, or switched
    off)."""
    return f"C ({_epilogue_c.ISA})" if _C_EPILOGUE and _epilogue_c is not None else "numpy"


def gemm_kernel() -> str:
    """Which code runs the channels-last convolutions' GEMMs: ``"C (avx512)"`` (fc's own GEMM,
    ``fc.np_ops._gemm``, epilogue fused; its instruction set) or ``"numpy"`` (numpy's matmul:
    the extension not built, no vector loops for this CPU, or switched off)."""
    return f"C ({_gemm_c.ISA})" if _C_GEMM and _gemm_c is not None else "numpy"


def is_channels_last(x: Array) -> bool:
    """Whether 4-D ``x`` (logically NCHW) is stored as a C-contiguous (N, H, W, C) buffer."""
    return x.ndim == 4 and x.transpose(0, 2, 3, 1).flags.c_contiguous


# -- packed weights -------------------------------------------------------------------------

_PACKED: dict[int, tuple[weakref.ref, Array, Array, dict[bool, Array]]] = {}
_PACKED_LOCK = threading.Lock()
_SAMPLES = 64


def _sample_index(shape: tuple[int, ...]) -> Array:
    """Flat indices of ``_SAMPLES`` elements spread over an array of ``shape``, computed once
    per cached weight (``np.linspace`` and ``np.unravel_index`` cost ~100 us a call)."""
    return np.linspace(0, int(np.prod(shape)) - 1, _SAMPLES).astype(np.intp)


def _sample(w: Array, flat: Array) -> Array:
    # A C-contiguous array (the usual weight) flattens to a view: a 1-D take is ~3 us.
    if w.flags.c_contiguous:
        return w.reshape(-1)[flat]
    return w[np.unravel_index(flat, w.shape)]


def _pack_panels(w2: Array) -> Array:
    """(M, K) ``w2`` as fc's kernel's (P, K, _NR) panels, P = ceil(M / _NR): ``out[p, k, j] =
    w2[p * _NR + j, k]``, zero past M, in a 64-byte aligned buffer (np_ops/_gemm.c)."""
    m, k = w2.shape
    p = -(-m // _NR)
    size = p * k * _NR
    buf = np.empty(size + 16, dtype=w2.dtype)
    off = (-buf.ctypes.data % 64) // buf.itemsize
    out = buf[off:off + size].reshape(p, k, _NR)
    full = m // _NR
    out[:full] = w2[:full * _NR].reshape(full, _NR, k).transpose(0, 2, 1)
    if full < p:
        out[full] = 0
        out[full, :, :m - full * _NR] = w2[full * _NR:].T
    return out


def _packed_weight(w: Array, panels: bool = False) -> Array:
    """``w`` (M, C, kh, kw) as a GEMM operand, cached per array: with ``panels``, fc's
    kernel's (P, K, 32) panels (``_pack_panels``, K = kh*kw*C); else the (kh*kw*C, M)
    operand of numpy's matmul, the transposed view of a C-contiguous (M, kh*kw*C) matrix
    (see the module docstring for why not a C-contiguous (kh*kw*C, M) one). Each layout is
    built on first use. The sampled elements are a fingerprint that catches a write into
    the memory through another alias (a torch tensor sharing it, a base array)."""
    key = id(w)
    hit = _PACKED.get(key)
    if hit is not None and hit[0]() is w and (_sample(w, hit[1]) == hit[2]).all():
        layouts = hit[3]
    else:
        w.flags.writeable = False  # so that the cache stays true (see the module docstring)
        index = _sample_index(w.shape)
        layouts = {}
        with _PACKED_LOCK:
            # The callback holds the dict itself: at interpreter exit the module global is None.
            _PACKED[key] = (weakref.ref(w, lambda _, k=key, d=_PACKED: d.pop(k, None)), index,
                            _sample(w, index), layouts)
    out = layouts.get(panels)
    if out is None:
        w2 = np.ascontiguousarray(w.transpose(0, 2, 3, 1)).reshape(w.shape[0], -1)
        out = _pack_panels(w2) if panels else w2.T
        layouts[panels] = out  # two threads packing at once store equal arrays
    return out


# -- channels-last path ---------------------------------------------------------------------

def _epilogue(y: Array, b: Array | None, activation: str, alpha: float, beta: float,
              res: Array | None = None, post: Callable[[Array], None] | None = None,
              into: bool = False, dst: Array | None = None) -> None:
    """In place on a block of (rows, M) outputs: + bias row, + the residual block (a fused
    residual Add), then the activation, then ``post(block)`` (``conv_post``, once on the
    whole block). With ``into``, ``y`` is scratch and the sum goes into ``res``'s memory
    instead (``np.add(y, res, out=res)``: the same operands in the same order, so the same
    bits, NaN payloads included), the activation then on ``res``. With ``dst`` (rows like
    ``res``), ``y`` keeps the convolution's own output (+ bias) and the sum goes into ``dst``
    (``conv_residual(keep_conv=True)``). The elementwise steps run
    on chunks of about ``_EPILOGUE_BYTES`` of rows, all steps on one chunk before the next,
    so that the 2-3 passes read it from L2 instead of streaming a block of several MiB from
    memory each time (the same operations on each element in the same order). Measured
    (numpy 1.26, one thread, blocks out of cache, relu via ``relu_inplace``): bias +
    residual + relu on (3136, 256) 1.62 -> 0.89 ms, on (25088, 256) 11.7 -> 7.7 ms; bias +
    relu on (3136, 256) 0.81 -> 0.46 ms.

    Where the C kernel was built (``np_ops/_epilogue.c``, ``_C_EPILOGUE``), float32 blocks
    with relu or no activation take it instead: the same float32 operations on each element
    in the same order, in one pass over the block (numpy makes one per step, each at ~0.3 ns
    per element in cache), on rows of at least ``_C_MIN_ROW`` floats: when both operands of
    an add are NaN, numpy 1.26's SIMD loops (rows of 8 floats or more) give the second one's
    payload, which the kernel reproduces, and its scalar loop (shorter rows) the first one's.
    Measured: see the module docstring."""
    if (_C_EPILOGUE and activation in ("", "relu") and y.dtype == np.float32 and y.ndim == 2
            and y.shape[1] >= _C_MIN_ROW and y.strides[1] == 4
            and (b is None or (b.dtype == np.float32 and b.flags.c_contiguous))
            and (res is None or (res.dtype == np.float32 and res.ndim == 2
                                 and res.strides[1] == 4))
            and (dst is None or (dst.dtype == np.float32 and dst.ndim == 2
                                 and dst.strides[1] == 4))):
        _epilogue_c.run(y, b, res, into, activation == "relu", dst)
        if post is not None:
            post(y)
        return
    rows = y.shape[0]
    step = max(1, _EPILOGUE_BYTES // max(1, y.shape[1] * y.itemsize))
    for a in range(0, rows, step):
        yy = y[a:a + step]
        if b is not None:
            yy += b
        if res is not None:
            if into or dst is not None:
                rr = res[a:a + step]
                dd = rr if into else dst[a:a + step]
                np.add(yy, rr, out=dd)
                yy = dd
            else:
                yy += res[a:a + step]
        if activation:
            r = activate_inplace(yy, activation, alpha, beta)
            if r is not yy:
                yy[...] = r
    if post is not None:
        post(y)


def _segments(q0: int, q1: int, ho: int) -> list[tuple[int, int, int]]:
    """Output rows ``q0:q1`` of the flattened (N*Ho) row index as (image, h0, h1) pieces."""
    out = []
    while q0 < q1:
        i, h0 = divmod(q0, ho)
        h1 = min(ho, h0 + q1 - q0)
        out.append((i, h0, h1))
        q0 += h1 - h0
    return out


def _copy_rows(dst: Array, src: Array, pool: bool = True) -> None:
    """``dst[...] = src`` for (rows, ...) arrays, the rows split over the pool (if ``pool``)."""
    if not pool:
        dst[...] = src
        return

    def part(a: int, b: int) -> None:
        dst[a:b] = src[a:b]

    parallel_for(part, dst.shape[0], dst.nbytes)


def _pad_nhwc(xh: Array, top: int, left: int, bottom: int, right: int, *,
              pool: bool = True) -> Array:
    """(N, H, W, C) ``xh`` (any strides) zero-padded on H/W into a new C-contiguous buffer,
    the copy split over fc's pool if ``pool``."""
    n, h, w, c = xh.shape
    xp = buffers.empty((n, h + top + bottom, w + left + right, c), xh.dtype)
    xp[:, :top] = 0
    xp[:, top + h:] = 0
    xp[:, top:top + h, :left] = 0
    xp[:, top:top + h, left + w:] = 0
    inner = xp[:, top:top + h, left:left + w]
    if c <= _FEW_CHANNELS and xh.strides[3] > xh.strides[2]:
        # An NCHW input with few channels (a network's image input): one plane per channel,
        # read contiguously, instead of a copy whose innermost loop has c elements strided
        # by a plane (ResNet-50's 3x224x224 input: 0.23 -> 0.065 ms)
        for ch in range(c):
            inner[..., ch] = xh[..., ch]
    elif n > 1:
        _copy_rows(inner, xh, pool)
    else:
        _copy_rows(inner[0], xh[0], pool)
    return xp


def _tile_steps(rows: int, m: int, workers: int) -> tuple[int, int]:
    """(row_step, col_step) of ``_conv_tiles``'s tiles: rows enough, and at least as many
    rows as output channels, up to ``_TILES_PER_THREAD`` row tiles per thread, of equal
    height rounded up to a multiple of 8 (the kernel's groups of 12 rows then end in one of
    8 or 4, which it has a micro-kernel for); else (batch 1's late layers, batch 8's last
    stage) tiles of whole weight panels, two per thread. Each row tile reads all the
    weights, each panel tile all the activations: with fewer rows than channels (rows x K
    activations against K x M weights) panel tiles read less. Measured on ResNet-50 b8's
    last stage (392 rows, 512-2048 channels), in the network (each node's minimum over 6
    runs, its weights no longer in cache): 3x3 6.24 -> 5.39 ms, 1x1 2048 -> 512 2.87 -> 2.38
    ms, 512 -> 2048 (residual) 3.03 -> 2.47 ms."""
    if rows >= 2 * workers * _TILE_MIN_ROWS and rows >= m:
        tiles = workers * min(_TILES_PER_THREAD, rows // (workers * _TILE_MIN_ROWS))
        step = -(-rows // tiles)
        return -(-step // 8) * 8, m
    panels = -(-m // _NR)
    return rows, -(-panels // (2 * workers)) * _NR


def _conv_tiles(xh: Array, w: Array, bias: Array | None, ho: int, wo: int,
                strides: tuple[int, ...], pads: tuple[int, ...], dilations: tuple[int, ...],
                relu: bool, y: Array, res2: Array | None, into: bool,
                dst2: Array | None, fq: tuple | None = None) -> None:
    """The convolution of (N, H, W, C) ``xh`` into channels-last ``y`` by fc's GEMM: one
    ``_gemm.tiles`` call (``_run_tiles``), its threads drawing tiles from one ticket, each
    tile's im2col rows gathered by blocks from the channels-last input, the padding implicit
    (an NCHW input is copied once, padded), and its epilogue (bias, residual, relu) fused
    into the kernel.
    ``into``: the sum goes into ``res2`` (``y`` is its memory); ``dst2``: the sum goes there,
    ``y`` keeping the convolution's output; ``fq``: the output fake-quantized in the epilogue
    too (``fc.quant.qparams.fake_quant_step``'s ``c_params``)."""
    n, h, wd, c = xh.shape
    m, _, kh, kw = w.shape
    (sh, sw), (dh, dw) = strides, dilations
    packed = _packed_weight(w, panels=True)
    if kh == kw == 1 and not any(pads) and sh == sw == 1 and xh.flags.c_contiguous:
        src, geometry = xh.reshape(n * h * wd, c), None
    elif xh.flags.c_contiguous:  # the kernel reads zeros for the taps in the padding
        src, geometry = xh, (ho, wo, kh, kw, sh, sw, dh, dw, pads[0], pads[1])
    else:  # an NCHW input (the network's image): one channels-last padded copy
        src, geometry = _pad_nhwc(xh, *pads), (ho, wo, kh, kw, sh, sw, dh, dw, 0, 0)
    rows = n * ho * wo
    _run_tiles(src, geometry, packed, None if into else y.reshape(rows, m), rows, m,
               2 * rows * c * kh * kw * m, bias, res2, dst2, into, relu, fq)


def _run_tiles(src: Array, geometry: tuple[int, ...] | None, packed: Array, out: Array | None,
               rows: int, m: int, flops: float, bias: Array | None = None,
               res2: Array | None = None, dst2: Array | None = None, into: bool = False,
               relu: bool = False, fq: tuple | None = None) -> None:
    """``_gemm.tiles`` on as many threads as fc's pool has: the calling thread and the
    kernel's own workers (C threads that spin a while between convolutions, see
    np_ops/_gemm.c), all drawing tiles from one ticket; one thread for less than
    ``_TILES_SERIAL_FLOPS``."""
    workers = _parallel.num_workers()
    if workers == 1 or flops < _TILES_SERIAL_FLOPS:
        _gemm_c.tiles(src, geometry, packed, out, (rows, m), None, bias, res2, dst2, into, relu,
                      1, fq)
        return
    _gemm_c.tiles(src, geometry, packed, out, _tile_steps(rows, m, workers), None, bias, res2,
                  dst2, into, relu, workers, fq)


def _conv_channels_last(x: Array, w: Array, b: Array | None, ho: int, wo: int,
                        strides: tuple[int, ...], pads: tuple[int, ...],
                        dilations: tuple[int, ...], activation: str, alpha: float,
                        beta: float, res2: Array | None = None,
                        post: Callable[[Array], None] | None = None,
                        into: bool = False, dst2: Array | None = None) -> Array:
    n, c, h, wd = x.shape
    m, _, kh, kw = w.shape
    (sh, sw), (dh, dw) = strides, dilations
    k = c * kh * kw
    xh = x.transpose(0, 2, 3, 1)
    # into: the output is the residual's own (C-contiguous) memory (conv_residual, overwrite)
    y = res2.reshape(n, ho, wo, m) if into else buffers.empty((n, ho, wo, m), x.dtype)
    bias = None if b is None else np.asarray(b, dtype=x.dtype)
    if (_C_GEMM and activation in ("", "relu") and x.dtype == np.float32
            and w.dtype == np.float32 and m >= _C_MIN_ROW
            and (bias is None or bias.flags.c_contiguous)):
        fq = getattr(post, "c_params", None)  # a fake quantization: in the kernel's epilogue
        _conv_tiles(xh, w, bias, ho, wo, strides, pads, dilations, activation == "relu", y,
                    res2, into, dst2, fq)
        if post is not None and fq is None:  # elementwise: on blocks of rows over the pool
            y2 = y.reshape(n * ho * wo, m)
            parallel_for(lambda r0, r1: post(y2[r0:r1]), y2.shape[0], 2 * y2.nbytes)
        return y.transpose(0, 3, 1, 2)

    # fc's pool runs the GEMMs (tiles) or BLAS's threads do (blocks; see the module docstring)
    rows = n * ho * wo
    workers = _parallel.num_workers()
    touched = (rows * k + k * m + rows * m) * x.itemsize
    tiles = (workers > 1 and touched >= _parallel.MIN_PARALLEL_BYTES
             and rows >= 2 * workers * _OWN_TILE_ROWS)
    if tiles and 2 * rows * k * m <= _SPIN_FLOPS and _blas.since_threaded_gemm() < _SPIN_SECONDS:
        tiles = False  # OpenBLAS's worker still spins: use it rather than fight it
    pointwise = kh == kw == 1 and not any(pads)
    runs = None
    if pointwise:
        view = xh[:, :sh * (ho - 1) + 1:sh, :sw * (wo - 1) + 1:sw, None, None, :]
        wmat = w.reshape(m, c).T  # a transposed view: BLAS reads it as is
    else:
        xp = _pad_nhwc(xh, *pads, pool=tiles)
        s_n, s_h, s_w, s_c = xp.strides
        view = _strided(xp, (n, ho, wo, kh, kw, c),
                        (s_n, s_h * sh, s_w * sw, s_h * dh, s_w * dw, s_c))
        wmat = _packed_weight(w)
        runs = _run_view(xp, (n, ho, wo, kh), (s_n, s_h * sh, s_w * sw, s_h * dh), kw * c, dw)
    # A 1x1 stride-1 conv of a channels-last input multiplies the input rows in place.
    a_all = (xh.reshape(n * h * wd, c)
             if pointwise and sh == sw == 1 and xh.flags.c_contiguous else None)
    conv = _Im2colGemm(view, a_all, wmat, y.reshape(n * ho * wo, m), ho, wo, bias,
                       activation, alpha, beta, res2, post, into, runs, dst2)
    if tiles:
        with _blas.single_threaded() as own_threads:
            if own_threads:
                conv.run_tiles(workers)
                return y.transpose(0, 3, 1, 2)
    conv.run_blocks()
    return y.transpose(0, 3, 1, 2)


def _strided(a: Array, shape: tuple[int, ...], strides: tuple[int, ...],
             dtype: np.dtype | None = None) -> Array:
    """A read-only view of C-contiguous ``a``'s buffer with ``shape`` and ``strides`` (what
    ``as_strided(..., writeable=False)`` gives, in ~1 us instead of ~7 us: it builds an
    ``__array_interface__`` object on each call), of ``a``'s dtype or ``dtype``."""
    v = np.ndarray(shape, a.dtype if dtype is None else dtype, a, 0, strides)
    v.flags.writeable = False
    return v


def _run_view(xp: Array, shape: tuple[int, ...], strides: tuple[int, ...], run: int,
              dw: int) -> Array | None:
    """The im2col view of C-contiguous padded ``xp`` with each run of ``run`` (kw*C)
    contiguous elements as one opaque item (a ``V{run*itemsize}`` dtype; (N, Ho, Wo, kh)
    items), or None when the runs are not contiguous (dilated along W) or long enough for
    numpy's own copy loop. numpy copies an im2col block one innermost run at a time, ~16 ns
    of loop overhead each; the stem's runs are 7 x 3 floats (84 bytes, 7 per GEMM row), and
    as one item each the copy moves the same bytes in fewer, wider steps (a byte copy: the
    same bits). Measured (im2col in ~3472-row blocks as run_blocks builds them, minima of 15
    alternated, load ~1): ResNet-50's stem 0.93 -> 0.65 ms at batch 1, 4.93 -> 3.98 ms at
    batch 8; runs of 3 x 64 floats (768 bytes) gain nothing (0.81 vs 0.82 ms), so longer
    runs keep the float copy."""
    nbytes = run * xp.itemsize
    if dw != 1 or nbytes >= _SHORT_RUN_BYTES or not xp.flags.c_contiguous:
        return None
    return _strided(xp, shape, strides, np.dtype((np.void, nbytes)))


_local = threading.local()


def _thread_cols(rows: int, k: int, dtype: np.dtype, name: str = "cols") -> Array:
    """A (rows, k) buffer of the calling thread, reused across tiles and layers: the im2col
    block (``cols``) or the GEMM output of a tile whose sum goes into the residual
    (``out``)."""
    buf = getattr(_local, name, None)
    if buf is None or buf.dtype != dtype or buf.size < rows * k:
        buf = np.empty(rows * k, dtype=dtype)
        setattr(_local, name, buf)
    return buf[:rows * k].reshape(rows, k)


class _Im2colGemm:
    """One channels-last convolution as GEMMs over blocks of output rows: ``view`` is the
    (N, Ho, Wo, kh, kw, C) im2col view (``a_all`` the GEMM operand itself when no copy is
    needed), ``y2`` the (N*Ho*Wo, M) output."""

    def __init__(self, view: Array, a_all: Array | None, wmat: Array, y2: Array, ho: int,
                 wo: int, bias: Array | None, activation: str, alpha: float, beta: float,
                 res2: Array | None = None, post: Callable[[Array], None] | None = None,
                 into: bool = False, runs: Array | None = None, dst2: Array | None = None):
        self.view, self.a_all, self.wmat, self.y2 = view, a_all, wmat, y2
        self.runs = runs  # the im2col view by runs of kw*C elements (_run_view) or None
        # y2 is res2 itself: each GEMM goes to scratch, its sum into res2 (_epilogue's into)
        self.into = into and res2 is not None and post is None
        self.ho, self.wo = ho, wo
        self.total = view.shape[0] * ho  # output rows of Wo pixels, over the batch
        self.rows = self.total * wo
        self.kh, self.kw, self.c = view.shape[3:]
        self.k = wmat.shape[0]
        self.bias, self.act = bias, (activation, alpha, beta)
        self.res2 = res2  # (N*Ho*Wo, M) rows added after the bias (a fused residual Add)
        self.dst2 = dst2  # where the sum goes while y2 keeps the conv's output (or None)
        self.post = post  # called on each finished output block (see conv_post)
        self.epilogue = bias is not None or bool(activation) or res2 is not None or post is not None

    def copies(self, q0: int, q1: int, cols: Array) -> list[tuple[Array, Array]]:
        """(destination, source) pairs that fill ``cols`` with the im2col rows of output
        rows ``q0:q1``."""
        out, r, wo = [], 0, self.wo
        if self.runs is not None:  # one item per run of kw*C elements (see _run_view)
            blk = cols.view(self.runs.dtype)
            for i, h0, h1 in _segments(q0, q1, self.ho):
                rows = (h1 - h0) * wo
                out.append((blk[r:r + rows].reshape(h1 - h0, wo, self.kh), self.runs[i, h0:h1]))
                r += rows
            return out
        blk = cols.reshape(-1, self.kh, self.kw, self.c)
        for i, h0, h1 in _segments(q0, q1, self.ho):
            rows = (h1 - h0) * wo
            out.append((blk[r:r + rows].reshape(h1 - h0, wo, self.kh, self.kw, self.c),
                        self.view[i, h0:h1]))
            r += rows
        return out

    # -- fc's pool runs the GEMMs (BLAS single-threaded) ------------------------------------

    def run_tiles(self, workers: int) -> None:
        """Tiles handed out by the pool, each thread doing its tiles' im2col, GEMM and
        epilogue in its own cache: blocks of output rows, at least ``_MIN_TILE_ROWS`` GEMM
        rows and at most ``_BLOCK_BYTES`` of im2col, output and residual rows each (a
        residual tile of ResNet-50's 1x1 64 -> 256 convs at batch 8, in place: isolated
        medians 24.9 -> 20.7 and 19.6 -> 17.8 ms, minima mixed, under load), two per thread or
        more; a batch too small for that splits the output channels instead (the im2col
        built once).

        The tile count is then rounded up to a multiple of ``2 * workers`` (``_BALANCE_TILES``;
        smaller tiles of equal height, when that still gives a multiple and at least
        ``_MIN_TILE_ROWS`` rows): ``parallel_for`` groups the tiles into ``2 * workers``
        parts, and 5 tiles made parts of 1, 1, 1 and 2, one thread running 3 tiles while the
        other ran 2 (ResNet-50 at batch 8 on 2 threads: the 14x14 1x1 convs 1024 -> 512 and
        512 -> 1024 stride 2 had 5 tiles of 24 output rows, now 8 of 14; the 14x14 residual
        1x1 convs 7 -> 8, the 28x28 1x1 ones 10 -> 12 and 14 -> 16). Each output is the
        same dot product whatever the tile's height, and OpenBLAS rounds it alike once a
        GEMM is past its small-matrix kernels (measured: K = 576, M = 64 rounds differently
        at up to 18 rows, alike from 19; ResNet-50's tiles have 196 rows or more): ResNet-50's
        logits bit-identical at batch 8. Measured, whole network at batch 8, same process, alternated,
        two passes of 8 and 12 rounds (load 1.6-1.9): per-conv minima summed 581 -> 536 and
        558 -> 524 ms, wall minima 674 -> 621 and 636 -> 577 ms, medians 730 -> 745 and
        701 -> 675 ms (benchmarks/README).

        The tiles are then handed out one at a time (``_TILE_TICKETS``: one ``parallel_for``
        part per tile, not 2 * workers parts of several): on a shared machine a thread
        descheduled in the middle of a part held the other up by the rest of that part, a
        quarter of the layer, and now by one tile at most (~0.4 ms for the 56x56 3x3 at
        batch 8, 32 tiles). The same tiles, so the same bits. Measured, ResNet-50 batch 8,
        whole network, same process, alternated, two passes of 10 and 14 rounds (load
        1.6-2.0, another engineer's benchmarks running): medians 885 -> 820 and 896 -> 743
        ms, minima 660 -> 664 and 658 -> 627 ms."""
        wo, k, isz = self.wo, self.k, self.y2.itemsize
        want = 2 * workers
        m = self.y2.shape[1]
        # im2col row, output row and residual row all count: with few input channels (K = 64,
        # M = 256) the output and the residual are most of a tile's working set
        row_bytes = (k + m + (m if self.res2 is not None else 0)
                     + (m if self.dst2 is not None else 0)) * isz
        block_rows = max(_MIN_TILE_ROWS, min(_BLOCK_BYTES // row_bytes, self.rows // want))
        step = max(1, block_rows // wo)  # output rows per tile
        nblk = -(-self.total // step)
        if _BALANCE_TILES and nblk >= want and nblk % want:
            # as many tiles in each of parallel_for's 2 * workers parts (see _BALANCE_TILES)
            even = -(-self.total // (nblk + want - nblk % want))
            if even * wo >= _MIN_TILE_ROWS:
                step = even
                nblk = -(-self.total // step)
        mparts = min(want, m // _M_ALIGN)
        if nblk >= want or mparts < 2:
            parallel_for(self._row_tiles(step), nblk, 1 << 62,
                         parts=nblk if _TILE_TICKETS else None)
            return
        if self.a_all is not None:
            a = self.a_all
        else:
            a = np.empty((self.rows, k), dtype=self.y2.dtype)
            _split_work(self.copies(0, self.total, a), None, None, "", 0.0, 0.0)
        bounds = [_M_ALIGN * (m // _M_ALIGN * i // mparts) for i in range(mparts)] + [m]
        bias, act, res2, post, dst2 = self.bias, self.act, self.res2, self.post, self.dst2

        def part(p0: int, p1: int) -> None:
            for p in range(p0, p1):
                m0, m1 = bounds[p], bounds[p + 1]
                out = (_thread_cols(self.rows, m1 - m0, self.y2.dtype, "out") if self.into
                       else self.y2[:, m0:m1])
                np.matmul(a, self.wmat[:, m0:m1], out=out)
                if self.epilogue:
                    _epilogue(out, None if bias is None else bias[m0:m1], *act,
                              None if res2 is None else res2[:, m0:m1], post, self.into,
                              None if dst2 is None else dst2[:, m0:m1])

        parallel_for(part, mparts, 1 << 62)

    def _row_tiles(self, step: int):
        wo, k = self.wo, self.k

        def part(t0: int, t1: int) -> None:
            for t in range(t0, t1):
                q0 = t * step
                q1 = min(self.total, q0 + step)
                r0, r1 = q0 * wo, q1 * wo
                if self.a_all is not None:
                    a = self.a_all[r0:r1]
                else:
                    a = _thread_cols(r1 - r0, k, self.y2.dtype)
                    for dst, src in self.copies(q0, q1, a):
                        dst[...] = src
                out = (_thread_cols(r1 - r0, self.y2.shape[1], self.y2.dtype, "out")
                       if self.into else self.y2[r0:r1])
                np.matmul(a, self.wmat, out=out)
                if self.epilogue:
                    _epilogue(out, self.bias, *self.act,
                              None if self.res2 is None else self.res2[r0:r1], self.post,
                              self.into, None if self.dst2 is None else self.dst2[r0:r1])

        return part

    # -- BLAS's own threads run each GEMM ---------------------------------------------------

    def run_blocks(self) -> None:
        """Blocks of rows one after the other: each GEMM on BLAS's threads, the im2col of a
        block and the previous block's epilogue on the calling thread (not fc's pool: BLAS's
        workers spin on the other cores between GEMMs, see the module docstring)."""
        wo, k = self.wo, self.k
        block_rows = max(_MIN_BLOCK_ROWS, _BLOCK_BYTES // (k * self.y2.itemsize))
        step = max(1, block_rows // wo)
        total = self.total
        cols = (None if self.a_all is not None
                else np.empty((min(step, total) * wo, k), dtype=self.y2.dtype))
        # into: one scratch block serves all (a block's epilogue ends before the next GEMM)
        scratch = (np.empty((min(step, total) * wo, self.y2.shape[1]), dtype=self.y2.dtype)
                   if self.into else None)
        done: Array | None = None  # the previous block's output, its epilogue still to run
        done_res: Array | None = None
        done_dst: Array | None = None
        for q0 in range(0, total, step):
            q1 = min(total, q0 + step)
            r0, r1 = q0 * wo, q1 * wo
            if self.a_all is not None:
                a, copies = self.a_all[r0:r1], []
            else:
                a = cols[:r1 - r0]
                copies = self.copies(q0, q1, a)
            # This block's im2col and the last block's epilogue.
            _split_work(copies, done, self.bias, *self.act, done_res, pool=False,
                        post=self.post, into=self.into, dst=done_dst)
            out = scratch[:r1 - r0] if self.into else self.y2[r0:r1]
            np.matmul(a, self.wmat, out=out)
            done = out if self.epilogue else None
            done_res = None if self.res2 is None else self.res2[r0:r1]
            done_dst = None if self.dst2 is None else self.dst2[r0:r1]
        _blas.note_threaded_gemm()
        _split_work([], done, self.bias, *self.act, done_res, pool=False, post=self.post,
                    into=self.into, dst=done_dst)


def _split_work(copies: list[tuple[Array, Array]], out: Array | None, bias: Array | None,
                activation: str, alpha: float, beta: float, res: Array | None = None, *,
                pool: bool = True, post: Callable[[Array], None] | None = None,
                into: bool = False, dst: Array | None = None) -> None:
    """``to[...] = src`` for each pair, and the epilogue on ``out`` (if any; ``res``: the
    residual rows to add, ``dst`` the sum's rows with ``keep_conv``), each split into row
    ranges over the pool, in one parallel loop (one wait instead of two); all on the calling
    thread if not ``pool``."""
    if not pool:  # the calling thread (BLAS's threads path): no loop machinery (~10 us)
        for to, src in copies:
            to[...] = src
        if out is not None:
            _epilogue(out, bias, activation, alpha, beta, res, post, into, dst)
        return
    nbytes = sum(d.nbytes for d, _ in copies) + (0 if out is None else 2 * out.nbytes)
    if nbytes == 0:
        return
    units = _parallel.num_workers() if nbytes >= _parallel.MIN_PARALLEL_BYTES else 1

    def part(u0: int, u1: int) -> None:
        for u in range(u0, u1):
            for to, src in copies:
                a, b = to.shape[0] * u // units, to.shape[0] * (u + 1) // units
                to[a:b] = src[a:b]
            if out is not None:
                a, b = out.shape[0] * u // units, out.shape[0] * (u + 1) // units
                _epilogue(out[a:b], bias, activation, alpha, beta,
                          None if res is None else res[a:b], post, into,
                          None if dst is None else dst[a:b])

    parallel_for(part, units, nbytes)


# -- grouped path (NCHW) --------------------------------------------------------------------

def _pad_nchw(x: Array, top: int, left: int, bottom: int, right: int) -> Array:
    """``x`` zero-padded on H/W into a new C-contiguous NCHW buffer (``x`` if no padding)."""
    if not (top or left or bottom or right):
        return x
    n, c, h, w = x.shape
    out = np.zeros((n, c, h + top + bottom, w + left + right), dtype=x.dtype)
    out[:, :, top:top + h, left:left + w] = x
    return out


def _grouped_gemm(view: Array, wg: Array, out: Array) -> None:
    """``out`` (N, G, M/G, Ho*Wo) = ``wg`` (G, M/G, K) @ im2col(``view``), ``view`` being
    (N, G, C/G, kh, kw, Ho, Wo); small images of a batch share one GEMM."""
    n, g = view.shape[:2]
    hw = view.shape[5] * view.shape[6]
    if n > 1 and hw < _FOLD_HW:
        cols = view.transpose(1, 2, 3, 4, 0, 5, 6).reshape(g, wg.shape[2], n * hw)
        out[...] = np.matmul(wg, cols).reshape(g, wg.shape[1], n, hw).transpose(2, 0, 1, 3)
    else:
        np.matmul(wg, view.reshape(n, g, wg.shape[2], hw), out=out)


def _conv_grouped(x: Array, w: Array, b: Array | None, ho: int, wo: int, group: int,
                  strides: tuple[int, ...], pads: tuple[int, ...],
                  dilations: tuple[int, ...], activation: str, alpha: float,
                  beta: float) -> Array:
    n, c = x.shape[:2]
    m, cg, kh, kw = w.shape
    (sh, sw), (dh, dw) = strides, dilations
    if kh == kw == 1 and not any(pads):
        xs = x if sh == sw == 1 else x[:, :, :sh * (ho - 1) + 1:sh, :sw * (wo - 1) + 1:sw]
        view = xs.reshape(n, group, cg, 1, 1, ho, wo)
    else:
        xp = _pad_nchw(x, *pads)
        if not xp.flags.c_contiguous:
            xp = np.ascontiguousarray(xp)
        s_n, s_c, s_h, s_w = xp.strides
        view = as_strided(xp, (n, group, cg, kh, kw, ho, wo),
                          (s_n, s_c * cg, s_c, s_h * dh, s_w * dw, s_h * sh, s_w * sw),
                          writeable=False)
    wg = w.reshape(group, m // group, cg * kh * kw)
    y = np.empty((n, group, m // group, ho * wo), dtype=x.dtype)
    chunk = max(1, _COLS_BYTES // max(1, c * kh * kw * ho * wo * x.itemsize))
    for n0 in range(0, n, chunk):
        _grouped_gemm(view[n0:n0 + chunk], wg, y[n0:n0 + chunk])
    y = y.reshape(n, m, ho, wo)
    if b is not None:
        y += np.asarray(b, dtype=y.dtype).reshape(-1, 1, 1)
    return activate_inplace(y, activation, alpha, beta)


def _output_hw(x: Array, w: Array, strides: tuple[int, ...], pads: tuple[int, ...],
               dilations: tuple[int, ...]) -> tuple[int, int]:
    """(Ho, Wo) of a convolution of NCHW ``x`` by OIHW ``w``, pads (top, left, bottom, right)."""
    (sh, sw), (dh, dw) = strides, dilations
    h, wd = x.shape[2:]
    kh, kw = w.shape[2:]
    return ((h + pads[0] + pads[2] - dh * (kh - 1) - 1) // sh + 1,
            (wd + pads[1] + pads[3] - dw * (kw - 1) - 1) // sw + 1)


def conv_residual(x: Array, w: Array, b: Array | None, residual: Array, *,
                  strides: tuple[int, ...], pads: tuple[int, ...], dilations: tuple[int, ...],
                  group: int, activation: str, act_alpha: float, act_beta: float,
                  add_activation: str, add_alpha: float, add_beta: float,
                  overwrite: bool = False, keep_conv: bool = False
                  ) -> Array | tuple[Array, Array] | None:
    """``Add(Conv(x, w, b), residual)`` with the Add's activation, the residual added in the
    convolution's epilogue while each output block is in cache (the executor's fusion of a
    residual Add, ``fc.np_ops.interpreter``): the same float32 operations in the same order
    as the two kernels, so the same bits. None when this convolution cannot take it (grouped,
    its own activation, a residual of another shape, dtype or layout): run the two kernels
    then.

    ``overwrite``: the caller owns ``residual`` (nothing reads it afterwards, no other array
    views its memory): the sum is written into it and it is returned. Each GEMM block then
    goes to a per-thread scratch buffer, and the epilogue reads the residual and writes the
    same cache lines back, instead of writing a new feature map (its write-allocate reads
    and first-touch pages) next to reading the residual. Ignored (a new array) when ``x``
    shares memory with ``residual``. Measured: an in-place add of two 25.7 MB float32 maps
    takes 0.72x the time of one into a third array (4.15 vs 5.79 ms one thread, 2.94 vs
    4.70 ms two).

    ``keep_conv``: return ``(conv, sum)``, the convolution's own output (+ bias, as ``conv``
    returns it) and the sum in a new array, both channels-last (``overwrite`` ignored): what
    the executor runs when an observer must see both tensors (calibration). Each block's
    sum is still made while the block is in cache (in C: one pass storing both), instead of
    the Add's own passes over the three maps."""
    x, w, residual = np.asarray(x), np.asarray(w), np.asarray(residual)
    if (group != 1 or activation or x.ndim != 4 or w.ndim != 4 or w.shape[1] != x.shape[1]
            or x.dtype != residual.dtype or w.dtype != x.dtype or not is_channels_last(residual)):
        return None
    n, m = x.shape[0], w.shape[0]
    ho, wo = _output_hw(x, w, strides, pads, dilations)
    if residual.shape != (n, m, ho, wo):
        return None
    res2 = residual.transpose(0, 2, 3, 1).reshape(n * ho * wo, m)  # a view (channels-last)
    if keep_conv:
        total = buffers.empty((n, ho, wo, m), x.dtype)
        y = _conv_channels_last(x, w, b, ho, wo, strides, pads, dilations, add_activation,
                                add_alpha, add_beta, res2, dst2=total.reshape(n * ho * wo, m))
        return y, total.transpose(0, 3, 1, 2)
    into = (overwrite and residual.flags.writeable and not np.may_share_memory(x, residual)
            and not np.may_share_memory(w, residual)
            and (b is None or not np.may_share_memory(b, residual)))
    return _conv_channels_last(x, w, b, ho, wo, strides, pads, dilations, add_activation,
                               add_alpha, add_beta, res2, into=into)


def conv_post(x: Array, w: Array, b: Array | None, post: Callable[[Array], None], *,
              strides: tuple[int, ...], pads: tuple[int, ...], dilations: tuple[int, ...],
              group: int, activation: str, act_alpha: float, act_beta: float) -> Array | None:
    """``conv``, with ``post(block)`` called in place on each (rows, M) block of channels-last
    output rows (a 2-D view, possibly a column slice) after its epilogue, while the block is
    in cache (the quantized simulation's fake quantization of a Conv's output: ``post`` must
    be elementwise, so the blocking cannot change its result). On fc's GEMM a ``post`` with
    ``c_params`` (``fc.quant.qparams.fake_quant_step``) is not called: the kernel applies
    those operations to each value before it stores it. None when the convolution
    takes the grouped path or the inputs are not 4-D float of one dtype: run ``conv`` and
    ``post`` on its output then."""
    x, w = np.asarray(x), np.asarray(w)
    if group != 1 or x.ndim != 4 or w.ndim != 4 or w.shape[1] != x.shape[1] or w.dtype != x.dtype:
        return None
    ho, wo = _output_hw(x, w, strides, pads, dilations)
    if ho <= 0 or wo <= 0:
        return None
    return _conv_channels_last(x, w, b, ho, wo, strides, pads, dilations, activation,
                               act_alpha, act_beta, None, post)


@kernel("Conv")
def conv(x: Array, w: Array, b: Array | None = None, *, strides: tuple[int, ...],
         pads: tuple[int, ...], dilations: tuple[int, ...], group: int, activation: str,
         act_alpha: float, act_beta: float) -> Array:
    """2-D cross-correlation, W (M, C/group, kH, kW), pads (top, left, bottom, right)."""
    x = np.asarray(x)
    w = np.asarray(w)
    if x.ndim != 4 or w.ndim != 4:
        raise ExecutionError(f"Conv: X {list(x.shape)} and W {list(w.shape)} must be 4-D (NCHW)")
    if w.dtype != x.dtype:
        w = w.astype(x.dtype)
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    if cg * group != c or m % group:
        raise ExecutionError(f"Conv: W {list(w.shape)} with group={group} does not fit X "
                             f"{list(x.shape)}")
    ho, wo = _output_hw(x, w, strides, pads, dilations)
    if ho <= 0 or wo <= 0:
        raise ExecutionError(f"Conv: kernel {kh}x{kw} larger than padded input {h}x{wd}")
    args = (strides, pads, dilations, activation, act_alpha, act_beta)
    if group == 1:
        return _conv_channels_last(x, w, b, ho, wo, *args)
    return _conv_grouped(x, w, b, ho, wo, group, *args)
