"""Fuse an activation into the layer before it: ``act(layer(x))`` becomes one node whose
``activation`` / ``act_alpha`` / ``act_beta`` attributes name it (``FUSED_ACTIVATIONS``).

Layers: Conv, ConvTranspose, Gemm, Add (a residual sum) and Scale. Activations and their
attributes (``fc.np_ops.activation`` computes the fused form)::

    Relu                        -> relu
    Clip(min, max)              -> clip, alpha=min, beta=max   (Clip(0, FLT_MAX) -> relu)
    LeakyRelu(alpha)            -> leaky_relu, alpha
    Elu(alpha)                  -> elu, alpha
    Sigmoid, Tanh, HardSwish    -> sigmoid, tanh, hard_swish
    HardSigmoid(alpha, beta)    -> hard_sigmoid, alpha, beta
    SiLU, Mul(z, Sigmoid(z))    -> silu                 (z * sigmoid(z) = silu(z))
    Gelu(approximate)           -> gelu, alpha = 1 for "tanh", 0 for "none"

The fusion is exact: the fused kernel applies the same function to the same float32 layer
output. It is refused when the layer already has an activation, when the layer output has
other users or is a graph output (those would lose the pre-activation tensor), or, for the
SiLU pattern, when ``z`` has users besides that Sigmoid and Mul. The fused node takes over
the activation's output value (consumers and graph outputs keep their names); its
provenance is the union.
"""

from __future__ import annotations

from fc.ir.core import Graph, Node
from fc.ir.schema import FLT_MAX
from fc.passes.fold_channel_affine import describe_source, use_reason
from fc.passes.infra import FusionPass, FusionRule, absorb_into, producer_of

__all__ = ["FuseActivation", "ACTIVATION_OPS", "FUSABLE_LAYERS", "fuse_activation_pass",
           "activation_of"]

FUSABLE_LAYERS = ("Conv", "ConvTranspose", "Gemm", "Add", "Scale")
ACTIVATION_OPS = ("Relu", "Clip", "LeakyRelu", "Elu", "Sigmoid", "Tanh", "HardSigmoid",
                  "HardSwish", "SiLU", "Gelu")


def activation_of(node: Node) -> tuple[str, float, float]:
    """The fused-activation triple (name, act_alpha, act_beta) of a standalone activation."""
    op, a = node.op_type, node.attrs
    if op == "Relu":
        return "relu", 0.0, 0.0
    if op == "Clip":
        if a["min"] == 0.0 and a["max"] >= FLT_MAX:
            return "relu", 0.0, 0.0
        return "clip", a["min"], a["max"]
    if op in ("LeakyRelu", "Elu"):
        return ("leaky_relu" if op == "LeakyRelu" else "elu"), a["alpha"], 0.0
    if op == "HardSigmoid":
        return "hard_sigmoid", a["alpha"], a["beta"]
    if op == "Gelu":
        return "gelu", 1.0 if a["approximate"] == "tanh" else 0.0, 0.0
    simple = {"Sigmoid": "sigmoid", "Tanh": "tanh", "HardSwish": "hard_swish", "SiLU": "silu",
              "Mul": "silu"}
    return simple[op], 0.0, 0.0


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

    def _match(self, graph: Graph, node: Node) -> tuple[Node, list[Node]] | str:
        if node.op_type == "Mul":
            parts = self._silu_parts(node)
            if parts is None:
                return "not z * Sigmoid(z)"
            sig, k = parts
            z, s = node.inputs[k], sig.output
            absorbed = [sig, node]
        else:
            z, absorbed = node.inputs[0], [node]
            if node.op_type == "Sigmoid":
                for user in node.output.users:
                    if user.op_type == "Mul" and z in user.inputs:
                        return f"part of z * Sigmoid(z) with Mul {user.name!r}: handled there as silu"
        layer = producer_of(z, FUSABLE_LAYERS)
        if layer is None:
            return f"input {z.name!r} comes from {describe_source(z)}, not one of {list(FUSABLE_LAYERS)}"
        if layer.attrs["activation"]:
            return f"{layer.op_type} {layer.name!r} already has activation {layer.attrs['activation']!r}"
        if node.op_type == "Mul":
            if z in graph.outputs or s in graph.outputs:
                return f"{z.name!r} or {s.name!r} is a graph output"
            if len(z.uses) != 2 or {id(u) for u in z.users} != {id(sig), id(node)}:
                return f"{layer.op_type} output {z.name!r} has users besides the Sigmoid and the Mul"
            if len(s.uses) != 1:
                return f"Sigmoid output {s.name!r} has other users"
        else:
            reason = use_reason(graph, z, node)
            if reason:
                return f"{layer.op_type} output {reason}"
        return layer, absorbed

    def check(self, graph: Graph, node: Node) -> str | None:
        m = self._match(graph, node)
        return m if isinstance(m, str) else None

    def rewrite(self, graph: Graph, node: Node) -> None:
        layer, absorbed = self._match(graph, node)
        name, alpha, beta = activation_of(node)
        layer.attrs["activation"], layer.attrs["act_alpha"], layer.attrs["act_beta"] = (
            name, float(alpha), float(beta))
        absorb_into(graph, layer, absorbed)


def fuse_activation_pass() -> FusionPass:
    return FusionPass(FuseActivation())
