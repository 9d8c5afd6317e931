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
  rows, and the padding copy moves whole rows;
- the bias is a row vector added along the contiguous axis.

The rows are processed in blocks of about ``_BLOCK_BYTES`` of im2col matrix: build the block
(a copy split over the thread pool, ``fc.np_ops._parallel``), one GEMM on it (numpy's BLAS,
its own threads), then bias + activation on the block's output while it is in cache (split
over the pool again). The arithmetic is unchanged: each output is one float32 dot product
of length C*kh*kw computed by BLAS, then + bias, then the activation, as before.

The weights of a kh x kw convolution are reordered once to (kh*kw*C, M), matching the
im2col columns, and cached for the array's lifetime (``_packed_weight``; reordering every
call cost ~15 ms per ResNet-50 run). The original array is made read-only then, so that
writing into it, which would leave the cache stale, raises instead of silently computing
with the old values (replace ``Value.const`` instead); 64 sampled elements are compared on
each use, against writes through another alias of the memory (a torch tensor, a base).

Grouped convolutions (depthwise included) keep the NCHW path: a batched matmul over the
group axis on a strided im2col view (G products of (M/G, K) @ (K, Ho*Wo); measured 1.5-2.3x
faster than multiply-adding kh*kw shifted views for depthwise).
"""

from __future__ import annotations

import threading
import weakref

import numpy as np
from numpy.lib.stride_tricks import as_strided

from fc.errors import ExecutionError
from fc.np_ops import _parallel
from fc.np_ops._parallel import parallel_for
from fc.np_ops.activation import activate_inplace
from fc.np_ops.registry import kernel

__all__ = ["conv", "is_channels_last"]

Array = np.ndarray

#: im2col bytes per block: the block, its GEMM output and the weights stay in L2/L3
_BLOCK_BYTES = 2 << 20
#: but at least this many rows per GEMM, which OpenBLAS needs to run near its peak
_MIN_BLOCK_ROWS = 512
# Grouped path: im2col matrices of a batch in chunks of at most this many bytes, and images
# with fewer output pixels than _FOLD_HW share one GEMM across the batch.
_COLS_BYTES = 8 << 20
_FOLD_HW = 128


def is_channels_last(x: Array) -> bool:
    """Whether 4-D ``x`` (logically NCHW) is stored as a C-contiguous (N, H, W, C) buffer."""
    return x.ndim == 4 and x.transpose(0, 2, 3, 1).flags.c_contiguous


# -- packed weights -------------------------------------------------------------------------

_PACKED: dict[int, tuple[weakref.ref, Array, Array, Array]] = {}
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


def _packed_weight(w: Array) -> Array:
    """``w`` (M, C, kh, kw) as a C-contiguous (kh*kw*C, M) matrix, cached per array. The
    sampled elements are a fingerprint that catches a write into the memory through another
    alias (a torch tensor sharing it, a base array)."""
    key = id(w)
    hit = _PACKED.get(key)
    if hit is not None and hit[0]() is w and (_sample(w, hit[1]) == hit[2]).all():
        return hit[3]
    m = w.shape[0]
    packed = np.ascontiguousarray(w.transpose(2, 3, 1, 0)).reshape(-1, m)
    w.flags.writeable = False  # so that the cache stays true (see the module docstring)
    index = _sample_index(w.shape)
    with _PACKED_LOCK:
        _PACKED[key] = (weakref.ref(w, lambda _, k=key: _PACKED.pop(k, None)), index,
                        _sample(w, index), packed)
    return packed


# -- channels-last path ---------------------------------------------------------------------

def _epilogue(y: Array, b: Array | None, activation: str, alpha: float, beta: float) -> None:
    """In place on a block of (rows, M) outputs: + bias row, then the activation."""
    if b is not None:
        y += b
    if activation:
        r = activate_inplace(y, activation, alpha, beta)
        if r is not y:
            y[...] = r


def _segments(q0: int, q1: int, ho: int) -> list[tuple[int, int, int]]:
    """Output rows ``q0:q1`` of the flattened (N*Ho) row index as (image, h0, h1) pieces."""
    out = []
    while q0 < q1:
        i, h0 = divmod(q0, ho)
        h1 = min(ho, h0 + q1 - q0)
        out.append((i, h0, h1))
        q0 += h1 - h0
    return out


def _copy_rows(dst: Array, src: Array) -> None:
    """``dst[...] = src`` for (rows, ...) arrays, the rows split over the pool."""
    def part(a: int, b: int) -> None:
        dst[a:b] = src[a:b]

    parallel_for(part, dst.shape[0], dst.nbytes)


def _pad_nhwc(xh: Array, top: int, left: int, bottom: int, right: int) -> Array:
    """(N, H, W, C) ``xh`` (any strides) zero-padded on H/W into a new C-contiguous buffer."""
    n, h, w, c = xh.shape
    xp = np.empty((n, h + top + bottom, w + left + right, c), dtype=xh.dtype)
    xp[:, :top] = 0
    xp[:, top + h:] = 0
    xp[:, top:top + h, :left] = 0
    xp[:, top:top + h, left + w:] = 0
    inner = xp[:, top:top + h, left:left + w]
    if n > 1:
        _copy_rows(inner, xh)
    else:
        _copy_rows(inner[0], xh[0])
    return xp


def _conv_channels_last(x: Array, w: Array, b: Array | None, ho: int, wo: int,
                        strides: tuple[int, ...], pads: tuple[int, ...],
                        dilations: tuple[int, ...], activation: str, alpha: float,
                        beta: float) -> Array:
    n, c, h, wd = x.shape
    m, _, kh, kw = w.shape
    (sh, sw), (dh, dw) = strides, dilations
    k = c * kh * kw
    xh = x.transpose(0, 2, 3, 1)
    y = np.empty((n, ho, wo, m), dtype=x.dtype)
    y2 = y.reshape(n * ho * wo, m)
    bias = None if b is None else np.asarray(b, dtype=x.dtype)

    pointwise = kh == kw == 1 and not any(pads)
    if pointwise:
        view = xh[:, :sh * (ho - 1) + 1:sh, :sw * (wo - 1) + 1:sw, None, None, :]
        wmat = w.reshape(m, c).T  # a transposed view: BLAS reads it as is
    else:
        xp = _pad_nhwc(xh, *pads)
        s_n, s_h, s_w, s_c = xp.strides
        view = as_strided(xp, (n, ho, wo, kh, kw, c),
                          (s_n, s_h * sh, s_w * sw, s_h * dh, s_w * dw, s_c), writeable=False)
        wmat = _packed_weight(w)
    # A 1x1 stride-1 conv of a channels-last input multiplies the input rows in place.
    direct = pointwise and sh == sw == 1 and xh.flags.c_contiguous

    block_rows = max(_MIN_BLOCK_ROWS, _BLOCK_BYTES // (k * x.itemsize))
    step = max(1, block_rows // wo)  # in output rows (of Wo pixels each)
    total = n * ho
    cols = None if direct else np.empty((min(step, total) * wo, k), dtype=x.dtype)
    a_all = xh.reshape(n * h * wd, c) if direct else None
    epilogue = bias is not None or bool(activation)
    done: Array | None = None  # the previous block's output, its epilogue still to run
    for q0 in range(0, total, step):
        q1 = min(total, q0 + step)
        r0, r1 = q0 * wo, q1 * wo
        copies: list[tuple[Array, Array]] = []
        if direct:
            a = a_all[r0:r1]
        else:
            a = cols[:r1 - r0]
            blk = a.reshape(r1 - r0, kh, kw, c)
            r = 0
            for i, h0, h1 in _segments(q0, q1, ho):
                rows = (h1 - h0) * wo
                copies.append((blk[r:r + rows].reshape(h1 - h0, wo, kh, kw, c), view[i, h0:h1]))
                r += rows
        # One trip to the pool per block: this block's im2col and the last block's epilogue.
        _split_work(copies, done, bias, activation, alpha, beta)
        out = y2[r0:r1]
        np.matmul(a, wmat, out=out)
        done = out if epilogue else None
    _split_work([], done, bias, activation, alpha, beta)
    return y.transpose(0, 3, 1, 2)


def _split_work(copies: list[tuple[Array, Array]], out: Array | None, bias: Array | None,
                activation: str, alpha: float, beta: float) -> None:
    """``dst[...] = src`` for each pair, and the epilogue on ``out`` (if any), each split
    into row ranges over the pool, in one parallel loop (one wait instead of two)."""
    nbytes = sum(d.nbytes for d, _ in copies) + (0 if out is None else 2 * out.nbytes)
    if nbytes == 0:
        return
    units = _parallel.num_workers() if nbytes >= _parallel.MIN_PARALLEL_BYTES else 1

    def part(u0: int, u1: int) -> None:
        for u in range(u0, u1):
            for dst, src in copies:
                a, b = dst.shape[0] * u // units, dst.shape[0] * (u + 1) // units
                dst[a:b] = src[a:b]
            if out is not None:
                a, b = out.shape[0] * u // units, out.shape[0] * (u + 1) // units
                _epilogue(out[a:b], bias, activation, alpha, beta)

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
    (sh, sw), (dh, dw) = strides, dilations
    ho = (h + pads[0] + pads[2] - dh * (kh - 1) - 1) // sh + 1
    wo = (wd + pads[1] + pads[3] - dw * (kw - 1) - 1) // sw + 1
    if ho <= 0 or wo <= 0:
        raise ExecutionError(f"Conv: kernel {kh}x{kw} larger than padded input {h}x{wd}")
    args = (strides, pads, dilations, activation, act_alpha, act_beta)
    if group == 1:
        return _conv_channels_last(x, w, b, ho, wo, *args)
    return _conv_grouped(x, w, b, ho, wo, group, *args)
