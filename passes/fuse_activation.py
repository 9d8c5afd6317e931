"""Fuse an activation into the layer before it: ``act(layer(x))`` becomes one node whose
``activation`` / ``act_alpha`` / ``act_beta`` attributes name it.

The activations and their fused forms are the table ``fc.ir.activations.ACTIVATIONS``
(``fc.np_ops.activation`` computes the fused form with the standalone op's kernel)::

    Relu                        -> relu
    Clip(min, max)              -> clip, alpha=min, beta=max   (Clip(0, FLT_MAX) -> relu)
    LeakyRelu(alpha)            -> leaky_relu, alpha
    Elu(alpha)                  -> elu, alpha
    Sigmoid, Tanh, HardSwish    -> sigmoid, tanh, hard_swish
    HardSigmoid(alpha, beta)    -> hard_sigmoid, alpha, beta
    SiLU, Mul(z, Sigmoid(z))    -> silu                 (z * sigmoid(z) = silu(z))
    Gelu(approximate)           -> gelu, alpha = 1 for "tanh", 0 for "none"

The layers are the ops whose schema carries the fused-activation attributes (Conv,
ConvTranspose, Gemm, Scale and the residual Add: ``fc.ir.activations.fused_layers``).

The fusion is exact: the fused kernel applies the same function to the same float32 layer
output. It is refused when the layer already has an activation, or when the layer output (or,
for the SiLU pattern, the Sigmoid's output) has users outside the match or is a graph output
(those would lose the pre-activation tensor). The fused node takes over the activation's
output value (consumers and graph outputs keep their names); its provenance is the union.
"""

from __future__ import annotations

from fc.ir.activations import ACTIVATIONS, fused_form, fused_layers
from fc.ir.core import Graph, Node
from fc.passes.fold_channel_affine import describe_source
from fc.passes.infra import FusionPass, FusionRule, Match, absorb_into, producer_of

__all__ = ["FuseActivation", "ACTIVATION_OPS", "FUSABLE_LAYERS", "fuse_activation_pass"]

FUSABLE_LAYERS = fused_layers()
ACTIVATION_OPS = tuple(a.op_type for a in ACTIVATIONS.values())


class FuseActivation(FusionRule):
    """``layer -> activation`` (or ``z * Sigmoid(z)``) becomes the layer with ``activation``."""

    name = "fuse_activation"
    anchor_ops = (*ACTIVATION_OPS, "Mul")

    @staticmethod
    def _silu_parts(node: Node) -> tuple[Node, int] | None:
        """For ``Mul(z, Sigmoid(z))`` (either order): the Sigmoid node and z's input slot."""
        for k in (0, 1):
            sig = producer_of(node.inputs[1 - k], "Sigmoid")
            if sig is not None and sig.inputs[0] is node.inputs[k]:
                return sig, k
        return None

    def check(self, graph: Graph, node: Node) -> Match | str:
        if node.op_type == "Mul":
            parts = self._silu_parts(node)
            if parts is None:
                return "not z * Sigmoid(z)"
            sig, k = parts
            z, absorbed, form = node.inputs[k], [sig, node], ("silu", 0.0, 0.0)
        else:
            z, absorbed, form = node.inputs[0], [node], fused_form(node.op_type, node.attrs)
            if node.op_type == "Sigmoid":
                for user in node.output.users:
                    if user.op_type == "Mul" and z in user.inputs:
                        return f"part of z * Sigmoid(z) with Mul {user.name!r}: handled there as silu"
        layer = producer_of(z, FUSABLE_LAYERS)
        if layer is None:
            return f"input {z.name!r} comes from {describe_source(z)}, not one of {list(FUSABLE_LAYERS)}"
        if layer.attrs["activation"]:
            return f"{layer.op_type} {layer.name!r} already has activation {layer.attrs['activation']!r}"
        return Match(node, [layer, *absorbed], layer=layer, absorbed=absorbed, form=form)

    def rewrite(self, graph: Graph, match: Match) -> None:
        layer = match.layer
        name, alpha, beta = match.form
        layer.attrs["activation"], layer.attrs["act_alpha"], layer.attrs["act_beta"] = (
            name, float(alpha), float(beta))
        absorb_into(graph, layer, match.absorbed)


def fuse_activation_pass() -> FusionPass:
    return FusionPass(FuseActivation())
