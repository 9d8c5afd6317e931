"""Quantization parameters of one tensor and the affine maps they define.

A tensor ``x`` is quantized with a scale ``s > 0``, an integer zero point ``z`` and an
integer range ``[qmin, qmax]``, per tensor or per channel along ``axis``:

    q = clamp(round(x / s) + z, qmin, qmax)        x^ = (q - z) * s

**Rounding** (the one mode fc's simulation uses everywhere): ``round`` is round-half-to-even
(``np.rint``), as ONNX QuantizeLinear, onnxruntime and ``torch.fake_quantize_*`` do. The
arithmetic is float32 with a true division ``x / s`` (ONNX's definition; torch multiplies by
``1 / s`` instead, TensorFlow's FakeQuant rounds half up on ``(x - min) / s``): those oracles
agree with fc except where ``x / s`` lies within a float32 rounding error of a tie, where they
may differ by one step. The integer kernels (``fc.np_ops.integer``) requantize with gemmlowp's
fixed-point rounding by definition; see there.

Storage: at most 8 bits in int8/uint8, at most 16 bits in int16/uint16, biases in int32 (int64
when the input and weight bits add up to more than 16: a 16-bit layer's accumulator is wider).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["QParams", "storage_dtype", "fake_quant", "fake_quant_step", "quantize", "dequantize",
           "INT32_RANGE", "INT64_RANGE"]

INT32_RANGE = (-(2 ** 31), 2 ** 31 - 1)
INT64_RANGE = (-(2 ** 63), 2 ** 63 - 1)


def storage_dtype(qmin: int, qmax: int) -> np.dtype:
    """The smallest integer dtype holding [qmin, qmax] (int8/uint8, int16/uint16, int32)."""
    for dt in (np.int8, np.uint8, np.int16, np.uint16, np.int32, np.int64):
        info = np.iinfo(dt)
        if info.min <= qmin and qmax <= info.max:
            return np.dtype(dt)
    raise ValueError(f"no integer dtype holds [{qmin}, {qmax}]")


@dataclass(frozen=True)
class QParams:
    """Scale and zero point (scalars, or 1-D along ``axis``), the range, and for power-of-two
    strategies the exponent ``shift`` (``scale == 2**-shift``)."""

    scale: np.ndarray            # float32, shape () or (C,)
    zero_point: np.ndarray       # storage dtype, same shape as scale
    qmin: int
    qmax: int
    axis: int | None = None      # None: per tensor
    shift: np.ndarray | None = None  # int8, same shape as scale

    def __post_init__(self) -> None:
        s = np.asarray(self.scale, np.float32)
        if not np.all(np.isfinite(s)) or np.any(s <= 0):
            raise ValueError(f"scale must be finite and positive, got {s}")
        object.__setattr__(self, "scale", s)
        object.__setattr__(self, "zero_point", np.asarray(self.zero_point, self.dtype))
        if (self.axis is None) != (s.ndim == 0):
            raise ValueError(f"axis={self.axis} does not fit a scale of shape {s.shape}")

    @property
    def dtype(self) -> np.dtype:
        return storage_dtype(self.qmin, self.qmax)

    @property
    def per_channel(self) -> bool:
        return self.axis is not None

    def broadcast(self, arr: np.ndarray, ndim: int) -> np.ndarray:
        """``arr`` (scalar or (C,)) shaped to broadcast against a rank-``ndim`` tensor."""
        if self.axis is None:
            return arr
        shape = [1] * ndim
        shape[self.axis % ndim] = -1
        return arr.reshape(shape)


def _work_dtype(p: QParams) -> type:
    """float32, except for int32 (biases): float32 cannot hold 2^31 - 1, the clamp bound."""
    return np.float64 if p.qmax > 2 ** 24 else np.float32


def quantize(x: np.ndarray, p: QParams) -> np.ndarray:
    """clamp(rint(x / s) + z, qmin, qmax) in p's storage dtype."""
    x = np.asarray(x, _work_dtype(p))
    s = p.broadcast(p.scale, x.ndim)
    z = p.broadcast(p.zero_point.astype(np.float32), x.ndim)
    q = np.atleast_1d(np.rint(x / s))
    q += z
    np.clip(q, p.qmin, p.qmax, out=q)
    return q.astype(p.dtype).reshape(x.shape)


def dequantize(q: np.ndarray, p: QParams) -> np.ndarray:
    """(q - z) * s in float32."""
    q = np.asarray(q)
    s = p.broadcast(p.scale, q.ndim)
    z = p.broadcast(p.zero_point.astype(np.float32), q.ndim)
    y = q.astype(np.float32)
    y -= z
    y *= s
    return y


_BLOCK = 1 << 16  # elements per block of the per-tensor fake_quant (in L2 between its steps)


def _flat(a: np.ndarray) -> np.ndarray | None:
    """``a``'s elements in memory order as a 1-D view (the executor's channels-last views
    included), or None when that would need a copy."""
    r = a.ravel(order="K")
    return r if np.may_share_memory(r, a) else None


def fake_quant(x: np.ndarray, p: QParams, *, overwrite: bool = False,
               nonneg: bool = False) -> np.ndarray:
    """dequantize(quantize(x)) without the integer array: the same float32 operations in the
    same order, so the result is bit-identical to a Quantize -> Dequantize pair. (A zero
    point of 0 is neither added nor subtracted: q + 0 - 0 is exact, so that is the same.)

    Per tensor, a large ``x`` is done in cache-sized blocks over fc's thread pool (each block
    divided, rounded, clamped and scaled while it is in cache: one read and one write of
    the tensor instead of four of each), into ``x`` itself with ``overwrite`` (the caller
    owns ``x`` and does not read it again: no new array, no page faults). ``nonneg``: the
    caller knows every value of ``x`` is >= 0 or NaN (a ReLU's output), so no block needs
    the lower clamp (x / s >= 0 rounds to >= 0, and + z >= qmin; a NaN stays that NaN either
    way) and its min reduction is skipped: the same bits, one pass fewer per block."""
    x = np.asarray(x, np.float32)
    if p.axis is None and x.size >= 2 * _BLOCK:
        y = x if overwrite else np.empty_like(x)
        fx, fy = _flat(x), _flat(y)
        if fx is not None and fy is not None and y.strides == x.strides:
            _fake_quant_blocks(fx, fy, p, nonneg)
            return y
    s = p.broadcast(p.scale, x.ndim)
    y = np.atleast_1d(np.divide(x, s, dtype=np.float32))
    np.rint(y, out=y)
    if p.zero_point.any():
        z = p.broadcast(p.zero_point.astype(np.float32), x.ndim)
        y += z
        np.clip(y, p.qmin, p.qmax, out=y)
        y -= z
    else:
        np.clip(y, p.qmin, p.qmax, out=y)
    y *= s
    return y.reshape(x.shape)


def _fake_quant_blocks(x: np.ndarray, y: np.ndarray, p: QParams, nonneg: bool = False) -> None:
    """``fake_quant``'s steps on 1-D ``x`` into ``y`` (which may be ``x``), block by block;
    the clamp as maximum then minimum (what ``np.clip`` computes, NaN included), each skipped
    in a block where it would change nothing (the maximum in every block with ``nonneg``)."""
    from fc.np_ops._parallel import parallel_for

    step = fake_quant_step(p, nonneg)

    def work(b0: int, b1: int) -> None:
        for i in range(b0 * _BLOCK, min(b1 * _BLOCK, x.size), _BLOCK):
            step(x[i:i + _BLOCK], y[i:i + _BLOCK])

    parallel_for(work, -(-x.size // _BLOCK), 2 * x.nbytes)


def fake_quant_step(p: QParams, nonneg: bool = False):
    """``step(xb, yb)``: the blocked ``fake_quant``'s operations (per tensor ``p``) on the
    float32 block ``xb`` into ``yb`` (same shape, ``xb`` itself when omitted; any strides):
    every step is elementwise, so blocks of any shape give the bits of ``fake_quant``. The
    simulation's Conv epilogue (``fc.np_ops.conv.conv_post``) and residual Add
    (``fc.np_ops.elementwise.add_blocks``) call it in place on output blocks, or run its
    ``c_params`` in C."""
    if p.axis is not None:
        raise ValueError("fake_quant_step is per tensor")
    s = p.scale
    lo, hi = np.float32(p.qmin), np.float32(p.qmax)
    z = p.zero_point.astype(np.float32) if p.zero_point.any() else None
    nonneg = nonneg and int(p.zero_point) >= p.qmin

    def step(xb: np.ndarray, yb: np.ndarray | None = None) -> None:
        if yb is None:
            yb = xb
        np.divide(xb, s, out=yb)
        np.rint(yb, out=yb)
        if z is not None:
            yb += z
        # the clamp only where a value is past a bound (a block of a ReLU output never
        # is below 0): a min or max reduction is cheaper than np.maximum/np.minimum; a
        # block with a NaN (its reductions are NaN) is clamped
        if not nonneg and not yb.min() >= lo:
            np.maximum(yb, lo, out=yb)
        if not yb.max() <= hi:
            np.minimum(yb, hi, out=yb)
        if z is not None:
            yb -= z
        yb *= s

    # The same operations in C (csrc/fc_epilogue.h's fq_one: fc.np_ops._gemm's ``fq``, a
    # Conv's output rounded in registers before its one store, and fc.np_ops._epilogue's):
    # s, z, the bounds, whether the lower clamp applies. There the clamp is applied to every
    # value, here only in a block that needs it:
    # the same values, except that a -0.0 in (-0.5 s, 0) with lo = 0 and z = 0 comes out
    # +0.0 there (as np.clip and a real QuantizeLinear -> DequantizeLinear give it) and
    # -0.0 here in a block no other value needed clamping in.
    step.c_params = (float(s), float(z) if z is not None else 0.0, float(lo), float(hi),
                     not nonneg)
    return step
