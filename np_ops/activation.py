"""The maths of the activations and their fused form: the ``activation`` attribute that
Conv/ConvTranspose/Gemm/Scale/Add carry after fusion runs the standalone op's kernel
(``apply_activation``; the kernels are in ``activation_kernels``), so each function has one
numpy implementation and the two forms agree to the bit.

This module registers no kernel, so other kernel modules can import from it in any order
(a registration triggers the import of every built-in kernel module).

``erf`` does not rely on scipy (not a dependency of fc): it is W. J. Cody's rational
Chebyshev approximation ("Rational Chebyshev approximations for the error function",
Math. Comp. 1969, the netlib ``specfun/CALERF`` coefficients), evaluated vectorized in
float64 (relative error ~1e-16, far below float32's ulp).
"""

from __future__ import annotations

import math

import numpy as np

from fc.errors import ExecutionError
from fc.ir.activations import ACTIVATIONS
from fc.np_ops.registry import KERNELS

__all__ = ["activate_inplace", "apply_activation", "relu_inplace", "sigmoid", "gelu", "erf", "erfc"]

Array = np.ndarray


def sigmoid(x: np.ndarray) -> np.ndarray:
    # exp of a non-positive number only: no overflow for large |x|.
    x = np.asarray(x)
    with np.errstate(under="ignore"):
        e = np.exp(-np.abs(x))
    one = np.asarray(1, x.dtype)
    return np.asarray(np.where(x >= 0, one / (one + e), e / (one + e)), dtype=x.dtype)


# Cody's coefficients: erf on |x| <= 0.46875 (A/B), erfc on (0.46875, 4] (C/D) and on
# (4, XBIG) in 1/x^2 (P/Q). Horner order as in CALERF: the last entry of A/C/P multiplies
# the highest power.
_A = (3.16112374387056560e00, 1.13864154151050156e02, 3.77485237685302021e02,
      3.20937758913846947e03, 1.85777706184603153e-1)
_B = (2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03,
      2.84423683343917062e03)
_C = (5.64188496988670089e-1, 8.88314979438837594e00, 6.61191906371416295e01,
      2.98635138197400131e02, 8.81952221241769090e02, 1.71204761263407058e03,
      2.05107837782607147e03, 1.23033935479799725e03, 2.15311535474403846e-8)
_D = (1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02,
      1.62138957456669019e03, 3.29079923573345963e03, 4.36261909014324716e03,
      3.43936767414372164e03, 1.23033935480374942e03)
_P = (3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1,
      1.60837851487422766e-2, 6.58749161529837803e-4, 1.63153871373020978e-2)
_Q = (2.56852019228982242e00, 1.87295284992346047e00, 5.27905102951428412e-1,
      6.05183413124413191e-2, 2.33520497626869185e-3)
_THRESH = 0.46875
_XBIG = 26.543  # erfc(x) underflows float64 beyond this
_SQRPI = 0.56418958354775628695  # 1/sqrt(pi)


def _rational(t: np.ndarray, num: tuple[float, ...], den: tuple[float, ...]) -> np.ndarray:
    """CALERF's loop: num[-1]*t^n + num[0]*t^(n-1) + ... over t^n + den[0]*t^(n-1) + ..."""
    xnum, xden = num[-1] * t, t
    for a, b in zip(num[:len(den) - 1], den[:-1]):
        xnum = (xnum + a) * t
        xden = (xden + b) * t
    return (xnum + num[len(den) - 1]) / (xden + den[-1])


def _erf_erfc64(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(erf(x), erfc(x)) in float64, each with full relative accuracy (erfc for x > 0 too)."""
    x = np.asarray(x, np.float64)
    with np.errstate(all="ignore"):
        y = np.abs(x)
        small = y <= _THRESH
        ys = np.where(small, y, 0.0)
        erf_small = np.where(small, x, 0.0) * _rational(ys * ys, _A, _B)
        # erfc(|x|) for |x| > THRESH; clamped so inf/huge inputs do no inf - inf.
        yb = np.clip(np.where(small, 1.0, y), _THRESH, 27.0)
        mid = _rational(np.minimum(yb, 4.0), _C, _D)
        yl = np.maximum(yb, 4.0)
        z = 1.0 / (yl * yl)
        big = (_SQRPI - z * _rational(z, _P, _Q)) / yl
        # exp(-y^2) as exp(-ysq^2) * exp(-(y-ysq)(y+ysq)) with ysq = y rounded down to 1/16:
        # the rounding error of y*y would otherwise be amplified by exp.
        ysq = np.trunc(yb * 16.0) / 16.0
        expo = np.exp(-ysq * ysq) * np.exp(-(yb - ysq) * (yb + ysq))
        erfc_abs = np.where(yb <= 4.0, mid, big) * expo
        erfc_abs = np.where(y >= _XBIG, 0.0, erfc_abs)
        erfc_abs = np.where(np.isnan(x), np.nan, erfc_abs)
        neg = x < 0
        erf_large = (0.5 - erfc_abs) + 0.5
        erf_v = np.where(small, erf_small, np.where(neg, -erf_large, erf_large))
        erfc_v = np.where(small, 1.0 - erf_small, np.where(neg, 2.0 - erfc_abs, erfc_abs))
    return erf_v, erfc_v


def erf(x: np.ndarray) -> np.ndarray:
    """The error function, computed in float64 and returned in ``x``'s dtype."""
    x = np.asarray(x)
    return np.asarray(_erf_erfc64(x)[0], dtype=x.dtype)


def erfc(x: np.ndarray) -> np.ndarray:
    """1 - erf(x) without cancellation for large positive x, in ``x``'s dtype."""
    x = np.asarray(x)
    return np.asarray(_erf_erfc64(x)[1], dtype=x.dtype)


def gelu(x: np.ndarray, approximate: bool = False) -> np.ndarray:
    """x * Phi(x), computed in float64 and rounded once to ``x``'s dtype.

    The exact form uses ``0.5 * x * erfc(-x / sqrt(2))`` rather than ``1 + erf(x / sqrt(2))``,
    which cancels to zero digits for x << 0.
    """
    x = np.asarray(x)
    x64 = x.astype(np.float64)
    with np.errstate(all="ignore"):
        if approximate:
            c = math.sqrt(2 / math.pi)
            y = 0.5 * x64 * (1.0 + np.tanh(c * (x64 + 0.044715 * x64 ** 3)))
        else:
            y = 0.5 * x64 * _erf_erfc64(-x64 / math.sqrt(2))[1]
    return np.asarray(y, dtype=x.dtype)


def apply_activation(x: Array, activation: str, alpha: float = 0.0, beta: float = 0.0) -> Array:
    """``x`` through the named fused activation ("" = identity), in ``x``'s dtype: the
    standalone op's kernel with the attributes ``(alpha, beta)`` stand for."""
    if not activation:
        return x
    entry = ACTIVATIONS.get(activation)
    if entry is None:
        raise ExecutionError(f"activation {activation!r} not one of {sorted(ACTIVATIONS)}")
    return KERNELS.get(entry.op_type)(np.asarray(x), **entry.to_attrs(alpha, beta))


#: elements of the zero operand of ``relu_inplace`` (256 KiB of float32, an L2-sized chunk)
_ZERO_CHUNK = 1 << 16
_ZEROS: dict[np.dtype, Array] = {}


def _dense_flat(y: Array) -> Array | None:
    """A 1-D view of ``y``'s elements in memory order when they fill their buffer densely
    (C-contiguous, or a channels-last NCHW view), else None."""
    if y.flags.c_contiguous:
        return y.reshape(-1)
    if y.ndim == 4:
        t = y.transpose(0, 2, 3, 1)
        if t.flags.c_contiguous:
            return t.reshape(-1)
    return None


def relu_inplace(y: Array) -> Array:
    """``y = max(y, 0)`` in place, the Relu kernel's maths (NaN stays NaN, -0.0 becomes +0.0,
    bit for bit the same as ``np.maximum(y, 0)``). A float array stored densely is taken as
    a flat view in chunks of ``_ZERO_CHUNK`` against a zero array of that length: numpy
    1.26's ``maximum`` runs its contiguous-contiguous SIMD loop about 2-4x faster than its
    array-scalar loop (measured on this machine: a (784, 256) float32 block 110 -> 29 us flat,
    52 us with a zero row broadcast along the contiguous axis; a fused conv epilogue bias +
    relu on (3136, 256), 0.81 -> 0.46 ms when also chunked)."""
    flat = _dense_flat(y) if y.dtype.kind == "f" and y.size >= 1024 else None
    if flat is None:
        if (y.dtype.kind == "f" and y.ndim and y.strides[-1] == y.itemsize
                and 64 <= y.shape[-1] <= _ZERO_CHUNK):
            # rows of a wider matrix (a column slice): a zero row along the contiguous axis
            return np.maximum(y, _zeros(y.dtype)[:y.shape[-1]], out=y)
        return np.maximum(y, y.dtype.type(0), out=y)
    zeros = _zeros(y.dtype)
    n = flat.size
    for a in range(0, n, _ZERO_CHUNK):
        f = flat[a:a + _ZERO_CHUNK]
        np.maximum(f, zeros[:f.size], out=f)
    return y


def _zeros(dtype: np.dtype) -> Array:
    z = _ZEROS.get(dtype)
    if z is None:
        z = _ZEROS[dtype] = np.zeros(_ZERO_CHUNK, dtype=dtype)
        z.flags.writeable = False
    return z


def activate_inplace(y: Array, activation: str, alpha: float = 0.0, beta: float = 0.0) -> Array:
    """``apply_activation`` for a fresh array the caller owns: relu and clip overwrite ``y``
    instead of allocating a second output (the same maths; relu: ``relu_inplace``)."""
    if activation == "relu":
        return relu_inplace(y)
    if activation == "clip":
        return np.clip(y, y.dtype.type(alpha), y.dtype.type(beta), out=y)
    return apply_activation(y, activation, alpha, beta)
