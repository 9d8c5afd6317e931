"""Normalize what feeds a Gemm into the one form the hardware expects.

1. ``flatten_before_gemm``: a Reshape (``(N, -1)``, ``(0, C)``, or one that only drops
   trailing 1-dims such as ``(N, C, 1, 1) -> (N, C)``) or a Flatten with a non-canonical axis
   that produces Gemm's A is retyped in place into ``Flatten(axis=1)``. Both are row-major
   reshapes, so the rewrite is exact whenever the output shape is ``(x[0], prod(x[1:]))``;
   the output value (name, users) is unchanged, so other users of it are unaffected.
2. ``matmul_add_to_gemm``: ``Add(MatMul(X, W), b)`` with X 2-D (N, K), W a constant
   (K, M) and b a constant (M,) or (1, M) becomes ``Gemm(X, W, b)`` (transB=0): what
   PyTorch's Linear exports at some opsets. ``X @ W + b`` is Gemm's ``alpha*A@B + beta*C``
   with alpha = beta = 1; a fused activation of the Add moves to the Gemm. Refused when the
   MatMul output has other users or is a graph output.

The Add node becomes the Gemm (``retype_node``), so the result keeps its name and users;
the MatMul is erased and its provenance merged into the Gemm.
"""

from __future__ import annotations

import math

from fc.ir.core import Graph, Node
from fc.passes.infra import FusionRule, Match, RewritePass, retype_node

__all__ = ["NormalizeGemmInput", "FlattenBeforeGemm", "MatMulAddToGemm"]


class FlattenBeforeGemm(FusionRule):
    """Reshape/Flatten producing Gemm's A -> Flatten(axis=1)."""

    name = "flatten_before_gemm"
    anchor_ops = ("Gemm",)

    def check(self, graph: Graph, node: Node) -> Match | str:
        a = node.inputs[0]
        p = a.producer
        if p is None or p.op_type not in ("Reshape", "Flatten"):
            return "input A is not produced by a Reshape or Flatten"
        if p.op_type == "Flatten" and p.attrs["axis"] == 1:
            return "already Flatten(axis=1)"
        x = p.inputs[0]
        if x.shape is None or a.shape is None or len(x.shape) < 2:
            return f"{p.op_type} input {x.name!r} is not at least 2-D"
        flat = (x.shape[0], math.prod(x.shape[1:]))
        if a.shape != flat:
            return f"{p.op_type} {p.name!r} gives {list(a.shape)}, not (N, C) = {list(flat)}"
        # Only p changes, and its output keeps its value: other users of it are unaffected.
        return Match(node, [p], reshape=p)

    def rewrite(self, graph: Graph, match: Match) -> None:
        p = match.reshape
        retype_node(p, "Flatten", [p.inputs[0]], {"axis": 1})


class MatMulAddToGemm(FusionRule):
    """Add(MatMul(X, W const), b const) -> Gemm(X, W, b)."""

    name = "matmul_add_to_gemm"
    anchor_ops = ("MatMul",)

    def check(self, graph: Graph, node: Node) -> Match | str:
        x, w = node.inputs
        y = node.output
        if w.const is None or w.const.ndim != 2:
            return f"B {w.name!r} is not a constant 2-D weight"
        if x.shape is None or len(x.shape) != 2:
            return f"A {x.name!r} is not 2-D"
        add = next((u for u in y.users if u.op_type == "Add"), None)
        if add is None:
            return f"MatMul output {y.name!r} feeds {[u.op_type for u in y.users]}, not an Add"
        b = add.inputs[1] if add.inputs[0] is y else add.inputs[0]
        m = w.const.shape[1]
        if b is y or b.const is None or b.const.shape not in ((m,), (1, m)):
            return f"Add's other input {b.name!r} is not a constant ({m},) or (1, {m}) bias"
        return Match(node, [node, add], add=add, bias=b)

    def rewrite(self, graph: Graph, match: Match) -> None:
        node, add, b = match.anchor, match.add, match.bias
        x, w = node.inputs
        if b.const.ndim == 2:
            b = graph.add_const(b.name, b.const.reshape(-1))
        act = {k: add.attrs[k] for k in ("activation", "act_alpha", "act_beta")}
        retype_node(add, "Gemm", [x, w, b], {"transB": 0, **act}, provenance=node.provenance)
        graph.erase_node(node)  # a replaced (1, M) bias stays for dead-code elimination


class NormalizeGemmInput(RewritePass):
    """Canonical Flatten(axis=1) before Gemm; MatMul + bias Add -> Gemm. Count = rewrites."""

    def __init__(self) -> None:
        super().__init__("normalize_gemm_input", [FlattenBeforeGemm(), MatMulAddToGemm()])
