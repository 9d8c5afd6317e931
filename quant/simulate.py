"""Running a quantized IR, and the lockstep runner behind the per-layer reports.

``SimInterpreter`` runs ``IR_quantized_for_CModel`` with the golden executor; nodes whose
inputs are all constants (the weights' ``DequantizeLinear``) are computed once per
interpreter, not per batch.

``Lockstep`` runs the *float* fused graph and, node by node, the same node two more ways
from the ``QuantSpec``: **accumulated** (on the quantized network's own values, i.e. what
the quantized IR computes) and **isolated** (on the float inputs, fake-quantized: only this
node quantized). Only live tensors of each of the three are kept (dead ones are freed as the
executor frees its own), so a report over many images streams.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from fc.ir.core import Graph, Node
from fc.np_ops import Interpreter
from fc.quant.qparams import QParams, fake_quant
from fc.quant.quantize import QuantSpec, fake_quant_output

__all__ = ["SimInterpreter", "Lockstep", "LayerObserver"]

# called with (node, float outputs, accumulated outputs, isolated outputs)
LayerObserver = Callable[[Node, tuple[np.ndarray, ...], tuple[np.ndarray, ...],
                          tuple[np.ndarray, ...]], None]


class SimInterpreter(Interpreter):
    """The golden executor with constant subgraphs (dequantized weights) cached, and each
    QuantizeLinear -> DequantizeLinear pair of an activation computed as one ``fake_quant``
    (bit-identical, without the integer array in between), unless an observer wants to see
    the integers."""

    def __init__(self, graph: Graph, **kw: Any):
        super().__init__(graph, **kw)
        self._cache: dict[str, tuple[np.ndarray, ...]] = {}
        self._const_nodes = {n.name for n in graph
                             if n.inputs and all(v is None or v.const is not None for v in n.inputs)}
        self._pairs: set[str] = set()   # QuantizeLinear nodes fused with their DequantizeLinear
        self._passthrough: set[str] = set()
        if self.observer is None and not self.overrides:
            outputs = {v.name for v in graph.outputs}
            for n in graph:
                users = n.output.users if n.op_type == "QuantizeLinear" else []
                if (len(users) == 1 and users[0].op_type == "DequantizeLinear"
                        and n.output.name not in outputs and users[0].inputs[1] is n.inputs[1]
                        and users[0].inputs[2] is n.inputs[2]):
                    self._pairs.add(n.name)
                    self._passthrough.add(users[0].name)

    def run_node(self, node: Node, args: list[np.ndarray | None]) -> tuple[np.ndarray, ...]:
        if node.name in self._const_nodes:
            out = self._cache.get(node.name)
            if out is None:
                out = self._cache[node.name] = super().run_node(node, args)
            return out
        if node.name in self._pairs:
            x, s, z = args
            a = node.attrs
            p = QParams(s, z, a["qmin"], a["qmax"], None if np.ndim(s) == 0 else a["axis"] % x.ndim)
            return (fake_quant(x, p),)
        if node.name in self._passthrough:
            return (args[0],)
        return super().run_node(node, args)


class Lockstep(Interpreter):
    """Float, accumulated-quantized and isolated-quantized runs of one graph in one pass."""

    def __init__(self, graph: Graph, spec: QuantSpec, layer_observer: LayerObserver, *,
                 isolated: bool = True, **kw: Any):
        super().__init__(graph, **kw)
        self.spec = spec
        self.layer_observer = layer_observer
        self.isolated = isolated
        self._weights: dict[tuple[str, int], np.ndarray] = {}
        for node in graph:
            for i, _ in enumerate(node.inputs):
                w = spec.dequantized_weight(node, i)
                if w is not None:
                    self._weights[(node.name, i)] = w
        self._uses: dict[str, int] = {}
        for node in graph:
            for v in node.inputs:
                if v is not None and v.const is None:
                    self._uses[v.name] = self._uses.get(v.name, 0) + 1
        self._keep = {v.name for v in graph.outputs}
        self._qenv: dict[str, np.ndarray] = {}
        self._left: dict[str, int] = {}

    def run(self, inputs: Mapping[str, Any] | np.ndarray, intermediate: bool = False
            ) -> dict[str, np.ndarray]:
        if isinstance(inputs, np.ndarray):
            inputs = {self.graph.inputs[0].name: inputs}
        self._qenv = {}
        self._left = dict(self._uses)
        for v in self.graph.inputs:
            x = np.asarray(inputs[v.name])
            p = self.spec.output_params(v.name)
            self._qenv[v.name] = x if p is None else fake_quant(x, p)
        self.final: dict[str, np.ndarray] = {}
        out = super().run(inputs, intermediate)
        self.final = {v.name: self._qenv[v.name] for v in self.graph.outputs}
        self._qenv = {}
        return out

    def _args(self, node: Node, args: list[np.ndarray | None], accumulated: bool
              ) -> list[np.ndarray | None]:
        out: list[np.ndarray | None] = []
        for i, (v, a) in enumerate(zip(node.inputs, args)):
            w = self._weights.get((node.name, i))
            if w is not None:
                out.append(w)
            elif v is None or v.const is not None:
                out.append(a)
            elif accumulated:
                out.append(self._qenv[v.name])
            else:
                p = self.spec.params(v.name)
                out.append(a if p is None else fake_quant(a, p))
        return out

    def _round(self, node: Node, ys: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        return tuple(fake_quant_output(self.spec, v.name, y) for v, y in zip(node.outputs, ys))

    def run_node(self, node: Node, args: list[np.ndarray | None]) -> tuple[np.ndarray, ...]:
        ref = super().run_node(node, args)
        fn = self.kernel_for(node)

        def call(a: list[np.ndarray | None]) -> tuple[np.ndarray, ...]:
            r = fn(*a, **node.attrs)
            return self._round(node, tuple(r) if isinstance(r, list | tuple) else (r,))

        acc = call(self._args(node, args, True))
        iso = call(self._args(node, args, False)) if self.isolated else acc
        self.layer_observer(node, ref, acc, iso)
        for v, y in zip(node.outputs, acc):
            self._qenv[v.name] = y
        for v in node.inputs:
            if v is not None and v.const is None:
                self._left[v.name] -= 1
                if self._left[v.name] == 0 and v.name not in self._keep:
                    del self._qenv[v.name]
        return ref
