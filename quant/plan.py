"""Which tensors a quantized model quantizes, and how: one documented list, like the
hardware op set.

**Weights.** The weight input of every ``Conv``, ``ConvTranspose``, ``Gemm`` and ``MatMul``
(a constant) is quantized per layer or per output channel; their bias is int32 at
s_in * s_w. Other constants (a ``Scale``'s factors, an ``Add``'s constant operand) stay float.

**Activations.** Every float tensor produced by a node gets its own calibrated parameters,
with these exceptions:

- *scale-preserving* ops (``SCALE_PRESERVING``: MaxPool, GlobalMaxPool, Relu and the pure
  data movers Reshape, Flatten, Transpose, Squeeze, Unsqueeze, Slice, Split, DepthToSpace,
  SpaceToDepth, Identity, nearest Resize): the output carries its input's parameters (the
  values stay on the input's grid, so hardware moves the int8 data as it is);
- a graph output produced by ``Softmax``/``LogSoftmax`` stays float (it is the result).

So: the graph inputs, every layer output after its fused activation, both inputs and the
output of a residual ``Add`` (its inputs are layer outputs), the output of ``Concat`` and
of the average pools are quantized. (An average pool does not reuse its input's scale: the
mean of values on a grid often lies exactly half way between two steps of that grid, where
float engines round by noise, each its own way; with a calibrated scale of its own there are
no systematic ties, and the integer kernel folds the 1 / N into its requantization.)
``Concat`` requantizes its inputs to its own calibrated output scale (the inputs keep theirs).

**Mixed precision** (``qconfig.layers``). A node listed as ``float`` keeps float weights
and computes in float: nothing of its own is quantized, so a float layer between float layers
(or at the graph input) has no quantize/dequantize around it and its output is the float
run's. Its output is quantized only when a quantized node downstream reads it as integers
(that quantizer is the consumer's input, at the consumer's bits). A node with ``bits`` uses
them for its weights, its output *and its inputs*: a tensor is quantized at the largest bit
width among its quantized producer and its quantized consumers (through scale-preserving
ops), so a 16-bit layer between 8-bit layers computes on 16-bit inputs (its producer
requantizes its accumulator to 16 bits) and a 8-bit consumer of a 16-bit tensor reads it as it
is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from fc.errors import FcError
from fc.ir.core import Graph, Node
from fc.ir.schema import BIAS, WEIGHT, input_role, weight_groups, weight_out_axis

__all__ = ["WEIGHT_OPS", "SCALE_PRESERVING", "FLOAT_RESULT_OPS", "Plan",
           "make_plan", "weight_inputs", "LayerSetting"]

WEIGHT_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
SCALE_PRESERVING = frozenset({
    "MaxPool", "GlobalMaxPool", "Relu", "Reshape", "Flatten", "Transpose", "Squeeze",
    "Unsqueeze", "Slice", "Split", "DepthToSpace", "SpaceToDepth", "Identity",
})
FLOAT_RESULT_OPS = frozenset({"Softmax", "LogSoftmax"})


def _scale_preserving(node: Node) -> bool:
    if node.op_type == "Resize":
        return node.attrs["mode"] == "nearest"
    if node.op_type == "Pad":  # a zero pad keeps the grid (0 is always exact)
        return node.attrs["mode"] != "constant" or node.attrs["value"] == 0.0
    return node.op_type in SCALE_PRESERVING


def weight_inputs(node: Node) -> dict[int, tuple[str, int | None]]:
    """Constant inputs to quantize, by the schema's input roles: position -> ("weight",
    output-channel axis, or None when per-channel scales cannot be expressed on one axis: a
    grouped ConvTranspose) or ("bias", None). A Gemm C that is not a vector and a MatMul B
    that is not a 2-D constant are not weights here."""
    if node.op_type not in WEIGHT_OPS:
        return {}
    out: dict[int, tuple[str, int | None]] = {}
    for i, v in enumerate(node.inputs):
        if v is None or v.const is None:
            continue
        role = input_role(node.op_type, i)
        if role == WEIGHT and (node.op_type != "MatMul" or v.const.ndim == 2):
            out[i] = ("weight", weight_out_axis(node) if weight_groups(node) == 1 else None)
        elif role == BIAS and v.const.ndim == 1:
            out[i] = ("bias", None)
    if not any(r == "weight" for r, _ in out.values()):
        return {}
    return out


@dataclass(frozen=True)
class LayerSetting:
    """A node's precision: ``float`` or the bit widths of its weights and output."""

    float: bool = False
    weight_bits: int = 8
    act_bits: int = 8


@dataclass
class Plan:
    """The quantization decisions for one graph, before any numbers.

    ``kind[t]`` for each float tensor: ``"own"`` (its own calibrated parameters), ``"inherit"``
    (``origin[t]``'s, no new rounding) or ``"float"``. ``calibrated`` lists the tensors that
    need a calibration entry, in graph order.
    """

    graph: Graph
    kind: dict[str, str] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)
    bits: dict[str, int] = field(default_factory=dict)
    settings: dict[str, LayerSetting] = field(default_factory=dict)
    calibrated: list[str] = field(default_factory=list)

    def quantized(self, tensor: str) -> bool:
        return self.kind.get(tensor, "float") != "float"

    def root(self, tensor: str) -> str:
        """The tensor whose parameters ``tensor`` carries."""
        while self.kind.get(tensor) == "inherit":
            tensor = self.origin[tensor]
        return tensor


def make_plan(graph: Graph, layers: Mapping[str, LayerSetting] | None = None, *,
              weight_bits: int = 8, act_bits: int = 8) -> Plan:
    """Decide, for every tensor of ``graph``, whether and how it is quantized."""
    layers = dict(layers or {})
    unknown = sorted(set(layers) - {n.name for n in graph})
    if unknown:
        raise FcError(f"qconfig.layers names node(s) not in graph {graph.name!r}: "
                      f"{', '.join(unknown[:5])}")
    default = LayerSetting(weight_bits=weight_bits, act_bits=act_bits)
    plan = Plan(graph)
    outputs = {v.name for v in graph.outputs}

    def setting(node: Node) -> LayerSetting:
        return layers.get(node.name, default)

    # Which tensors some quantized node needs as integers: a quantized node reads integers
    # unless it only moves them (scale-preserving), in which case it needs them when its
    # outputs are needed. Computed backwards, so a float layer's output is quantized exactly
    # when something downstream consumes it in integers.
    # needed[t]: the largest act bits among the quantized consumers of t (0: none).
    needed: dict[str, int] = {v.name: 0 for v in graph.outputs}
    for node in reversed(graph.nodes):
        s = setting(node)
        if s.float:
            continue
        if _scale_preserving(node):
            want = max((needed.get(v.name, 0) for v in node.outputs), default=0)
            if not want:
                continue
        else:
            want = s.act_bits
        for v in node.inputs:
            if v is not None and v.const is None:
                needed[v.name] = max(needed.get(v.name, 0), want)

    for v in graph.inputs:
        if v.dtype == "float32" and needed.get(v.name, 0):
            plan.kind[v.name] = "own"
            plan.bits[v.name] = needed[v.name]
    for node in graph:
        s = setting(node)
        plan.settings[node.name] = s
        first = node.inputs[0] if node.inputs else None
        for v in node.outputs:
            if v.dtype != "float32":
                continue
            if first is not None and plan.quantized(first.name) and _scale_preserving(node):
                plan.kind[v.name] = "inherit"
                plan.origin[v.name] = first.name
                plan.bits[v.name] = plan.bits[plan.root(first.name)]
            elif v.name in outputs and node.op_type in FLOAT_RESULT_OPS:
                plan.kind[v.name] = "float"
            elif (s.float or _scale_preserving(node)) and not needed.get(v.name, 0):
                plan.kind[v.name] = "float"
            else:
                plan.kind[v.name] = "own"
                own = 0 if s.float or _scale_preserving(node) else s.act_bits
                plan.bits[v.name] = max(own, needed.get(v.name, 0))
    plan.calibrated = [t for t, k in plan.kind.items() if k == "own"]
    return plan
