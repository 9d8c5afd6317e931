"""Integer-only execution of ``IR_quantized_for_CModel`` (the ``_t`` strategies).

The quantized IR is the QDQ graph; ``IntegerInterpreter`` runs it the way the chip does: a
``DequantizeLinear`` of an activation hands on its *integers* (with their scale and zero
point known from the graph), scale-preserving ops (MaxPool, Flatten, Reshape, ...) move the
integers as they are, and each layer whose output feeds a ``QuantizeLinear`` is computed in
integers from the integers it reads:

- Conv / Gemm: int32 accumulator sum((q_x - z_x) * q_w) + q_b (``fc.np_ops.integer``: exact
  through float BLAS), requantized by M = s_x * s_w / s_out per output channel (gemmlowp
  fixed point; ``scale_shift_t``: one rounding shift by f_x + f_w - f_out), plus z_out;
- residual Add: both inputs rescaled as TFLite does (left shift 20, each by
  s_i / (2 max(s_a, s_b)), the sum by 2 max(s_a, s_b) / (2^20 s_out); ``scale_shift_t``: each
  input shifted left to the finer exponent, exactly, then the sum shifted once);
- GlobalAveragePool: the int32 sum over H x W requantized by s_in / (N s_out) in fixed point
  with one rounding (the pools always use ``rounding="single"``: their multipliers are
  large, s_in / s_out ~ 1 divided by N, with right shifts n of 1-6, where gemmlowp's double
  rounding would move 2^-(n+1) of the means, a quarter at n = 1);
  ``scale_shift_t``: sum * 2^(f_out - f_in) / N by one exact integer division rounding half
  to even (``div_round``);
- AveragePool: the int32 window sums S over the N counted positions (a divisor map, as the
  float kernel counts them); with the input's scale kept (the plan's inherited case), S / N
  by an exact integer division rounding half to even (``div_round``: ties are common, S / 4
  of a 2x2 window, and half to even keeps them the simulation's; TFLite's kernel rounds them
  away from zero, ``div_round_away``), otherwise S requantized by s_in / (N s_out) in fixed
  point with one rounding (one multiplier per distinct N);
  ``scale_shift_t``: S * 2^(f_out - f_in) / N by ``div_round`` (half to even), like the pool;
- MaxPool (and every other scale-preserving op) on the int8 values themselves;
- Concat: each input requantized to the output's scale (fixed point; an input already at the
  output's scale and zero point is copied; ``scale_shift_t``: a rounding shift);
- a fused ReLU / ReLU6 is a clamp in the integer domain: [z_out + round(alpha / s_out),
  z_out + round(beta / s_out)] intersected with [qmin, qmax].

Floats appear only where the graph input is quantized and its outputs dequantized.

**How it runs fast, with the same integers.** A Conv/Gemm's accumulators come from
``int_conv``/``int_matmul`` as the float32 (or float64) array that holds them exactly, in the
float Conv's channels-last layout, and go straight to the layer's ``Requantizer`` (built once
here, by ``fast_requantizer``, which proves float64 passes give the int64 definitions'
integers for that layer's multipliers, bias and clamp, or declines: the layer then runs the
int64 definitions); its int8 output keeps the layout, so the next 1x1 Conv is a GEMM on it.
An Add of 8-bit inputs is a function of the pair of integers it reads: its 2^16 outputs are
computed once by the int64 definitions (``_add_table``) and a run looks them up. Ops
outside this set are listed at once (``IntegerError``), or run in float on dequantized
inputs with ``allow_float=True`` (a warning names them).

**Rounding, in one place.** ``symmetry_max_t`` rounds as gemmlowp/TFLite do, twice in a
fixed-point requantization: the high multiply by M0 to nearest with ties towards +inf
(gemmlowp's nudge), then the shift by n to nearest with ties away from zero (the default,
``rounding="gemmlowp"``, config ``QUAN.qconfig.rounding``; ``"single"`` selects TFLite's
TFLITE_SINGLE_ROUNDING, one rounding of acc * M0 * 2^-(31 + n), ties up). Its simulation
is ``fc.quant.simulate.FixedPointSim``, which models exactly this (the plain float32 QDQ
simulation rounds once, half to even, with the float ratio s_x s_w / s_out); the
pools requantize with one rounding, and an exact integer division (AveragePool keeping its
input's scale) rounds half to even. ``scale_shift_t`` rounds half to even everywhere
(every requantization one shift, the pools one exact division), the rule of fc's simulation
(``fc.quant.qparams``), so its integers are the simulation's bit for bit.

**Accumulator overflow.** A Conv/Gemm accumulator is sum((q_x - z_x) q_w) + q_b. Per output
channel it is bounded by B = max|q_x - z_x| * sum|q_w| + |q_b| (``accumulator_bounds``);
int8 products alone stay below 2^31 for K < 66,576 taps (ResNet-50's largest K is 4,608), so
only biases near the int32 limit (channels whose weights are all but zero, their scale tiny)
can overflow. Every run checks the int64 sum: an accumulator outside int32 saturates, as a
saturating adder would, and is recorded in ``overflows`` (node -> count) and logged naming
the node once; ``overflow="raise"`` makes it an ``IntegerError`` naming the node instead.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from fc.errors import ExecutionError
from fc.ir.core import Graph, Node
from fc.np_ops import Interpreter
from fc.np_ops import integer as ia
from fc.quant.plan import SCALE_PRESERVING

__all__ = ["IntegerInterpreter", "IntegerError", "INTEGER_OPS", "run_integer"]

INTEGER_OPS = frozenset({"Conv", "Gemm", "Add", "GlobalAveragePool", "AveragePool", "Concat"})
_log = logging.getLogger(__name__)


class IntegerError(ExecutionError):
    """A quantized graph with ops the integer executor cannot run."""


@dataclass(frozen=True)
class _P:
    scale: np.ndarray  # float64, () or (C,)
    zero: np.ndarray   # int64
    shift: np.ndarray | None = None
    lo: int = -128  # the integers' range (the zero point's dtype)
    hi: int = 127


_UNUSED = np.zeros(0, np.float32)


def _const(node: Node, i: int) -> np.ndarray:
    return node.inputs[i].const


class IntegerInterpreter(Interpreter):
    """Runs a quantized IR in integers (see the module docstring)."""

    def __init__(self, graph: Graph, *, pow2: bool = False, allow_float: bool = False,
                 rounding: str = "gemmlowp", overflow: str = "saturate",
                 keep_accumulators: bool = False, **kw: Any):
        super().__init__(graph, **kw)
        #: with ``keep_accumulators``: per Conv/Gemm of the last run, its int32 accumulators
        #: (bias included, saturated as the requantization reads them), NCHW
        self.accumulators: dict[str, np.ndarray] | None = {} if keep_accumulators else None
        if rounding not in ia.ROUNDINGS:
            raise IntegerError(f"rounding {rounding!r} is not one of {ia.ROUNDINGS}")
        if overflow not in ("saturate", "raise"):
            raise IntegerError(f"overflow {overflow!r} is not 'saturate' or 'raise'")
        self.pow2 = pow2
        self.rounding = rounding
        self.overflow = overflow
        self.overflows: dict[str, int] = {}
        self._w64: dict[str, np.ndarray] = {}  # layer -> its int8 weights as float32 (BLAS)
        self.params: dict[str, _P] = {}      # value -> parameters of its integers
        self.out_q: dict[str, Node] = {}     # layer node -> the QuantizeLinear of its output
        self.float_nodes: list[Node] = []
        shifts = {n: v.const for n, v in graph.initializers.items() if n.endswith("_shift")}
        outputs = {v.name for v in graph.outputs}
        for node in graph:
            if node.op_type == "DequantizeLinear" and node.inputs[0].const is None:
                base = node.inputs[1].name[: -len("_scale")]
                info = np.iinfo(_const(node, 2).dtype)
                self.params[node.output.name] = _P(np.float64(_const(node, 1)),
                                                   np.int64(_const(node, 2)), shifts.get(base + "_shift"),
                                                   int(info.min), int(info.max))
            elif node.op_type in SCALE_PRESERVING and node.inputs[0].name in self.params:
                for v in node.outputs:
                    self.params[v.name] = self.params[node.inputs[0].name]
        for node in graph:
            if node.op_type in ("QuantizeLinear", "DequantizeLinear") or node.name in ():
                continue
            if node.op_type in SCALE_PRESERVING and node.inputs[0].name in self.params:
                continue
            users = node.outputs[0].users
            if (node.op_type in INTEGER_OPS and len(users) == 1 and users[0].op_type == "QuantizeLinear"
                    and node.outputs[0].name not in outputs):
                self.out_q[node.name] = users[0]
            elif all(v is None or v.const is not None for v in node.inputs):
                continue  # constant subgraph (a weight's DequantizeLinear)
            else:
                self.float_nodes.append(node)
        if self.float_nodes and not allow_float:
            by_op: dict[str, list[str]] = {}
            for n in self.float_nodes:
                by_op.setdefault(n.op_type, []).append(n.name)
            listed = "; ".join(f"{op} x{len(v)} ({', '.join(v[:3])})" for op, v in sorted(by_op.items()))
            raise IntegerError(f"graph {graph.name!r}: {len(self.float_nodes)} node(s) outside the "
                               f"integer op set {sorted(INTEGER_OPS | SCALE_PRESERVING)}: {listed}")
        if self.float_nodes:
            _log.warning("graph %r: %d node(s) run in float on dequantized inputs: %s", graph.name,
                         len(self.float_nodes), ", ".join(f"{n.name} ({n.op_type})"
                                                          for n in self.float_nodes))
        self._float_names = {n.name for n in self.float_nodes}
        self._int_q = {q.name for q in self.out_q.values()}
        self._consts: dict[str, tuple[np.ndarray, ...]] = {}
        self._wcache: dict[str, dict] = {}  # Conv/Gemm -> int_conv's cache of its weight
        # per layer, computed here once: Conv/Gemm -> its float64 requantizer (None: the
        # int64 definitions run), Add -> its table of all 2^16 input pairs (None: 16-bit)
        self._requantizers = {n.name: self._fast_requantizer(n) for n in graph
                              if n.name in self.out_q and n.op_type in ("Conv", "Gemm")}
        self._add_tables = {n.name: self._add_table(n) for n in graph
                            if n.name in self.out_q and n.op_type == "Add"}

    # -- helpers ---------------------------------------------------------------------------
    def _weight(self, node: Node, i: int) -> tuple[np.ndarray, _P]:
        dq = node.inputs[i].producer
        base = dq.inputs[1].name[: -len("_scale")]
        shift = self.graph.initializers.get(base + "_shift")
        return _const(dq, 0), _P(np.float64(_const(dq, 1)), np.int64(_const(dq, 2)),
                                 None if shift is None else shift.const)

    def _out(self, node: Node) -> tuple[Node, _P]:
        q = self.out_q[node.name]
        base = q.inputs[1].name[: -len("_scale")]
        shift = self.graph.initializers.get(base + "_shift")
        return q, _P(np.float64(_const(q, 1)), np.int64(_const(q, 2)),
                     None if shift is None else shift.const)

    def _rescale(self, acc: np.ndarray, real: np.ndarray, shift: np.ndarray | None) -> np.ndarray:
        if self.pow2 and shift is not None:
            ks = np.asarray(shift, np.int64)
            if ks.ndim == 1 and ks.size > 1:
                ks = ks.reshape((1, -1) + (1,) * (acc.ndim - 2))
            return ia.shift_round(acc, ks.reshape(()) if ks.size == 1 else ks)
        return ia.requantize(acc, real, rounding=self.rounding)

    def _clamp(self, node: Node) -> tuple[int, int, int, np.dtype]:
        """The output integers' range [lo, hi] after the fused activation's clamp, its zero
        point and dtype."""
        q, p = self._out(node)
        lo, hi = q.attrs["qmin"], q.attrs["qmax"]
        act = node.attrs.get("activation", "")
        z = int(p.zero)
        if act == "relu":
            lo = max(lo, z)
        elif act == "clip":
            s = float(p.scale)
            lo = max(lo, z + int(np.rint(node.attrs["act_alpha"] / s)))
            hi = min(hi, z + int(np.rint(node.attrs["act_beta"] / s)))
        elif act:
            raise IntegerError(f"node {node.name!r} ({node.op_type}): fused activation {act!r} has "
                               "no integer form (only relu and clip are clamps)")
        return lo, hi, z, _const(q, 2).dtype

    def _finish(self, node: Node, y: np.ndarray) -> np.ndarray:
        lo, hi, z, dtype = self._clamp(node)
        if z:
            y = np.asarray(y, np.int64) + z
        return np.clip(y, lo, hi).astype(dtype)

    # -- execution -------------------------------------------------------------------------
    def run_node(self, node: Node, args: list[np.ndarray | None]) -> tuple[np.ndarray, ...]:
        op = node.op_type
        if op == "DequantizeLinear" and node.output.name in self.params:
            if node.output.name in {v.name for v in self.graph.outputs}:
                return super().run_node(node, args)
            return (args[0],)  # hand on the integers
        if op == "QuantizeLinear" and node.name in self._int_q:
            return (args[0],)  # the layer already produced them
        if node.name in self.out_q:
            return (getattr(self, f"_{op.lower()}")(node, args),)
        if node.name in self._float_names:
            deq = [a if v is None or v.name not in self.params or a is None
                   else (a.astype(np.float64) - self.params[v.name].zero).astype(np.float32)
                   * np.float32(self.params[v.name].scale)
                   for v, a in zip(node.inputs, args)]
            return super().run_node(node, deq)
        if node.inputs and all(v is None or v.const is not None for v in node.inputs):
            # a weight's DequantizeLinear: nothing for integer layers (they read the int8
            # constant), computed once for a float node
            if all(u.name in self.out_q for u in node.outputs[0].users):
                return (_UNUSED,)
            out = self._consts.get(node.name)
            if out is None:
                out = self._consts[node.name] = super().run_node(node, args)
            return out
        return super().run_node(node, args)

    def _conv(self, node: Node, args: list[Any]) -> np.ndarray:
        xq = args[0]
        px = self.params[node.inputs[0].name]
        wq, pw = self._weight(node, 1)
        acc = ia.int_conv(xq, int(px.zero), self._float_weights(node, wq), 0, strides=node.attrs["strides"],
                          pads=node.attrs["pads"], dilations=node.attrs["dilations"],
                          group=node.attrs["group"], cache=self._wcache.setdefault(node.name, {}),
                          exact_float=True)
        return self._requant_layer(node, acc, px, pw)

    def _gemm(self, node: Node, args: list[Any]) -> np.ndarray:
        a = node.attrs
        if a["alpha"] != 1 or a["beta"] != 1 or a["transA"]:
            raise IntegerError(f"node {node.name!r} (Gemm): only alpha = beta = 1, transA = 0 run "
                               "in integers")
        px = self.params[node.inputs[0].name]
        wq, pw = self._weight(node, 1)
        w = self._float_weights(node, wq.T if a["transB"] else wq)
        acc = ia.int_matmul(args[0], int(px.zero), w, 0, cache=self._wcache.setdefault(node.name, {}),
                            exact_float=True)
        return self._requant_layer(node, acc, px, pw)

    def _float_weights(self, node: Node, wq: np.ndarray) -> np.ndarray:
        w = self._w64.get(node.name)
        if w is None:
            w = self._w64[node.name] = np.ascontiguousarray(wq, np.float32)
        return w

    def _multiplier(self, node: Node) -> tuple[np.ndarray, np.ndarray | None]:
        """A Conv's/Gemm's requantization: the real multiplier s_x s_w / s_out (per channel or
        one) and, for scale_shift_t's power-of-two scales, the shift f_x + f_w - f_out."""
        px = self.params[node.inputs[0].name]
        _, pw = self._weight(node, 1)
        _, po = self._out(node)
        real = px.scale * pw.scale / po.scale
        shift = None
        if px.shift is not None and pw.shift is not None and po.shift is not None:
            shift = px.shift.astype(np.int64) + pw.shift.astype(np.int64) - po.shift.astype(np.int64)
        return real, shift

    def _fast_requantizer(self, node: Node) -> ia.Requantizer | None:
        """The layer's float64 requantizer (``fc.np_ops.integer.fast_requantizer``, proven
        exact on its numbers), or None where the int64 definitions run: an accumulator bound
        past int32 (overflow is then checked on every run), an output zero point, a fused
        activation without an integer form (reported when it runs), or numbers the float64
        proof does not cover."""
        w = node.inputs[1] if len(node.inputs) > 1 else None
        if (node.inputs[0].name not in self.params or w is None or w.producer is None
                or w.producer.op_type != "DequantizeLinear" or w.producer.inputs[0].const is None):
            return None  # not integers: reported when the node runs
        try:
            lo, hi, z, dtype = self._clamp(node)
        except IntegerError:
            return None
        if z or self._bound(node) > ia.INT32_MAX:
            return None
        real, shift = self._multiplier(node)
        bias = self._weight(node, 2)[0] if len(node.inputs) > 2 and node.inputs[2] is not None else None
        if self.pow2 and shift is not None:
            return ia.fast_requantizer(bias=bias, lo=lo, hi=hi, dtype=dtype, shift=shift)
        return ia.fast_requantizer(bias=bias, lo=lo, hi=hi, dtype=dtype, real=real,
                                   rounding=self.rounding)

    def _requant_layer(self, node: Node, acc: np.ndarray, px: _P, pw: _P) -> np.ndarray:
        rq = self._requantizers.get(node.name)
        a = None  # the int64 accumulators, bias included: for the dump or the int64 code
        if self.accumulators is not None or rq is None:
            a = acc.astype(np.int64)  # exact integers in float
            if len(node.inputs) > 2 and node.inputs[2] is not None:
                a += self._weight(node, 2)[0].astype(np.int64).reshape((1, -1) + (1,) * (a.ndim - 2))
        if self.accumulators is not None:
            self.accumulators[node.name] = np.ascontiguousarray(
                np.clip(a, ia.INT32_MIN, ia.INT32_MAX).astype(np.int32))
        if rq is not None:
            return rq(acc)
        if self._check_overflow(node, a):
            a = np.clip(a, ia.INT32_MIN, ia.INT32_MAX)
        real, shift = self._multiplier(node)
        return self._finish(node, self._rescale(a, real, shift))

    def _check_overflow(self, node: Node, acc: np.ndarray) -> bool:
        if ia.INT32_MIN <= acc.min() and acc.max() <= ia.INT32_MAX:
            return False
        bad = int(np.count_nonzero((acc > ia.INT32_MAX) | (acc < ia.INT32_MIN)))
        worst = int(np.abs(acc).max())
        if self.overflow == "raise":
            raise IntegerError(f"node {node.name!r} ({node.op_type}): {bad} int32 accumulator(s) "
                               f"overflow (|acc| up to {worst})")
        if node.name not in self.overflows:
            _log.warning("node %r (%s): %d int32 accumulator(s) overflow (|acc| up to %d); "
                         "saturated", node.name, node.op_type, bad, worst)
        self.overflows[node.name] = self.overflows.get(node.name, 0) + bad
        return True

    def accumulator_bounds(self) -> dict[str, int]:
        """Per Conv/Gemm run in integers: the largest |accumulator| any input can produce,
        max|q_x - z_x| * sum|q_w| + |q_b| over output channels (int32 overflow is impossible
        where it is <= 2^31 - 1)."""
        return {node.name: self._bound(node) for node in self.graph
                if node.name in self.out_q and node.op_type in ("Conv", "Gemm")}

    def _bound(self, node: Node) -> int:
        p = self.params[node.inputs[0].name]
        xmax = max(p.hi - int(p.zero), int(p.zero) - p.lo)
        wq, _ = self._weight(node, 1)
        w = np.abs(wq.astype(np.int64))
        if node.op_type == "Gemm":
            per = w.sum(axis=1 if node.attrs["transB"] else 0)
        else:
            per = w.reshape(w.shape[0], -1).sum(axis=1)
        b = np.zeros_like(per)
        if len(node.inputs) > 2 and node.inputs[2] is not None:
            b = np.abs(self._weight(node, 2)[0].astype(np.int64))
        return int((xmax * per + b).max())

    def _add(self, node: Node, args: list[Any]) -> np.ndarray:
        table = self._add_tables.get(node.name)
        if table is not None and args[0].dtype.itemsize == args[1].dtype.itemsize == 1:
            return _lookup_pairs(table, args[0], args[1])
        return self._add_integers(node, args)

    def _add_table(self, node: Node) -> np.ndarray | None:
        """The residual Add of two 8-bit inputs is a function of the pair of integers it
        reads: its output for each of the 2^16 pairs, computed once by ``_add_integers`` (the
        int64 definitions below, activation clamp included), at index u_a * 256 + u_b of the
        inputs' bytes u (``_lookup_pairs``), so a run is one lookup per element and gives
        the definitions' integers by construction. None for inputs wider than 8 bits (or not
        both integers: reported when the node runs)."""
        if len(node.inputs) != 2 or any(v is None or v.name not in self.params for v in node.inputs):
            return None
        pa, pb = self.params[node.inputs[0].name], self.params[node.inputs[1].name]
        if pa.hi - pa.lo > 255 or pb.hi - pb.lo > 255:
            return None
        da = np.int8 if pa.lo < 0 else np.uint8
        db = np.int8 if pb.lo < 0 else np.uint8
        byte = np.arange(256, dtype=np.uint8)
        qa = np.repeat(byte.view(da), 256).reshape(256, 256)
        qb = np.tile(byte.view(db), 256).reshape(256, 256)
        try:
            return np.ascontiguousarray(self._add_integers(node, [qa, qb])).reshape(-1)
        except IntegerError:
            return None  # reported when the node runs

    def _add_integers(self, node: Node, args: list[Any]) -> np.ndarray:
        pa, pb = self.params[node.inputs[0].name], self.params[node.inputs[1].name]
        _, po = self._out(node)
        a = args[0].astype(np.int64) - pa.zero
        b = args[1].astype(np.int64) - pb.zero
        if self.pow2 and pa.shift is not None and pb.shift is not None and po.shift is not None:
            # both to the finer exponent (exact left shifts), then one rounding shift
            fa, fb, fo = int(pa.shift), int(pb.shift), int(po.shift)
            f = max(fa, fb)
            y = (a << (f - fa)) + (b << (f - fb))
            return self._finish(node, ia.shift_round(y, f - fo))
        left = 20
        twice_max = 2 * max(float(pa.scale), float(pb.scale))
        reals = (float(pa.scale) / twice_max, float(pb.scale) / twice_max,
                 twice_max / ((1 << left) * float(po.scale)))
        if a.shape == b.shape:
            return self._finish(node, ia.add_rescaled(a, b, left, reals, rounding=self.rounding))
        sa = ia.requantize(a << left, reals[0], rounding=self.rounding)
        sb = ia.requantize(b << left, reals[1], rounding=self.rounding)
        y = ia.requantize(sa.astype(np.int64) + sb, reals[2], rounding=self.rounding)
        return self._finish(node, y)

    def _globalaveragepool(self, node: Node, args: list[Any]) -> np.ndarray:
        px = self.params[node.inputs[0].name]
        _, po = self._out(node)
        x = args[0].astype(np.int64) - px.zero
        n = int(np.prod(x.shape[2:]))
        acc = x.sum(axis=tuple(range(2, x.ndim)), keepdims=True)
        if self.pow2 and px.shift is not None and po.shift is not None:
            k = int(po.shift) - int(px.shift)  # sum * 2^k / N, one exact rounding division
            num, den = (acc << k, n) if k >= 0 else (acc, n << -k)
            return self._finish(node, ia.div_round(num, den))
        real = float(px.scale) / (n * float(po.scale))
        return self._finish(node, ia.requantize(acc, real, rounding="single"))

    def _averagepool(self, node: Node, args: list[Any]) -> np.ndarray:
        px = self.params[node.inputs[0].name]
        _, po = self._out(node)
        a = node.attrs
        sums, counts = ia.avg_pool_sums(args[0].astype(np.int64) - px.zero,
                                        kernel_shape=a["kernel_shape"], strides=a["strides"],
                                        pads=a["pads"], ceil_mode=a["ceil_mode"],
                                        count_include_pad=a["count_include_pad"])
        if self.pow2 and px.shift is not None and po.shift is not None:
            k = int(po.shift) - int(px.shift)
            num, den = (sums << k, counts) if k >= 0 else (sums, counts << -k)
            return self._finish(node, ia.div_round(num, den))
        if float(px.scale) == float(po.scale):
            return self._finish(node, ia.div_round(sums, counts))
        y = np.empty(sums.shape, np.int32)
        for n in np.unique(counts):
            at = counts == n
            y[:, :, at] = ia.requantize(sums[:, :, at], float(px.scale) / (int(n) * float(po.scale)),
                                        rounding="single")
        return self._finish(node, y)

    def _concat(self, node: Node, args: list[Any]) -> np.ndarray:
        _, po = self._out(node)
        parts = []
        for v, a in zip(node.inputs, args):
            p = self.params[v.name]
            d = a.astype(np.int64) - p.zero
            if float(p.scale) == float(po.scale):
                parts.append(d)
            elif self.pow2 and p.shift is not None and po.shift is not None:
                parts.append(ia.shift_round(d, int(p.shift) - int(po.shift)))
            else:
                parts.append(ia.requantize(d, float(p.scale) / float(po.scale),
                                           rounding=self.rounding))
        return self._finish(node, np.concatenate(parts, axis=node.attrs["axis"]))


def _lookup_pairs(table: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """table[u_a * 256 + u_b] elementwise for 8-bit arrays ``a``, ``b`` (u: their bytes): in
    cache-sized blocks, in their memory layout, when both share one (a channels-last buffer,
    C order), else through numpy's broadcasting."""
    ua, ub = a.view(np.uint8), b.view(np.uint8)
    fa, perm = _storage_flat(ua)
    if fa is not None and ua.shape == ub.shape and ua.strides == ub.strides:
        fb = ub.transpose(perm).reshape(-1)
        shape = tuple(ua.shape[i] for i in perm)
        out = np.empty(shape, table.dtype)
        fo = out.reshape(-1)
        idx = np.empty(min(fa.size, _LOOKUP_BLOCK), np.uint16)
        for i in range(0, fa.size, _LOOKUP_BLOCK):
            j = min(i + _LOOKUP_BLOCK, fa.size)
            ix = idx[: j - i]
            np.left_shift(fa[i:j], 8, out=ix, dtype=np.uint16)
            ix |= fb[i:j]
            table.take(ix, out=fo[i:j])
        return out.transpose(tuple(int(k) for k in np.argsort(perm)))
    idx = np.left_shift(ua, 8, dtype=np.uint16) | ub
    return table.take(idx)


_LOOKUP_BLOCK = 16384


def _storage_flat(x: np.ndarray) -> tuple[np.ndarray | None, tuple[int, ...]]:
    """``x``'s elements in memory order as a 1-D view, with the axis order that gives it
    (None when ``x`` is not a permuted C-ordered array)."""
    perm = tuple(sorted(range(x.ndim), key=lambda i: -x.strides[i]))
    t = x.transpose(perm)
    return (t.reshape(-1) if t.flags.c_contiguous else None), perm


def run_integer(graph: Graph, inputs: Mapping[str, np.ndarray], *, strategy: str | None = None,
                **kw: Any) -> dict[str, np.ndarray]:
    """The outputs of the quantized IR ``graph`` run in integers (a plain function for the
    accuracy and error commands). ``strategy``: the ``_t`` strategy's name; ``scale_shift*``
    selects the power-of-two arithmetic; without it, a graph carrying ``*_shift`` tensors is
    taken as ``scale_shift_t``. Other keywords go to ``IntegerInterpreter`` (``rounding``,
    ``overflow``, ``allow_float``, ``intermediate`` is ``run``'s)."""
    intermediate = kw.pop("intermediate", False)
    if "pow2" not in kw:
        kw["pow2"] = (strategy.startswith("scale_shift") if strategy is not None
                      else any(n.endswith("_shift") for n in graph.initializers))
    return IntegerInterpreter(graph, **kw).run(inputs, intermediate=intermediate)
