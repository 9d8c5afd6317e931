"""From a fused IR, a calibration table and a strategy to numbers (``QuantSpec``) and to the
quantized IR (``IR_quantized_for_CModel``).

The quantized IR is the fused graph in QDQ form, as ONNX and TFLite's converters read it:

- a quantized weight W is an int8 constant ``W_quantized`` with ``W_scale``/``W_zero_point``
  (per channel along the output-channel axis, or scalars) feeding a ``DequantizeLinear``;
  a bias is an int32 ``B_quantized`` at scale s_in * s_w;
- a quantized activation T is followed by ``QuantizeLinear`` -> ``T_quantized`` (int8) ->
  ``DequantizeLinear``, which every consumer reads; ``T_scale``/``T_zero_point`` (and
  ``T_shift`` = -log2(scale) for the power-of-two strategies) are tensors in the npz;
- graph inputs and outputs keep their names; everything else is the fused graph's nodes,
  with their names and provenance.

Run by the golden executor it *is* the fake-quant simulation; the integer kernels of the
``_t`` strategies execute the same file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fc.errors import FcError
from fc.ir.activations import is_non_negative
from fc.ir.core import Graph, Node, Value
from fc.quant.calibration import CalibrationTable
from fc.quant.plan import LayerSetting, Plan, make_plan, weight_inputs
from fc.quant.qparams import QParams, dequantize, fake_quant, quantize
from fc.quant.strategies import Range, Strategy, bias_qparams

__all__ = ["QuantSpec", "build_spec", "quantized_graph", "QUANTIZED_PREFIX"]

QUANTIZED_PREFIX = "IR_quantized_for_CModel"


@dataclass
class QuantSpec:
    """Every number of a quantized model: activation parameters by tensor, quantized weights
    by (node, input position)."""

    plan: Plan
    strategy: Strategy
    per_channel: bool
    acts: dict[str, QParams] = field(default_factory=dict)
    weights: dict[tuple[str, int], tuple[np.ndarray, QParams]] = field(default_factory=dict)

    def params(self, tensor: str) -> QParams | None:
        """The parameters a tensor's values lie on (own or inherited)."""
        if not self.plan.quantized(tensor):
            return None
        return self.acts[self.plan.root(tensor)]

    def output_params(self, tensor: str) -> QParams | None:
        """The parameters a producer rounds ``tensor`` to (None: no rounding: float or
        inherited)."""
        return self.acts[tensor] if self.plan.kind.get(tensor) == "own" else None

    def dequantized_weight(self, node: Node, i: int) -> np.ndarray | None:
        w = self.weights.get((node.name, i))
        return None if w is None else dequantize(*w)


def build_spec(graph: Graph, table: CalibrationTable, strategy: Strategy, *,
               per_channel: bool = True, weight_bits: int = 8, act_bits: int = 8,
               layers: Mapping[str, LayerSetting] | None = None) -> QuantSpec:
    """Compute every scale, zero point and quantized weight of ``graph``."""
    if not strategy.quantizes:
        layers = {n.name: LayerSetting(float=True) for n in graph}
    plan = make_plan(graph, layers, weight_bits=weight_bits, act_bits=act_bits)
    if not strategy.quantizes:
        plan.kind = {t: "float" for t in plan.kind}
        plan.calibrated = []
    spec = QuantSpec(plan, strategy, per_channel)
    missing = [t for t in plan.calibrated if t not in table]
    if missing:
        raise FcError(f"calibration table ({table.meta.get('path', 'in memory')}) lacks "
                      f"{len(missing)} tensor(s) of graph {graph.name!r}, e.g. "
                      f"{', '.join(missing[:3])}: recalibrate")
    values = {v.name: v for v in graph.inputs} | {v.name: v for n in graph for v in n.outputs}
    for t in plan.calibrated:
        r = table[t]
        if plan.bits[t] > act_bits and r.threshold < max(-r.min, r.max):
            # a layer kept at more bits than the table was made for: the method's clip was
            # chosen against the rounding noise of act_bits, which is 2^(extra bits) larger
            # than this tensor's; its full observed range loses less.
            r = Range(r.min, r.max, max(-r.min, r.max))
        spec.acts[t] = strategy.activation(r, plan.bits[t], is_non_negative(values[t]))
    for node in graph:
        s = plan.settings[node.name]
        if s.float or not strategy.quantizes:
            continue
        roles = weight_inputs(node)
        x = node.inputs[0]
        s_in = spec.params(x.name) if x is not None else None
        wq: QParams | None = None
        bias_at = next((i for i, (role, _) in roles.items() if role == "bias"), None)
        int_bias = bias_at is not None and s_in is not None and (
            node.op_type != "Gemm" or node.attrs["alpha"] == node.attrs["beta"] == 1.0)
        for i, (role, axis) in sorted(roles.items()):
            arr = node.inputs[i].const
            if role == "weight":
                ax = axis if per_channel else None
                wq = strategy.weight(arr, ax, s.weight_bits)
                wide = int_bias and s.weight_bits + plan.bits[plan.root(x.name)] > 16
                if int_bias and not wide:
                    wq = _fit_bias(strategy, arr, wq, node.inputs[bias_at].const, s_in.scale)
                spec.weights[(node.name, i)] = (quantize(arr, wq), wq)
            elif role == "bias" and wq is not None and int_bias:
                wide = s.weight_bits + plan.bits[plan.root(x.name)] > 16
                bq = bias_qparams(s_in.scale, wq.scale, 0, wide=wide)
                spec.weights[(node.name, i)] = (quantize(arr, bq), bq)
    return spec


BIAS_LIMIT = 2 ** 30
"""The largest |q_b| of an int32 bias: a weight scale is raised until the bias fits, so
that sum((q_x - z_x) q_w) + q_b stays in int32 (the products take the other 2^30: 255 * 127 *
K < 2^30 for K < 33,000 taps)."""


def _fit_bias(strategy: Strategy, w: np.ndarray, wq: QParams, bias: np.ndarray,
              s_in: np.ndarray) -> QParams:
    """``wq`` with each weight scale raised to at least |b| / (s_in * BIAS_LIMIT).

    A channel whose weights are all but zero (a dead channel after BN folding: max|w| ~ 1e-9)
    gets a tiny scale, and its bias b / (s_in * s_w) would leave int32 (clamped, the bias is
    lost; unclamped, the int32 accumulator overflows). As onnxruntime's quantizer does (its
    ``_adjust_weight_scale_for_int32_bias``, after TFLite's ``AdjustWeightsForBiasScale``) the
    weight scale is raised instead: those weights then quantize to (nearly) 0, which they
    are, and the bias, which carries the channel, stays exact. fc leaves half of int32 to the
    products. Per-tensor weights take the largest |b|."""
    b = np.abs(np.asarray(bias, np.float64))
    if wq.axis is None:
        b = b.max(initial=0.0)
    smallest = b / (np.float64(s_in) * BIAS_LIMIT)
    if not np.any(np.asarray(wq.scale, np.float64) < smallest):
        return wq
    return strategy.widen_weight(w, wq, smallest)


# -- the quantized IR ---------------------------------------------------------------------------

class _Builder:
    def __init__(self, src: Graph, spec: QuantSpec):
        self.src, self.spec = src, spec
        self.g = Graph(src.name + "_quantized")
        self.map: dict[str, Value] = {}
        self.out_names = {v.name for v in src.outputs}

    def const(self, name: str, arr: np.ndarray) -> Value:
        return self.g.add_const(name, np.array(arr, order="C"))  # (0-d stays 0-d)

    def param_consts(self, base: str, p: QParams) -> tuple[Value, Value]:
        s = self.const(base + "_scale", p.scale)
        z = self.const(base + "_zero_point", p.zero_point)
        if p.shift is not None:
            self.const(base + "_shift", p.shift)
        return s, z

    def qdq(self, t: str, v: Value, p: QParams, provenance: tuple[str, ...], name: str) -> Value:
        """``v`` -> QuantizeLinear -> DequantizeLinear; the result takes the name ``name``."""
        s, z = self.param_consts(t, p)
        axis = 1 if p.axis is None else p.axis
        q = self.g.add_node("QuantizeLinear", [v, s, z], {"axis": axis, "qmin": p.qmin,
                                                          "qmax": p.qmax},
                            name=f"{t}_quantize", provenance=provenance,
                            outputs=[Value(self.g.reserve(t + "_quantized"))])
        d = self.g.add_node("DequantizeLinear", [q.output, s, z], {"axis": axis},
                            name=f"{t}_dequantize", provenance=provenance,
                            outputs=[Value(self.g.reserve(name))])
        return d.output

    def weight(self, node: Node, i: int, v: Value) -> Value:
        q, p = self.spec.weights[(node.name, i)]
        base = v.name if sum(1 for u in v.users) == 1 else f"{node.name}_{v.name}"
        qv = self.const(base + "_quantized", q)
        s, z = self.param_consts(base, p)
        d = self.g.add_node("DequantizeLinear", [qv, s, z],
                            {"axis": 0 if p.axis is None else p.axis},
                            name=f"{base}_dequantize", provenance=node.provenance,
                            outputs=[Value(self.g.reserve(base + "_dequantized"))])
        return d.output

    def build(self) -> Graph:
        src, spec, g = self.src, self.spec, self.g
        for v in src.inputs:
            nv = g.add_input(v.name, v.shape, v.dtype)
            p = spec.output_params(v.name)
            self.map[v.name] = nv if p is None else self.qdq(v.name, nv, p, (), v.name + "_dequantized")
        for node in src:
            ins: list[Value | None] = []
            for i, v in enumerate(node.inputs):
                if v is None:
                    ins.append(None)
                elif (node.name, i) in spec.weights:
                    ins.append(self.weight(node, i, v))
                elif v.const is not None:
                    ins.append(self.map.get(v.name) or self._float_const(v))
                else:
                    ins.append(self.map[v.name])
            outs, finals = [], []
            for v in node.outputs:
                p = spec.output_params(v.name)
                last = v.name in self.out_names
                raw = v.name if p is None or not last else v.name + "_float"
                outs.append(Value(g.reserve(raw)))
                finals.append((v, p, last))
            n = g.add_node(node.op_type, ins, dict(node.attrs), name=node.name,
                           outputs=outs, provenance=node.provenance)
            for (v, p, last), nv in zip(finals, n.outputs):
                self.map[v.name] = nv if p is None else self.qdq(
                    v.name, nv, p, node.provenance, v.name if last else v.name + "_dequantized")
        g.outputs = [self.map[v.name] for v in src.outputs]
        return g

    def _float_const(self, v: Value) -> Value:
        nv = self.const(v.name, v.const)
        self.map[v.name] = nv
        return nv


def quantized_graph(graph: Graph, spec: QuantSpec) -> Graph:
    """The QDQ-form quantized IR of ``graph`` (see the module docstring); verified."""
    from fc.ir.verify import verify

    g = _Builder(graph, spec).build()
    verify(g)
    return g


def fake_quant_output(spec: QuantSpec, tensor: str, y: np.ndarray) -> np.ndarray:
    """``y`` rounded as the quantized network rounds ``tensor`` at its producer."""
    p = spec.output_params(tensor)
    return y if p is None else fake_quant(y, p)


def describe(spec: QuantSpec) -> dict[str, Any]:
    """Counts for a summary line."""
    kinds: dict[str, int] = {}
    for k in spec.plan.kind.values():
        kinds[k] = kinds.get(k, 0) + 1
    return {"activations": kinds, "weights": len(spec.weights)}
