"""Kernels: elementwise ops (unary math, broadcasting binary/variadic), reductions, Cast and
the inference no-ops Identity and Dropout (the activations are in ``activation``).

Each kernel returns a new ndarray (never a numpy scalar, never a view of an input) of its
input's dtype; only Identity and Dropout hand back the input itself, which is safe because
no kernel mutates its inputs. Floating-point exceptions are silenced (``np.errstate``): as
in numpy/torch, 1/0 is inf, log(0) is -inf, sqrt(-1) is NaN, exp(1000) is inf.

Cast follows ``ndarray.astype``: float -> integer truncates toward zero, float -> bool is
``x != 0`` (NaN -> True). NaN, inf and values outside the target's range have no defined
result in ONNX (C++ ``static_cast``); on x86-64 numpy and onnxruntime give the same bits
(float -> int32/int64 overflow = INT_MIN; narrower integers take the low bits of the int32
conversion, e.g. -1.5 -> uint8 is 255, 300.2 -> int8 is 44), other CPUs may saturate.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import reduce

import numpy as np

from fc.errors import ExecutionError
from fc.np_ops import _parallel
from fc.np_ops.activation import _dense_flat, activate_inplace, erf
from fc.np_ops.registry import kernel

try:  # the conv epilogue's row loops in C (np_ops/_epilogue.c), optional at install
    from fc.np_ops import _epilogue as _epilogue_c
except ImportError:  # pragma: no cover - built wherever there is a C compiler
    _epilogue_c = None

__all__: list[str] = []

Array = np.ndarray


def _out(y: object, dtype: np.dtype) -> Array:
    """``y`` as an ndarray of ``dtype`` (ufuncs return numpy scalars for 0-d inputs)."""
    return np.asarray(y, dtype=dtype)


# -- unary ------------------------------------------------------------------------------

_UNARY: dict[str, Callable[[Array], Array]] = {
    "Exp": np.exp,
    "Log": np.log,
    "Sqrt": np.sqrt,
    "Abs": np.abs,
    "Neg": np.negative,
    "Erf": erf,
    "Reciprocal": np.reciprocal,
}


def _unary_kernel(fn: Callable[[Array], Array]) -> Callable[[Array], Array]:
    def run(x: Array) -> Array:
        x = np.asarray(x)
        with np.errstate(all="ignore"):
            return _out(fn(x), x.dtype)

    run.__doc__ = f"Elementwise {getattr(fn, '__name__', 'function')}, in x's dtype."
    return run


for _op, _fn in _UNARY.items():
    kernel(_op)(_unary_kernel(_fn))


@kernel("Identity")
def identity(x: Array) -> Array:
    return x


@kernel("Dropout")
def dropout(x: Array, *, ratio: float) -> Array:
    """At inference Dropout is the identity; ``ratio`` only matters in training."""
    return x


@kernel("PRelu")
def prelu(x: Array, slope: Array) -> Array:
    """x if x >= 0 else slope * x; slope broadcasts to x ((C,1,1) is per-channel)."""
    x, slope = np.asarray(x), np.asarray(slope)
    with np.errstate(all="ignore"):
        y = np.where(x < 0, x * slope.astype(x.dtype, copy=False), x)
    if y.shape != x.shape:
        raise ExecutionError(f"PRelu: slope {list(slope.shape)} does not broadcast to X "
                             f"{list(x.shape)}")
    return _out(y, x.dtype)


# -- binary -----------------------------------------------------------------------------

def _div(a: Array, b: Array) -> Array:
    """True division for floats; integer division truncates toward zero (C/ONNX), unlike
    numpy's floor division."""
    if not np.issubdtype(np.result_type(a, b), np.integer):
        return np.true_divide(a, b)
    q = np.floor_divide(a, b)
    return q + ((np.remainder(a, b) != 0) & ((a < 0) != (b < 0))).astype(q.dtype)


_BINARY: dict[str, Callable[[Array, Array], Array]] = {
    "Sub": np.subtract,
    "Mul": np.multiply,
    "Div": _div,
    # Pow's result has the base's type even when the exponent's differs (ONNX).
    "Pow": np.power,
}


def _binary_kernel(fn: Callable[[Array, Array], Array]) -> Callable[[Array, Array], Array]:
    def run(a: Array, b: Array) -> Array:
        a, b = np.asarray(a), np.asarray(b)
        with np.errstate(all="ignore"):
            return _out(fn(a, b), a.dtype)

    run.__doc__ = f"Broadcasting {getattr(fn, '__name__', 'function')}, in A's dtype."
    return run


for _op, _fn2 in _BINARY.items():
    kernel(_op)(_binary_kernel(_fn2))


def _memory_rows(x: Array) -> Array | None:
    """``x``'s elements in memory order (``activation._dense_flat``) as rows of its innermost
    axis (a channels-last map: (N * H * W, C)), or None when they do not fill a buffer."""
    flat = _dense_flat(x)
    if flat is None or x.ndim == 0:
        return None
    return flat.reshape(-1, x.shape[-1] if x.flags.c_contiguous else x.shape[1])


def add_blocks(a: Array, b: Array, y: Array, activation: str, act_alpha: float,
               act_beta: float, post: Callable[[Array], None] | None = None) -> Array:
    """y = activation(a + b) for same-shape arrays, block by block over the pool (``y`` may
    be ``a`` or ``b``: each block reads its elements before writing them): the Add kernel's
    path for two feature maps, and the quantized simulation's Add into its rounded input,
    with ``post(block)`` then called in place on each block while it is in cache (its
    output's fake quantization: elementwise, so the blocks do not change its result). A
    ``post`` with ``c_params`` (``fc.quant.qparams.fake_quant_step``) summing into ``a`` or
    ``b`` runs in C instead, each row added, activated and rounded in one pass
    (``fc.np_ops._epilogue.run``: the conv epilogue's add and relu, numpy's to the bit)."""
    fq = getattr(post, "c_params", None)
    if (fq is not None and _epilogue_c is not None and activation in ("", "relu")
            and a.dtype == b.dtype == y.dtype == np.float32 and a.strides == b.strides
            and (y is a or y is b) and _memory_rows(a) is not None):
        relu, into = activation == "relu", y is b

        def rows(ix: tuple[slice, ...]) -> None:
            _epilogue_c.run(_memory_rows(a[ix]), None, _memory_rows(b[ix]), into, relu, None,
                            fq)

        _parallel.parallel_blocks(rows, y)
        return y

    def block(ix: tuple[slice, ...]) -> None:
        with np.errstate(all="ignore"):
            yb = np.add(a[ix], b[ix], out=y[ix])
            r = activate_inplace(yb, activation, act_alpha, act_beta)
            if r is not yb:
                yb[...] = r
        if post is not None:
            post(yb)

    _parallel.parallel_blocks(block, y)
    return y


@kernel("Add")
def add(a: Array, b: Array, *, activation: str, act_alpha: float, act_beta: float) -> Array:
    """Broadcasting A + B, then the fused activation (a residual Add + Relu is one op)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape == b.shape and a.dtype == b.dtype and a.nbytes >= _parallel.MIN_PARALLEL_BYTES:
        # A residual add (+ Relu) of two feature maps: memory-bound, split over the pool.
        y = np.empty_like(a)  # a's memory layout (channels-last after a Conv)
        return add_blocks(a, b, y, activation, act_alpha, act_beta)
    with np.errstate(all="ignore"):
        y = _out(np.add(a, b), a.dtype)
    return activate_inplace(y, activation, act_alpha, act_beta)


# -- variadic ---------------------------------------------------------------------------

def _mean(*xs: Array) -> Array:
    return np.true_divide(reduce(np.add, xs), len(xs))


_VARIADIC: dict[str, Callable[..., Array]] = {
    "Max": lambda *xs: reduce(np.maximum, xs),
    "Min": lambda *xs: reduce(np.minimum, xs),
    "Sum": lambda *xs: reduce(np.add, xs),
    "Mean": _mean,
}


def _variadic_kernel(fn: Callable[..., Array]) -> Callable[..., Array]:
    def run(*xs: Array) -> Array:
        if not xs:
            raise ExecutionError("variadic op needs at least one input")
        xs = tuple(np.asarray(x) for x in xs)
        with np.errstate(all="ignore"):
            y = fn(*xs)
        # One input: fn returned it unchanged; hand back a copy, not the input.
        return np.array(y, dtype=xs[0].dtype, copy=len(xs) == 1)

    return run


for _op, _fn3 in _VARIADIC.items():
    kernel(_op)(_variadic_kernel(_fn3))


# -- reductions -------------------------------------------------------------------------

def _reduce_kernel(fn: Callable[..., Array], accumulate: bool) -> Callable[..., Array]:
    def run(x: Array, *, axes: tuple[int, ...], keepdims: int) -> Array:
        x = np.asarray(x)
        kw = {}
        if accumulate and x.dtype.kind == "f":
            # float16 sums accumulate in float32 (as numpy's mean does), rounded once.
            kw["dtype"] = np.float32 if x.dtype == np.float16 else x.dtype
        with np.errstate(all="ignore"):
            y = fn(x, axis=tuple(axes) if axes else None, keepdims=bool(keepdims), **kw)
        return _out(y, x.dtype)

    run.__doc__ = "Reduce over ``axes`` (() = every axis), keeping them as 1s with keepdims."
    return run


# np.sum promotes small integers to int64 and np.mean returns float64 for integers: both
# are cast back to the input's dtype (integer sums wrap, integer means truncate).
kernel("ReduceSum")(_reduce_kernel(np.sum, accumulate=True))
kernel("ReduceMean")(_reduce_kernel(np.mean, accumulate=True))
kernel("ReduceMax")(_reduce_kernel(np.max, accumulate=False))


# -- Cast -------------------------------------------------------------------------------

@kernel("Cast")
def cast(x: Array, *, to: str) -> Array:
    """``x.astype(to)``: see the module docstring for out-of-range values."""
    x = np.asarray(x)
    try:
        dtype = np.dtype(to)
    except TypeError:
        raise ExecutionError(f"Cast attribute 'to'={to!r} is not a numpy dtype name") from None
    with np.errstate(all="ignore"):
        return x.astype(dtype)
