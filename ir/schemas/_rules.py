"""Small helpers shared by shape rules."""

from __future__ import annotations

import math
from collections.abc import Sequence

from fc.errors import SchemaError

__all__ = ["broadcast", "norm_axis", "conv_out", "pool_out", "check"]


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise SchemaError(msg)


def broadcast(*shapes: Sequence[int]) -> tuple[int, ...]:
    """numpy/ONNX multidirectional broadcasting of shapes."""
    rank = max(len(s) for s in shapes)
    out = []
    for i in range(rank):
        dims = {s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0}
        dims.discard(1)
        check(len(dims) <= 1, f"shapes {[tuple(s) for s in shapes]} do not broadcast")
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def norm_axis(axis: int, rank: int, what: str = "axis") -> int:
    check(-rank <= axis < rank, f"{what}={axis} out of range for rank {rank}")
    return axis % rank


def conv_out(size: int, k: int, stride: int, pad_begin: int, pad_end: int, dilation: int) -> int:
    out = (size + pad_begin + pad_end - dilation * (k - 1) - 1) // stride + 1
    check(out > 0, f"kernel {k} (dilation {dilation}) larger than padded input {size}")
    return out


def pool_out(size: int, k: int, stride: int, pad_begin: int, pad_end: int, dilation: int,
             ceil_mode: int) -> int:
    """Pooled size; with ceil_mode the last window must start inside input or left pad."""
    span = size + pad_begin + pad_end - dilation * (k - 1) - 1
    check(span >= 0, f"kernel {k} (dilation {dilation}) larger than padded input {size}")
    if not ceil_mode:
        return span // stride + 1
    out = math.ceil(span / stride) + 1
    if (out - 1) * stride >= size + pad_begin:
        out -= 1
    return out
