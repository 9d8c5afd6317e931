"""Fold an explicit constant Pad over the spatial dims into the Conv / pool that reads it.

For NCHW ``Pad(pads=(0, 0, t, l, 0, 0, b, r), mode="constant", value=v)`` followed by a layer
with its own pads ``(t0, l0, b0, r0)``, the layer's pads become ``(t0+t, l0+l, b0+b, r0+r)``
when padding with ``v`` equals what the layer pads with:

* Conv (any group, stride, dilation): pads with 0, so ``v == 0``.
* AveragePool with ``count_include_pad=1``: pad elements are zeros *and* counted in the
  divisor, exactly like the explicit Pad's elements, so ``v == 0``. With
  ``count_include_pad=0`` and no pads of its own, every element it sees is real, so the fold
  sets ``count_include_pad=1``; with pads of its own it is refused (the divisor would mix).
* MaxPool pads with -inf, so ``v <= -FLT_MAX`` folds. ``v <= 0`` also folds when the input is
  known non-negative (``fc.ir.activations.is_non_negative``: produced by Relu, Sigmoid,
  HardSigmoid, Abs, Clip(0 <= min, max) or a layer with such a fused activation, or by an
  activation that keeps a non-negative input so): every window holds at least one real
  element >= 0 >= v, so the pad never wins. Only without dilation: a dilated window may hold
  no real element.

A Pad read by several such layers folds into all of them (and disappears) when every one
accepts. The fold is refused, with the reason, for reflect/edge modes (the layers pad with a
constant), pads on the batch or channel dims, negative pads (crops), a padded tensor that is
a graph output or used as a weight, another pad value, or when the folded layer would no
longer match its schema (pool pads must stay below the kernel) or would change its output
shape (ceil_mode pools count the last window from the end of the *padded* input).
"""

from __future__ import annotations

from fc.errors import FcError
from fc.ir.activations import is_non_negative
from fc.ir.core import Graph, Node
from fc.ir.schema import FLT_MAX, TensorType, get_schema
from fc.passes.infra import FusionPass, FusionRule, Match

__all__ = ["FoldPad", "fold_pad_pass"]

TARGETS = ("Conv", "AveragePool", "MaxPool")


def _spatial_pads(pads: tuple[int, ...]) -> tuple[int, int, int, int]:
    """NCHW Pad pads -> (top, left, bottom, right)."""
    return pads[2], pads[3], pads[6], pads[7]


def _new_attrs(pad: Node, user: Node) -> dict:
    add = _spatial_pads(pad.attrs["pads"])
    attrs = dict(user.attrs)
    attrs["pads"] = tuple(p + q for p, q in zip(user.attrs["pads"], add))
    if user.op_type == "AveragePool":
        attrs["count_include_pad"] = 1
    return attrs


class FoldPad(FusionRule):
    """``Pad(constant) -> Conv / AveragePool / MaxPool`` becomes the layer with bigger pads."""

    name = "fold_pad"
    anchor_ops = ("Pad",)

    def _user_reason(self, pad: Node, user: Node, index: int) -> str | None:
        value, x = pad.attrs["value"], pad.inputs[0]
        if index != 0:
            return "reads the padded tensor as a weight"
        if user.op_type not in TARGETS:
            return f"is not one of {list(TARGETS)}"
        if user.op_type == "Conv" and value != 0.0:
            return f"pad value {value} is not 0 (Conv pads with zeros)"
        if user.op_type == "AveragePool":
            if value != 0.0:
                return f"pad value {value} is not 0 (AveragePool pads with zeros)"
            if not user.attrs["count_include_pad"] and any(user.attrs["pads"]):
                return "count_include_pad=0 with pads of its own: the divisor would change"
        if user.op_type == "MaxPool":
            if tuple(user.attrs["dilations"]) != (1, 1):
                return "dilated MaxPool: a window may see only padding"
            if value > -FLT_MAX and not (value <= 0.0 and is_non_negative(x)):
                why = "is not <= -FLT_MAX" if value > 0 else (
                    f"and input {x.name!r} may be negative (not known >= 0)")
                return f"pad value {value} {why}: the pad could win the max where -inf would not"
        attrs = _new_attrs(pad, user)
        ins = [TensorType(x.shape, x.dtype)] + [TensorType(v.shape, v.dtype)
                                                 for v in user.inputs[1:] if v is not None]
        try:
            out = get_schema(user.op_type).infer(*ins, **attrs)
        except (FcError, ValueError, IndexError, ZeroDivisionError) as e:
            return f"folded pads {list(attrs['pads'])} are invalid: {e}"
        if tuple(out.shape) != user.output.shape:
            return (f"folded pads {list(attrs['pads'])} change the output shape from "
                    f"{user.output.shape} to {out.shape}")
        return None

    def check(self, graph: Graph, node: Node) -> Match | str:
        mode, pads, x, y = node.attrs["mode"], node.attrs["pads"], node.inputs[0], node.output
        if mode != "constant":
            return f"mode {mode!r} is not constant (layers pad with a constant)"
        if x.shape is None or len(x.shape) != 4:
            return f"input {x.name!r} is not 4-D NCHW (shape {x.shape})"
        if any(pads[i] for i in (0, 1, 4, 5)):
            return f"pads {list(pads)} pad the batch or channel dims"
        if any(p < 0 for p in pads):
            return f"pads {list(pads)} crop (negative pads)"
        if not y.uses:
            return f"padded tensor {y.name!r} has no users"
        for user, i in y.uses:
            reason = self._user_reason(node, user, i)
            if reason:
                return f"user {user.name!r} ({user.op_type}) {reason}"
        return Match(node, [node, *y.users])  # y is the intermediate: not a graph output

    def rewrite(self, graph: Graph, match: Match) -> None:
        node = match.anchor
        x, y = node.inputs[0], node.output
        for user in y.users:
            user.attrs = _new_attrs(node, user)
            user.set_input(0, x)
            user.add_provenance(node.provenance)
        graph.erase_node(node)


def fold_pad_pass() -> FusionPass:
    return FusionPass(FoldPad())
