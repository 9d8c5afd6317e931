"""The hardware op set: the closed list of ops the accelerator's C model executes.

``IR_fused_for_CModel`` should contain only these; anything else left after compilation is
listed in a warning (never dropped silently). The README carries the same list.
"""

from __future__ import annotations

from fc.ir.activations import ACTIVATIONS
from fc.ir.core import Graph

__all__ = ["HARDWARE_OPS", "non_hardware_ops"]

HARDWARE_OPS: frozenset[str] = frozenset({
    # MAC-array layers, each with an optional fused activation (+ residual Add)
    "Conv", "ConvTranspose", "Gemm", "MatMul", "Scale",
    # pooling
    "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
    # elementwise units: every activation the layers can fuse (fc.ir.activations) also runs
    # standalone where it cannot fuse
    "Add", "Mul", "PRelu", *(a.op_type for a in ACTIVATIONS.values()),
    # normalization and output layers
    "LRN", "Softmax", "LayerNormalization",
    # data movement
    "Concat", "Split", "Slice", "Reshape", "Flatten", "Transpose", "Pad", "Resize",
    "DepthToSpace", "SpaceToDepth",
})


def non_hardware_ops(graph: Graph) -> dict[str, list[str]]:
    """Op type -> node names for every node outside ``HARDWARE_OPS``."""
    out: dict[str, list[str]] = {}
    for node in graph:
        if node.op_type not in HARDWARE_OPS:
            out.setdefault(node.op_type, []).append(node.name)
    return out
