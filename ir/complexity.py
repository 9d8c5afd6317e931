"""Model complexity: parameters, non-zeros, sparsity, dense and sparse FLOPs per layer.

Counting convention (the one of He et al. 2016 and torchvision's "GFLOPS" column):
**one multiply-accumulate (MAC) counts as one FLOP**, and FLOPs are those of the layers the
accelerator's MAC array runs: Conv, ConvTranspose, Gemm and MatMul. Bias adds, activations,
pooling and normalization are not counted. ResNet-50 v1.5/v1b at 224x224 comes to
4,089,184,256 (torchvision: 4.09 GFLOPS); ResNet-50 v1 (stride on the 1x1) to 3,857,973,248
(He et al.: 3.8e9).

- dense FLOPs: every product of a weight with an input, zero or not.
  Conv: N*Ho*Wo * |W| (|W| = M * C/group * kh * kw); ConvTranspose: N*H*W * |W| (every input
  pixel meets every weight of its group); Gemm/MatMul: rows * |B| for a weight B.
- sparse FLOPs: the same with |W| replaced by nnz(W): only products with a non-zero weight.
- params / nnz: elements and non-zeros of every constant input of a layer (weights, biases,
  BN statistics); sparsity = 1 - nnz / params. The summary sums the per-layer columns.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import asdict, dataclass

import numpy as np

from fc.ir.core import Graph, Node
from fc.ir.serialize import atomic_write

__all__ = ["LayerComplexity", "Complexity", "complexity", "summary_line", "format_table",
           "write_csv", "write_json", "MAC_OPS"]

MAC_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


@dataclass
class LayerComplexity:
    name: str
    op: str
    output_shape: tuple[int, ...]
    params: int
    nnz: int
    sparsity: float
    dense_flops: float
    sparse_flops: float


@dataclass
class Complexity:
    layers: list[LayerComplexity]
    nnz: int
    params: int
    sparsity: float
    dense_flops: float
    sparse_flops: float


def _nnz(a: np.ndarray) -> int:
    return int(np.count_nonzero(a))


def _flops(node: Node) -> tuple[float, float]:
    """(dense, sparse) MACs of one node; (0, 0) for ops that are not MAC layers."""
    op = node.op_type
    if op not in MAC_OPS:
        return 0.0, 0.0
    out = node.outputs[0].shape
    if op == "Conv":
        w = node.inputs[1]
        positions = out[0] * math.prod(out[2:])
    elif op == "ConvTranspose":
        w = node.inputs[1]
        x = node.inputs[0].shape
        positions = x[0] * math.prod(x[2:])
    elif op == "Gemm":
        a, w = node.inputs[0], node.inputs[1]
        positions = a.shape[1] if node.attrs["transA"] else a.shape[0]
        if w.const is None and a.const is not None:  # weight on the left: count it there
            w, positions = a, out[1]
    else:  # MatMul
        a, w = node.inputs[0], node.inputs[1]
        positions = math.prod(out) // (w.shape[-1] if len(w.shape) > 1 else 1)
        if len(w.shape) > 2:  # batched weights: each batch slice meets its own rows
            positions //= math.prod(w.shape[:-2])
    dense = float(positions * math.prod(w.shape))
    sparse = float(positions * _nnz(w.const)) if w.const is not None else dense
    return dense, sparse


def complexity(graph: Graph) -> Complexity:
    layers = []
    for node in graph:
        consts = [v.const for v in dict.fromkeys(v for v in node.inputs if v is not None)
                  if v.const is not None]
        params = sum(int(c.size) for c in consts)
        nnz = sum(_nnz(c) for c in consts)
        dense, sparse = _flops(node)
        layers.append(LayerComplexity(
            node.name, node.op_type, tuple(node.outputs[0].shape or ()), params, nnz,
            1.0 - nnz / params if params else 0.0, dense, sparse))
    params = sum(la.params for la in layers)
    nnz = sum(la.nnz for la in layers)
    return Complexity(layers, nnz, params, 1.0 - nnz / params if params else 0.0,
                      float(sum(la.dense_flops for la in layers)),
                      float(sum(la.sparse_flops for la in layers)))


def summary_line(c: Complexity) -> str:
    return (f"nnz: {c.nnz}, sparsity: {c.sparsity}, dense_flops: {c.dense_flops}, "
            f"sparse_flops: {c.sparse_flops}")


_COLUMNS = ("name", "op", "output_shape", "params", "nnz", "sparsity", "dense_flops", "sparse_flops")


def format_table(c: Complexity) -> str:
    rows = [[la.name, la.op, "x".join(map(str, la.output_shape)), str(la.params), str(la.nnz),
             f"{la.sparsity:.4f}", f"{la.dense_flops:.0f}", f"{la.sparse_flops:.0f}"]
            for la in c.layers]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(_COLUMNS)]
    fmt = "  ".join(f"{{:<{w}}}" if i < 3 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return "\n".join([fmt.format(*_COLUMNS), *(fmt.format(*r) for r in rows)])


def write_csv(c: Complexity, path: str | os.PathLike) -> None:
    with atomic_write(path, "w") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(_COLUMNS)
        for la in c.layers:
            w.writerow([la.name, la.op, "x".join(map(str, la.output_shape)), la.params, la.nnz,
                        la.sparsity, la.dense_flops, la.sparse_flops])


def write_json(c: Complexity, path: str | os.PathLike) -> None:
    doc = {"summary": {k: v for k, v in asdict(c).items() if k != "layers"},
           "layers": [asdict(la) for la in c.layers]}
    with atomic_write(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
