"""Kernels: layer ops (ConvTranspose, BatchNormalization, Gemm, MatMul, pooling, LRN, the
normalizations, Softmax, LogSoftmax), logically NCHW (Conv is ``fc.np_ops.conv``).

Inputs may be stored channels-last (Conv's outputs are, see ``fc.np_ops.conv``): the kernels
are numpy code, correct for any strides; pooling keeps that layout (its output, and
AveragePool's padded copy, are allocated in the input's memory order) so a Conv -> MaxPool ->
Conv chain stays channels-last. Speed matters here (whole models run through these kernels), so nothing
loops over pixels or channels in Python:

- ConvTranspose is the adjoint: W^T @ x per image gives (M, kh, kw, H, W) columns, which
  kh*kw strided adds scatter into the output (col2im), then pads are cropped.
- Pooling reduces shifted strided views separably (kw taps along W, then kh along H);
  MaxPool clips the taps that would read padding instead of padding a copy of its input
  (channels-last float32 maps: the same taps in C, ``_max_pool_c``);
  AveragePool divides by a divisor map, the outer product of per-axis window counts.

Most of a convnet's time is the GEMMs, i.e. numpy's BLAS. OpenBLAS picks its kernels by CPU
model: on the AMD EPYC (AVX-512) development machine numpy's OpenBLAS 0.3.23 chose its
Haswell (AVX2) kernels, and ``OPENBLAS_CORETYPE=SkylakeX`` in the environment (read when
numpy is imported) made a ResNet-50 run ~1.4x faster on 2 threads (1.6x on one).

Arithmetic stays in the input's dtype (float32 GEMMs, as onnxruntime does); only the
BatchNormalization coefficients are folded in float64 before being cast.

Pooling follows onnxruntime (compared on ~3,400 random MaxPool/AveragePool configurations:
asymmetric pads, ceil_mode, dilations, count_include_pad; torch agrees wherever it applies).
AveragePool's divisor: count_include_pad=0 counts the input positions in the window,
count_include_pad=1 the positions inside input + pads, so the part of a ceil_mode window that
hangs past the padded input is never counted. The number of ceil_mode windows follows the
schema's ``pool_out`` (a last window starting in the end padding is dropped, as torch and
onnxruntime do; ONNX shape inference keeps it). The ONNX reference evaluator (onnx 1.23) is
no oracle here: it divides such ceil_mode windows by the full kernel size, returns NaN for
some, and applies some asymmetric pads to the wrong axes.
"""

from __future__ import annotations

import functools

import numpy as np

from fc.errors import ExecutionError
from fc.ir.schemas._rules import pool_out
from fc.np_ops import _blas, _parallel, buffers
from fc.np_ops import conv as _conv
from fc.np_ops._parallel import parallel_for
from fc.np_ops.activation import activate_inplace
from fc.np_ops.conv import is_channels_last
from fc.np_ops.registry import kernel

__all__: list[str] = []

Array = np.ndarray

#: input bytes per band of pooled rows (see _window_reduce)
_POOL_BAND_BYTES = 1 << 20
#: while OpenBLAS's idle workers still spin after a multi-threaded GEMM (fc.np_ops.conv's
#: _SPIN_SECONDS), MaxPool stays on the calling thread and a 2-D product runs on BLAS's own
#: threads instead of fc's pool (see _max_pool_c, _matmul2d; tests switch it)
_SPIN_RULE = True


# -- helpers --------------------------------------------------------------------------------

def _pad2d(x: Array, top: int, left: int, bottom: int, right: int, value: float = 0) -> Array:
    """``x`` padded on H/W with ``value``, in ``x``'s memory layout (NCHW or channels-last);
    ``x`` itself (no copy) when nothing is padded."""
    if not (top or left or bottom or right):
        return x
    n, c, h, w = x.shape
    hp, wp = h + top + bottom, w + left + right
    if is_channels_last(x):
        out = np.empty((n, hp, wp, c), dtype=x.dtype).transpose(0, 3, 1, 2)
    else:
        out = np.empty((n, c, hp, wp), dtype=x.dtype)
    # Fill only the border: the interior is overwritten by x.
    out[:, :, :top] = value
    out[:, :, top + h:] = value
    out[:, :, top:top + h, :left] = value
    out[:, :, top:top + h, left + w:] = value
    out[:, :, top:top + h, left:left + w] = x
    return out


def _window_reduce_rows(xp: Array, op: np.ufunc, kernel_shape: tuple[int, ...],
                        strides: tuple[int, ...], dilations: tuple[int, ...], wo: int,
                        out: Array, h0: int) -> None:
    """Output rows ``h0 : h0 + out.shape[2]`` of the windows into ``out``, separably: first
    the kw taps along W on every padded row they read, then the kh taps along H. Each step
    reads rows with a contiguous-ish inner axis, which numpy runs about twice as fast as
    kh*kw 2-D taps."""
    (kh, kw), (sh, sw), (dh, dw) = kernel_shape, strides, dilations
    nrows = out.shape[2]
    xs = xp[:, :, h0 * sh:(h0 + nrows - 1) * sh + dh * (kh - 1) + 1]
    rows = None
    for j in range(kw):
        v = xs[..., j * dw:j * dw + sw * (wo - 1) + 1:sw]
        rows = v.copy(order="K") if rows is None else op(rows, v, out=rows)
    for i in range(kh):
        v = rows[:, :, i * dh:i * dh + sh * (nrows - 1) + 1:sh]
        if i == 0:
            out[...] = v
        else:
            op(out, v, out=out)


def _pool_bands(x: Array, ho: int, wo: int, sh: int) -> tuple[Array, int, list[tuple[int, int]]]:
    """A pooling's output (N, C, Ho, Wo) in ``x``'s memory layout, its band of output rows
    (channels-last: about ``_POOL_BAND_BYTES`` of the input rows of ``x``'s width; NCHW, whose
    bands would be short runs of every channel plane: whole images) and the (image, first
    row) of every band."""
    n, c = x.shape[:2]
    if is_channels_last(x):
        y = np.empty((n, ho, wo, c), dtype=x.dtype).transpose(0, 3, 1, 2)
        row_bytes = max(1, c * x.shape[3] * x.itemsize * sh)
        band = max(1, min(ho, _POOL_BAND_BYTES // row_bytes))
    else:
        y = np.empty((n, c, ho, wo), dtype=x.dtype)
        band = ho
    return y, band, [(i, h0) for i in range(n) for h0 in range(0, ho, band)]


def _window_reduce(xp: Array, op: np.ufunc, kernel_shape: tuple[int, ...],
                   strides: tuple[int, ...], dilations: tuple[int, ...], ho: int, wo: int
                   ) -> Array:
    """``op`` (np.maximum or np.add) over each pooling window, in ``xp``'s memory layout.

    The work goes image by image and, channels-last, in bands of output rows of about
    ``_POOL_BAND_BYTES`` of input, so that the intermediate rows stay in cache (measured on
    ResNet-50's stem MaxPool at batch 8, one thread: 8.3 ms whole, 5.1-5.6 ms in bands; NCHW
    10-11 ms), with the bands split over the thread pool."""
    y, band, bands = _pool_bands(xp, ho, wo, strides[0])

    def part(a: int, b: int) -> None:
        for i, h0 in bands[a:b]:
            _window_reduce_rows(xp[i:i + 1], op, kernel_shape, strides, dilations, wo,
                                y[i:i + 1, :, h0:h0 + band], h0)

    parallel_for(part, len(bands), 2 * xp.nbytes)
    return y


def _max_taps(src: Array, axis: int, out: Array, o0: int, k: int, s: int, d: int,
              offset: int, low: float) -> None:
    """``out[.., o, ..]`` (along ``axis``; output index ``o0 + o``) = the maximum over the taps
    ``t < k`` of ``src[.., (o0 + o) * s + t * d + offset, ..]`` that fall inside ``src``, and
    ``low`` where none does: a padded window's maximum without a padded copy of ``src``
    (padding ``low`` never beats a value; a position a tap misses reads padding, so giving
    it ``low`` is what padding gives)."""
    n, size = out.shape[axis], src.shape[axis]
    lead = (slice(None),) * axis
    spans = []
    for t in range(k):
        off = o0 * s + t * d + offset  # src index of local output o: o * s + off
        lo = max(0, (-off + s - 1) // s)
        hi = min(n, (size - 1 - off) // s + 1)
        if lo < hi:
            spans.append((hi - lo, lo, hi, off))
    if not spans:
        out[...] = low
        return
    spans.sort(key=lambda sp: -sp[0])
    for j, (_, lo, hi, off) in enumerate(spans):
        dst = out[lead + (slice(lo, hi),)]
        v = src[lead + (slice(lo * s + off, (hi - 1) * s + off + 1, s),)]
        if j == 0:
            dst[...] = v
            if lo > 0:
                out[lead + (slice(0, lo),)] = low
            if hi < n:
                out[lead + (slice(hi, n),)] = low
        else:
            np.maximum(dst, v, out=dst)


def _max_pool_unpadded(x: Array, kernel_shape: tuple[int, ...], strides: tuple[int, ...],
                       pads: tuple[int, ...], dilations: tuple[int, ...], ho: int, wo: int,
                       low: float) -> Array:
    """MaxPool of ``x`` with ``low`` padding (top/left ``pads[:2]``; the bottom/right ones
    follow from ``ho``/``wo``), separably but on ``x`` itself: kh taps along H first, then kw
    along W (the reverse of ``_window_reduce``'s order: channels-last, the H taps run over
    whole rows of W*C contiguous values, and the W taps, whose innermost runs are only C
    values, over the pooled rows, not the ~sh times more input rows; ResNet-50's stem
    MaxPool, channels-last, minima of 20 / 8 alternated, load ~1.9: b1 1.36 -> 1.08 ms, b8
    11.2 -> 9.1 ms). Taps that would read padding are clipped off (``_max_taps``), which
    saves the padded copy of the input (ResNet-50's stem output: 26 MB at batch 8, copied on
    one thread). Same layout, bands and pool split as ``_window_reduce``; the same values (a
    maximum does not depend on the order of its operands; only which of -0.0 and +0.0, or of
    two NaN payloads, a tie keeps can)."""
    c, wd = x.shape[1], x.shape[3]
    (kh, kw), (sh, sw), (dh, dw) = kernel_shape, strides, dilations
    pt, pl = pads[0], pads[1]
    y, band, bands = _pool_bands(x, ho, wo, sh)
    nchw = not is_channels_last(x)

    def part(a: int, b: int) -> None:
        for i, h0 in bands[a:b]:
            h1 = min(ho, h0 + band)
            out = y[i:i + 1, :, h0:h1]
            rows = np.empty((1, c, h1 - h0, wd), dtype=x.dtype) if nchw \
                else np.empty((1, h1 - h0, wd, c), dtype=x.dtype).transpose(0, 3, 1, 2)
            _max_taps(x[i:i + 1], 2, rows, h0, kh, sh, dh, -pt, low)
            _max_taps(rows, 3, out, 0, kw, sw, dw, -pl, low)

    parallel_for(part, len(bands), 2 * x.nbytes)
    return y


def _finish(y: Array, b: Array | None, activation: str, alpha: float, beta: float) -> Array:
    """Add the per-channel bias (axis 1) in place, then the activation."""
    if b is not None:
        y += np.asarray(b, dtype=y.dtype).reshape((-1,) + (1,) * (y.ndim - 2))
    return activate_inplace(y, activation, alpha, beta)


def _check4(op: str, x: Array, w: Array) -> None:
    if x.ndim != 4 or w.ndim != 4:
        raise ExecutionError(f"{op}: X {list(x.shape)} and W {list(w.shape)} must be 4-D (NCHW)")


# -- convolution (Conv itself: fc.np_ops.conv) ------------------------------------------

@kernel("ConvTranspose")
def conv_transpose(x: Array, w: Array, b: Array | None = None, *, strides: tuple[int, ...],
                   pads: tuple[int, ...], dilations: tuple[int, ...],
                   output_padding: tuple[int, ...], group: int, activation: str,
                   act_alpha: float, act_beta: float) -> Array:
    """The adjoint of Conv, W (C, M/group, kH, kW): GEMM to columns, then col2im."""
    x = np.asarray(x)
    _check4("ConvTranspose", x, w)
    w = np.asarray(w, dtype=x.dtype)
    n, c, h, wd = x.shape
    _, mg, kh, kw = w.shape
    if w.shape[0] != c or c % group:
        raise ExecutionError(f"ConvTranspose: W {list(w.shape)} with group={group} does not fit "
                             f"X {list(x.shape)}")
    cg, m = c // group, mg * group
    sh, sw = strides
    dh, dw = dilations
    # Full output before cropping pads; output_padding rows/cols get no contribution.
    hf = sh * (h - 1) + dh * (kh - 1) + 1 + output_padding[0]
    wf = sw * (wd - 1) + dw * (kw - 1) + 1 + output_padding[1]
    ho, wo = hf - pads[0] - pads[2], wf - pads[1] - pads[3]
    if ho <= 0 or wo <= 0:
        raise ExecutionError(f"ConvTranspose: pads {list(pads)} leave an empty output")

    # W^T (G, M/G*kh*kw, C/G), a transposed view BLAS takes as is, @ (N, G, C/G, H*W)
    # -> columns (N, G, M/G, kh, kw, H, W).
    wt = w.reshape(group, cg, mg * kh * kw).transpose(0, 2, 1)
    cols = np.matmul(wt, x.reshape(n, group, cg, h * wd)).reshape(n, group, mg, kh, kw, h, wd)
    full = np.zeros((n, group, mg, hf, wf), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            full[:, :, :, i * dh:i * dh + sh * (h - 1) + 1:sh,
                 j * dw:j * dw + sw * (wd - 1) + 1:sw] += cols[:, :, :, i, j]
    y = full.reshape(n, m, hf, wf)
    if any(pads):
        y = np.ascontiguousarray(y[:, :, pads[0]:pads[0] + ho, pads[1]:pads[1] + wo])
    return _finish(y, b, activation, act_alpha, act_beta)


# -- dense ----------------------------------------------------------------------------------

@kernel("BatchNormalization")
def batch_norm(x: Array, scale: Array, b: Array, mean: Array, var: Array, *, epsilon: float
               ) -> Array:
    """Inference BN as one multiply-add per element: x * a + (B - mean * a), a = scale /
    sqrt(var + eps); the coefficients are folded in float64 (torch's CPU kernel folds them
    too, in float32)."""
    x = np.asarray(x)
    a = np.asarray(scale, np.float64) / np.sqrt(np.asarray(var, np.float64) + epsilon)
    shift = np.asarray(b, np.float64) - np.asarray(mean, np.float64) * a
    shape = (-1,) + (1,) * (x.ndim - 2)
    y = x * a.astype(x.dtype).reshape(shape)
    y += shift.astype(x.dtype).reshape(shape)
    return y


def _matmul2d(a: Array, b: Array) -> Array:
    """a @ b as a new C-ordered array. A product with few rows (a classifier at small batch)
    is computed as (b.T @ a.T).T: OpenBLAS runs that orientation about twice as fast when
    the rows are few and the columns many (measured 8x2048 @ 2048x1000: 0.84 vs 0.41 ms).

    A large product is cut into tiles that fc's pool runs with BLAS on one thread
    (``fc.np_ops._blas``): blocks of rows, or of columns when the rows are few. Not while
    OpenBLAS's idle workers still spin after a multi-threaded GEMM (``fc.np_ops.conv``'s
    rule; a pool thread would fight one for a core): the product then runs on BLAS's own
    threads, putting the spinning worker to work. ResNet-50's classifier comes right after
    layer 4's convolutions, which run on BLAS's threads: (1, 2048) @ (2048, 1000) at batch
    1, in the network (same process, alternated, 50 runs, load 2-3), minimum / median 0.88 /
    1.11 -> 0.36 / 0.75 ms; the same logits bits at batch 1 and 8. (Each output is the same
    dot product either way; only a tile small enough for OpenBLAS's small-matrix kernels
    where the whole product is not could round it in another order.)"""
    r, k = a.shape
    n = b.shape[1]
    few = r <= 32 and n >= 4 * r
    workers = _parallel.num_workers()
    touched = (r * k + k * n + r * n) * np.result_type(a, b).itemsize
    if (workers > 1 and touched >= _parallel.MIN_PARALLEL_BYTES and max(r, n) >= 2 * _TILE
            and not (_SPIN_RULE and _blas.since_threaded_gemm() < _conv._SPIN_SECONDS)):
        with _blas.single_threaded() as own_threads:
            if own_threads:
                return _matmul2d_tiles(a, b, few, 2 * workers)
    out = np.ascontiguousarray(np.matmul(b.T, a.T).T) if few else np.matmul(a, b)
    if workers > 1 and touched >= _parallel.MIN_PARALLEL_BYTES:
        _blas.note_threaded_gemm()  # (a no-op when OpenBLAS runs on one thread)
    return out


#: rows (or columns) per tile of a 2-D product at least
_TILE = 32


def _matmul2d_tiles(a: Array, b: Array, few: bool, parts: int) -> Array:
    r, n = a.shape[0], b.shape[1]
    dtype = np.result_type(a, b)
    if few:  # (b.T @ a.T) in blocks of b's columns, transposed once at the end
        out_t = np.empty((n, r), dtype=dtype)
        bounds = _tile_bounds(n, parts)

        def part(p0: int, p1: int) -> None:
            for p in range(p0, p1):
                c0, c1 = bounds[p], bounds[p + 1]
                np.matmul(b[:, c0:c1].T, a.T, out=out_t[c0:c1])

        parallel_for(part, len(bounds) - 1, 1 << 62)
        return np.ascontiguousarray(out_t.T)
    out = np.empty((r, n), dtype=dtype)
    if r >= parts * _TILE:
        bounds = _tile_bounds(r, parts)

        def part(p0: int, p1: int) -> None:
            for p in range(p0, p1):
                np.matmul(a[bounds[p]:bounds[p + 1]], b, out=out[bounds[p]:bounds[p + 1]])
    else:
        bounds = _tile_bounds(n, parts)

        def part(p0: int, p1: int) -> None:
            for p in range(p0, p1):
                c0, c1 = bounds[p], bounds[p + 1]
                np.matmul(a, b[:, c0:c1], out=out[:, c0:c1])

    parallel_for(part, len(bounds) - 1, 1 << 62)
    return out


def _tile_bounds(n: int, parts: int) -> list[int]:
    """``[0, ..., n]``: at most ``parts`` blocks of a multiple of ``_TILE`` (the last one
    takes the rest)."""
    units = n // _TILE
    parts = max(1, min(parts, units))
    return [_TILE * (units * i // parts) for i in range(parts)] + [n]


@kernel("Gemm")
def gemm(a: Array, b: Array, c: Array | None = None, *, alpha: float, beta: float, transA: int,
         transB: int, activation: str, act_alpha: float, act_beta: float) -> Array:
    """alpha * A' @ B' + beta * C (C broadcasts to (M, N)), then the fused activation."""
    a = np.asarray(a)
    a2 = a.T if transA else a
    b2 = np.asarray(b, dtype=a.dtype)
    b2 = b2.T if transB else b2
    if a2.ndim != 2 or b2.ndim != 2 or a2.shape[1] != b2.shape[0]:
        raise ExecutionError(f"Gemm: A' {list(a2.shape)} and B' {list(b2.shape)} do not multiply")
    y = _matmul2d(a2, b2)
    if alpha != 1:
        y *= y.dtype.type(alpha)
    if c is not None and beta != 0:
        cc = np.asarray(c, dtype=y.dtype)
        y += cc if beta == 1 else cc * y.dtype.type(beta)
    return activate_inplace(y, activation, act_alpha, act_beta)


@kernel("MatMul")
def matmul(a: Array, b: Array) -> Array:
    """numpy.matmul (1-D promotion, batch broadcasting), in A's dtype."""
    a, b = np.asarray(a), np.asarray(b, dtype=np.asarray(a).dtype)
    if a.ndim == 2 and b.ndim == 2:
        return _matmul2d(a, b)
    return np.asarray(np.matmul(a, b))


# -- pooling --------------------------------------------------------------------------------

def _pool_geometry(op: str, x: Array, kernel_shape: tuple[int, ...], strides: tuple[int, ...],
                   pads: tuple[int, ...], dilations: tuple[int, ...], ceil_mode: int
                   ) -> tuple[int, int, int, int]:
    """Output size (ho, wo) and the extra bottom/right padding a ceil_mode window needs."""
    if x.ndim != 4 or len(kernel_shape) != 2:
        raise ExecutionError(f"{op}: X {list(x.shape)} must be 4-D with a 2-D kernel_shape")
    h, w = x.shape[2:]
    (kh, kw), (sh, sw), (dh, dw) = kernel_shape, strides, dilations
    ho = pool_out(h, kh, sh, pads[0], pads[2], dh, ceil_mode)
    wo = pool_out(w, kw, sw, pads[1], pads[3], dw, ceil_mode)
    extra_h = max(0, (ho - 1) * sh + dh * (kh - 1) + 1 - (h + pads[0] + pads[2]))
    extra_w = max(0, (wo - 1) * sw + dw * (kw - 1) + 1 - (w + pads[1] + pads[3]))
    return ho, wo, extra_h, extra_w


#: MaxPool of channels-last float32 maps in C where fc.np_ops._epilogue was built with it
#: (tests switch it off to compare with the numpy path)
_C_MAX_POOL = _conv._epilogue_c is not None and hasattr(_conv._epilogue_c, "max_pool")


@functools.lru_cache(maxsize=256)
def _tap_table(size: int, n: int, k: int, s: int, d: int, offset: int) -> Array:
    """(n, taps) int64: for each of ``n`` outputs along an axis of ``size`` inputs, the input
    index each tap reads (``o * s + t * d + offset``), -1 where it reads padding, the taps
    in ``_max_taps``'s order (the ones valid for the most outputs first, else by t; taps
    valid nowhere left out; one column of -1 if none is valid anywhere). Read-only, cached."""
    spans = []
    for t in range(k):
        off = t * d + offset
        lo = max(0, (-off + s - 1) // s)
        hi = min(n, (size - 1 - off) // s + 1)
        if lo < hi:
            spans.append((hi - lo, lo, hi, off))
    spans.sort(key=lambda sp: -sp[0])
    o = np.arange(n)[:, None]
    if not spans:
        tab = np.full((n, 1), -1, dtype=np.int64)
    else:
        lo, hi, off = (np.array([sp[i] for sp in spans]) for i in (1, 2, 3))
        tab = np.where((o >= lo) & (o < hi), o * s + off, -1).astype(np.int64)
    tab.flags.writeable = False
    return tab


def _max_pool_c(x: Array, kernel_shape: tuple[int, ...], strides: tuple[int, ...],
                pads: tuple[int, ...], dilations: tuple[int, ...], ho: int, wo: int,
                low: float) -> Array:
    """``_max_pool_unpadded`` for channels-last float32 ``x``, in C
    (``fc.np_ops._epilogue.max_pool``): per output row, the kh taps along H over whole input
    rows into a row buffer, then the kw taps along W on it, each tap with numpy's maximum
    and in ``_max_taps``'s order along each axis (``_tap_table``), so the same values (a
    maximum does not depend on the order of its operands; ``_max_taps`` orders the taps per
    band, this once per axis, so only which of -0.0 and +0.0, or of two NaN payloads, a tie
    keeps can differ from a banded numpy run). One pass over the input instead of numpy's
    2 * (kh + kw) over it and its row buffer. The output rows are split over fc's pool,
    except while OpenBLAS's idle workers still spin after a multi-threaded GEMM
    (``fc.np_ops.conv``'s rule: a pool thread would fight one for a core): then on the
    calling thread. Measured on ResNet-50's stem MaxPool (112x112x64,
    3x3/2, pads 1), alone, minima of 20: b1 0.80-0.94 -> 0.37 ms, b8 9.0-10.6 -> 3.9 ms; in
    the network (the fused stem, same process, alternated, load ~2.3, minimum / median):
    b1 (50 runs) 1.37 / 1.81 -> 0.48 / 0.62 ms (0.62 / 0.84 with the pool while the workers
    spin), b8 (12 runs) 6.31 / 8.36 -> 3.87 / 4.47 ms; the same logits bits."""
    n, c, h, wd = x.shape
    (kh, kw), (sh, sw), (dh, dw) = kernel_shape, strides, dilations
    htab = _tap_table(h, ho, kh, sh, dh, -pads[0])
    wtab = _tap_table(wd, wo, kw, sw, dw, -pads[1])
    xh = x.transpose(0, 2, 3, 1)
    y = buffers.empty((n, ho, wo, c), x.dtype)
    run = _conv._epilogue_c.max_pool

    def part(r0: int, r1: int) -> None:
        run(xh, y, htab, wtab, low, r0, r1)

    # On the calling thread while OpenBLAS's idle workers still spin (see fc.np_ops.conv)
    spinning = _SPIN_RULE and _blas.since_threaded_gemm() < _conv._SPIN_SECONDS
    parallel_for(part, n * ho, 0 if spinning else 2 * x.nbytes)
    return y.transpose(0, 3, 1, 2)


@kernel("MaxPool")
def max_pool(x: Array, *, kernel_shape: tuple[int, ...], strides: tuple[int, ...],
             pads: tuple[int, ...], dilations: tuple[int, ...], ceil_mode: int) -> Array:
    """Maximum over each window. Padding is the dtype's lowest finite value, so it never
    beats an input, and a window that (with dilations) reads only padding gives -FLT_MAX, as
    onnxruntime does."""
    x = np.asarray(x)
    ho, wo, eh, ew = _pool_geometry("MaxPool", x, kernel_shape, strides, pads, dilations,
                                    ceil_mode)
    low = (np.finfo if x.dtype.kind == "f" else np.iinfo)(x.dtype).min
    if _C_MAX_POOL and x.dtype == np.float32 and is_channels_last(x) and ho > 0 and wo > 0:
        return _max_pool_c(x, kernel_shape, strides, pads, dilations, ho, wo, float(low))
    return _max_pool_unpadded(x, kernel_shape, strides, pads, dilations, ho, wo, low)


@functools.lru_cache(maxsize=256)
def _windows_read_input(h: int, w: int, kernel_shape: tuple[int, ...], strides: tuple[int, ...],
                        pads: tuple[int, ...], dilations: tuple[int, ...], ceil_mode: int) -> bool:
    """Whether every MaxPool window over an (h, w) input has a tap inside the input (none
    reads padding only)."""
    for size, k, s, p0, p1, d in ((h, kernel_shape[0], strides[0], pads[0], pads[2], dilations[0]),
                                 (w, kernel_shape[1], strides[1], pads[1], pads[3], dilations[1])):
        for o in range(pool_out(size, k, s, p0, p1, d, ceil_mode)):
            if not any(0 <= o * s + t * d - p0 < size for t in range(k)):
                return False
    return True


#: Conv activations that commute with a maximum (monotone non-decreasing, exactly)
_MAX_COMMUTES = ("", "relu")


def conv_max_pool(x: Array, w: Array, b: Array | None, conv_attrs: dict, pool_attrs: dict
                  ) -> Array | None:
    """``MaxPool(Conv(x, w, b))`` with the Conv's bias and activation applied after the
    pooling, on the pooled map (a quarter of the Conv's output for ResNet-50's 3x3 stride-2
    MaxPool): the executor's fusion of a Conv read only by a MaxPool
    (``fc.np_ops.interpreter``). The same bits: a maximum commutes with + bias[c] (rounding
    to nearest is monotone: a >= c gives fl(a + b) >= fl(c + b)) and with relu (max(y, 0),
    monotone; it also makes any -0.0 +0.0 either way), so max(fl(a_i + b)) = fl(max(a_i) + b)
    and max(relu(y_i)) = relu(max(y_i)). Only where that holds: activation none or relu,
    float data, and every window reading at least one input (a window of padding only gives
    the lowest value, which + bias and relu would change). None otherwise: run the two
    kernels then. Measured (ResNet-50's stem, same process, alternated, load 1.3-1.4):
    Conv + MaxPool minima b1 6.08 -> 5.16 ms on BLAS's threads, 3.93 -> 3.64 ms on fc's
    pool; b8 36.5 -> 32.1 and 36.3 -> 32.3 ms; the same bits."""
    x, w = np.asarray(x), np.asarray(w)
    act = conv_attrs["activation"]
    if (act not in _MAX_COMMUTES or x.ndim != 4 or w.ndim != 4 or x.dtype.kind != "f"
            or w.dtype != x.dtype or len(pool_attrs["kernel_shape"]) != 2):
        return None
    # the Conv's output size, as the Conv kernel computes it (a misfit: let it raise)
    if w.shape[1] * conv_attrs["group"] != x.shape[1]:
        return None
    ho, wo = _conv._output_hw(x, w, conv_attrs["strides"], conv_attrs["pads"],
                              conv_attrs["dilations"])
    if ho <= 0 or wo <= 0 or not _windows_read_input(
            ho, wo, tuple(pool_attrs["kernel_shape"]), tuple(pool_attrs["strides"]),
            tuple(pool_attrs["pads"]), tuple(pool_attrs["dilations"]),
            pool_attrs["ceil_mode"]):
        return None
    raw = _conv.conv(x, w, None, **{**conv_attrs, "activation": ""})
    y = max_pool(raw, **pool_attrs)
    del raw
    if b is not None or act:
        bias = None if b is None else np.asarray(b, dtype=y.dtype)
        if is_channels_last(y):
            # (N*Ho*Wo, M) rows: the Conv's own epilogue (the same ops on each element)
            _conv._epilogue(y.transpose(0, 2, 3, 1).reshape(-1, y.shape[1]), bias, act, 0.0,
                            0.0)
        else:
            y = _finish(y, bias, act, 0.0, 0.0)
    return y


@kernel("AveragePool")
def average_pool(x: Array, *, kernel_shape: tuple[int, ...], strides: tuple[int, ...],
                 pads: tuple[int, ...], ceil_mode: int, count_include_pad: int) -> Array:
    """Window sum / divisor map (see the module docstring for what the divisor counts)."""
    x = np.asarray(x)
    ho, wo, eh, ew = _pool_geometry("AveragePool", x, kernel_shape, strides, pads, (1, 1),
                                    ceil_mode)
    xp = _pad2d(x, pads[0], pads[1], pads[2] + eh, pads[3] + ew, 0)
    kh, kw = kernel_shape
    y = _window_reduce(xp, np.add, kernel_shape, strides, (1, 1), ho, wo)

    def counts(out: int, k: int, s: int, p0: int, p1: int, size: int) -> Array:
        start = np.arange(out) * s  # in padded coordinates
        if count_include_pad:
            return np.minimum(start + k, size + p0 + p1) - start
        return np.minimum(start + k, p0 + size) - np.maximum(start, p0)

    h, w = x.shape[2:]
    div = np.outer(counts(ho, kh, strides[0], pads[0], pads[2], h),
                   counts(wo, kw, strides[1], pads[1], pads[3], w))
    if x.dtype.kind == "f":
        y /= div.astype(x.dtype)
        return y
    return (y / div).astype(x.dtype)


@kernel("GlobalAveragePool")
def global_average_pool(x: Array) -> Array:
    x = np.asarray(x)
    return np.asarray(x.mean(axis=tuple(range(2, x.ndim)), keepdims=True, dtype=x.dtype))


@kernel("GlobalMaxPool")
def global_max_pool(x: Array) -> Array:
    x = np.asarray(x)
    return np.asarray(x.max(axis=tuple(range(2, x.ndim)), keepdims=True))


# -- normalization --------------------------------------------------------------------------

@kernel("LRN")
def lrn(x: Array, *, size: int, alpha: float, beta: float, bias: float) -> Array:
    """x / (bias + alpha / size * sum of x^2 over channels [c - (size-1)//2, c + size//2]).

    The window is ONNX's (floor of (size-1)/2 before c, ceil after); torch's
    local_response_norm puts the longer half before c, so even sizes differ from torch."""
    x = np.asarray(x)
    c = x.shape[1]
    before = (size - 1) // 2
    padded = np.zeros((x.shape[0], c + size - 1) + x.shape[2:], dtype=x.dtype)
    np.square(x, out=padded[:, before:before + c])
    ssum = padded[:, 0:c].copy()
    for k in range(1, size):
        ssum += padded[:, k:k + c]
    t = x.dtype.type
    ssum *= t(alpha / size)
    ssum += t(bias)
    return x / np.power(ssum, t(beta))


def _normalize(x: Array, axes: tuple[int, ...], epsilon: float) -> Array:
    """(x - mean) / sqrt(var + eps) over ``axes``, two-pass (no E[x^2] - E[x]^2 cancellation)."""
    d = x - x.mean(axis=axes, keepdims=True, dtype=x.dtype)
    var = np.mean(d * d, axis=axes, keepdims=True, dtype=x.dtype)
    d /= np.sqrt(var + x.dtype.type(epsilon))
    return d


@kernel("LayerNormalization")
def layer_norm(x: Array, scale: Array, b: Array | None = None, *, axis: int, epsilon: float
               ) -> Array:
    """Normalize over axes [axis, rank); Scale and B broadcast against x.shape[axis:]."""
    x = np.asarray(x)
    if not -x.ndim <= axis < x.ndim:
        raise ExecutionError(f"LayerNormalization: axis={axis} out of range for rank {x.ndim}")
    y = _normalize(x, tuple(range(axis % x.ndim, x.ndim)), epsilon)
    y *= np.asarray(scale, dtype=x.dtype)
    if b is not None:
        y += np.asarray(b, dtype=x.dtype)
    return y


@kernel("InstanceNormalization")
def instance_norm(x: Array, scale: Array, b: Array, *, epsilon: float) -> Array:
    """Normalize each (n, c) plane over its spatial axes, then per-channel scale + B."""
    x = np.asarray(x)
    y = _normalize(x, tuple(range(2, x.ndim)), epsilon)
    shape = (-1,) + (1,) * (x.ndim - 2)
    y *= np.asarray(scale, dtype=x.dtype).reshape(shape)
    y += np.asarray(b, dtype=x.dtype).reshape(shape)
    return y


# -- softmax --------------------------------------------------------------------------------

def _axis(op: str, axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        raise ExecutionError(f"{op}: axis={axis} out of range for rank {rank}")
    return axis % rank


@kernel("Softmax")
def softmax(x: Array, *, axis: int) -> Array:
    """exp(x - max) / sum along one axis (opset-13 semantics; max-shifted, no overflow)."""
    x = np.asarray(x)
    ax = _axis("Softmax", axis, x.ndim)
    e = x - x.max(axis=ax, keepdims=True)
    np.exp(e, out=e)
    e /= e.sum(axis=ax, keepdims=True, dtype=x.dtype)
    return e


@kernel("LogSoftmax")
def log_softmax(x: Array, *, axis: int) -> Array:
    """(x - max) - log(sum(exp(x - max))) along one axis."""
    x = np.asarray(x)
    ax = _axis("LogSoftmax", axis, x.ndim)
    z = x - x.max(axis=ax, keepdims=True)
    z -= np.log(np.exp(z).sum(axis=ax, keepdims=True, dtype=x.dtype))
    return z

