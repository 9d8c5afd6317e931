"""What a TensorFlow lowering sees: IR values as TF tensors whose axis order is recorded, and
the weights, constant or trainable.

The IR is channels-first; TensorFlow on CPU convolves and pools channels-last (its default
MaxPool kernel refuses NCHW on CPU). Rather than wrapping every layer in Transposes, a lowering
returns its output in whatever axis order suits TensorFlow and says which: an :class:`Lt`
holds ``tensor = np.transpose(ir_value, perm)``. The next lowering asks for the order it needs
(:meth:`LowerContext.arrange`); a weight is rearranged once in numpy (the .pb stores HWIO
kernels), an activation only where two orders meet (a Reshape after a channels-last Conv), so
a plain CNN runs channels-last from input to output with no Transpose at all.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from fc.errors import ReconstructError
from fc.ir.core import Node

__all__ = ["Lt", "LowerContext", "WeightSource", "ReconstructError", "NHWC", "identity",
           "inverse", "tf_name", "common_perm", "reduce_axes"]

#: tensor axis j holds IR axis NHWC[j]: an NCHW value stored channels-last
NHWC = (0, 2, 3, 1)


def identity(rank: int) -> tuple[int, ...]:
    return tuple(range(rank))


def inverse(perm: Sequence[int]) -> tuple[int, ...]:
    out = [0] * len(perm)
    for j, p in enumerate(perm):
        out[p] = j
    return tuple(out)


_BAD_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.\-/]")


def tf_name(name: str) -> str:
    """``name`` made a valid TensorFlow op name (``[A-Za-z0-9.][A-Za-z0-9_.-/]*``)."""
    name = _BAD_NAME_CHARS.sub("_", name).strip("/") or "node"
    return name if re.match(r"[A-Za-z0-9.]", name) else "n" + name


class Lt:
    """One IR value in the TF graph.

    ``tensor`` is the IR array with its axes permuted: tensor axis j is IR axis ``perm[j]``.
    A weight has ``const`` (its IR array) and no tensor: a lowering takes it in the
    arrangement it needs through :meth:`LowerContext.weight`, so the .pb holds one
    rearranged constant instead of a constant and a Transpose.
    """

    __slots__ = ("tensor", "perm", "const", "name", "shape", "dtype")

    def __init__(self, tensor: Any, perm: Sequence[int], *, shape: Sequence[int],
                 dtype: str, name: str = "", const: np.ndarray | None = None):
        self.tensor = tensor
        self.perm = tuple(perm)
        self.const = const
        self.name = name
        #: the IR (static) shape and dtype; the batch dim may differ at run time
        self.shape = tuple(shape)
        self.dtype = dtype

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_const(self) -> bool:
        return self.const is not None

    def __repr__(self) -> str:
        kind = "const " if self.is_const else ""
        return f"Lt({kind}{self.name!r}, ir shape {list(self.shape)}, perm {self.perm})"


class WeightSource(Protocol):
    """Where weights come from: constants (a frozen graph) or variables (the trainable form).

    ``get`` returns ``np.transpose(array, perm).reshape(shape)`` as a TF tensor (or
    variable) for the IR weight ``name``."""

    def get(self, name: str, array: np.ndarray, perm: tuple[int, ...], shape: tuple[int, ...],
            *, trainable: bool) -> Any: ...


class LowerContext:
    """One IR node being lowered: arrangement of its inputs, weights, outputs, errors."""

    def __init__(self, tf: Any, node: Node | None, weights: WeightSource):
        #: the ``tensorflow`` module
        self.tf = tf
        #: the IR node being lowered (``None`` while arranging the graph's outputs)
        self.node = node
        self._weights = weights

    # -- errors -----------------------------------------------------------------------------
    def error(self, msg: str) -> ReconstructError:
        where = (f"node {self.node.name!r} ({self.node.op_type})" if self.node is not None
                 else "graph outputs")
        return ReconstructError(f"{where}: {msg}")

    # -- inputs -----------------------------------------------------------------------------
    def const(self, x: Lt, what: str) -> np.ndarray:
        """The array of a constant input (e.g. Gather's indices)."""
        if x.const is None:
            raise self.error(f"{what} {x.name!r} must be a constant, but it is computed")
        return x.const

    def weight(self, x: Lt, perm: Sequence[int] | None = None, shape: Sequence[int] | None = None,
               *, trainable: bool = True) -> Any:
        """``x`` as ``np.transpose(ir, perm).reshape(shape)``: a weight is arranged in numpy
        (or stored so, as a variable); a computed tensor is arranged in the graph."""
        perm = identity(x.rank) if perm is None else tuple(perm)
        target = tuple(x.shape[p] for p in perm)
        shape = target if shape is None else tuple(shape)
        if x.const is not None:
            return self._weights.get(x.name, x.const, perm, shape,
                                     trainable=trainable and x.const.dtype.kind == "f")
        t = self.arrange(x, perm)
        return t if shape == target else self.tf.reshape(t, shape)

    def arrange(self, x: Lt, perm: Sequence[int]) -> Any:
        """The tensor of ``x`` with tensor axis j holding IR axis ``perm[j]``."""
        perm = tuple(perm)
        if len(perm) != x.rank:
            raise self.error(f"cannot arrange the {x.rank}-D {x.name!r} as {perm}")
        if x.const is not None:
            return self.weight(x, perm)
        if perm == x.perm:
            return x.tensor
        # tensor_x axis k is IR axis x.perm[k]; the result's axis j must be IR axis perm[j]
        where = inverse(x.perm)
        order = [where[p] for p in perm]
        # Moving only axes of size 1 keeps the data's order: a reshape, not a transpose (the
        # (N, 1, 1, C) of a global pool into (N, C, 1, 1)). The batch axis counts as sized.
        kept = [k for k in order if x.perm[k] == 0 or x.shape[x.perm[k]] != 1]
        if kept == sorted(kept):
            return self.tf.reshape(x.tensor, [-1 if p == 0 else x.shape[p] for p in perm])
        return self.tf.transpose(x.tensor, order)

    def ir(self, x: Lt) -> Any:
        """``x`` in the IR's own axis order."""
        return self.arrange(x, identity(x.rank))

    def nhwc(self, x: Lt) -> Any:
        """A 4-D ``x`` channels-last, as TensorFlow's CPU convolutions and pools want it."""
        if x.rank != 4:
            raise self.error(f"{x.name!r} is {x.rank}-D; this lowering needs 4-D NCHW")
        return self.arrange(x, NHWC)

    def broadcast(self, x: Lt, perm: Sequence[int]) -> Any:
        """``x`` ready to broadcast against a tensor of rank ``len(perm)`` arranged as
        ``perm``: missing leading axes become 1s first (numpy broadcasting), then the axes are
        arranged. Scalars stay scalars."""
        rank = len(perm)
        if x.const is not None and x.const.size == 1:
            return self.weight(x, shape=())
        if x.rank == 0:
            return x.tensor
        k = rank - x.rank
        if k < 0:
            raise self.error(f"{x.name!r} ({x.rank}-D) has more axes than the result ({rank}-D)")
        if x.const is not None:
            full = x.const.reshape((1,) * k + x.const.shape)
            return self.weight(Lt(None, identity(rank), shape=full.shape, dtype=x.dtype,
                                  name=x.name, const=full), perm)
        if k == 0:
            return self.arrange(x, perm)
        t = self.tf.reshape(self.ir(x), (1,) * k + tuple(-1 if d is None else d
                                                        for d in self._dims(x)))
        return self.tf.transpose(t, list(perm))

    def _dims(self, x: Lt) -> list[int | None]:
        """IR dims of a computed ``x`` for a reshape: the batch dim (0) stays dynamic."""
        return [None if i == 0 else d for i, d in enumerate(x.shape)]

    # -- outputs ----------------------------------------------------------------------------
    def out(self, tensor: Any, perm: Sequence[int] | None = None, index: int = 0) -> Lt:
        """Output ``index`` of the node: ``tensor`` holding the IR value arranged as ``perm``
        (default: the IR's own order)."""
        v = self.node.outputs[index]
        rank = len(v.shape) if v.shape is not None else tensor.shape.rank
        return Lt(tensor, identity(rank) if perm is None else perm, shape=v.shape or (),
                  dtype=v.dtype or "float32", name=v.name)


def common_perm(xs: Sequence[Lt | None], rank: int) -> tuple[int, ...]:
    """The axis order an elementwise result takes: that of its first computed input of the
    result's rank (so that input needs no rearranging), else the IR's."""
    for x in xs:
        if x is not None and x.const is None and x.rank == rank:
            return x.perm
    return identity(rank)


def reduce_axes(perm: tuple[int, ...], axes: Sequence[int], keepdims: int
                ) -> tuple[list[int], tuple[int, ...]]:
    """The tensor axes to reduce for IR ``axes`` (``()`` = all) of a value arranged as
    ``perm``, and the arrangement of the result."""
    rank = len(perm)
    ir_axes = sorted({a % rank for a in axes}) if axes else list(range(rank))
    where = inverse(perm)
    tensor_axes = sorted(where[a] for a in ir_axes)
    if keepdims:
        return tensor_axes, perm
    kept = [p for p in perm if p not in ir_axes]  # IR axes left, in tensor order
    renumber = {a: i for i, a in enumerate(sorted(kept))}
    return tensor_axes, tuple(renumber[a] for a in kept)
