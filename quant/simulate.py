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

from fc.ir.core import Graph, Node, Value
from fc.np_ops import Interpreter
from fc.np_ops.interpreter import FRESH_OUTPUT_OPS
from fc.quant.plan import SCALE_PRESERVING
from fc.quant.qparams import QParams, fake_quant, fake_quant_step
from fc.quant.quantize import QuantSpec, fake_quant_output

__all__ = ["SimInterpreter", "Lockstep", "LayerObserver", "FixedPointSim", "fixed_point_model"]

# called with (node, float outputs, accumulated outputs, isolated outputs)
LayerObserver = Callable[[Node, tuple[np.ndarray, ...], tuple[np.ndarray, ...],
                          tuple[np.ndarray, ...]], None]


def _relu_output(node: Node) -> bool:
    """Whether every value ``node`` outputs is >= 0 or NaN: a Relu, or an op whose fused
    activation is relu or a clip from a bound >= 0."""
    if node.op_type == "Relu" and not node.attrs.get("activation"):
        return True
    act = node.attrs.get("activation", "")
    return act == "relu" or (act == "clip" and node.attrs.get("act_alpha", -1.0) >= 0)


class SimInterpreter(Interpreter):
    """The golden executor with constant subgraphs (dequantized weights) cached, and each
    QuantizeLinear -> DequantizeLinear pair of an activation computed as one ``fake_quant``
    (bit-identical, without the integer array in between), unless an observer wants to see
    the integers. The fake-quantized activation overwrites the tensor it rounds when nothing
    else can read that tensor (its one consumer is the pair, it is no graph output, and its
    producer is a computing op, which returns a new array, not a cached constant or a view of
    another tensor), except in a run with ``intermediate=True``, which returns every tensor.
    A pair on a ReLU's output (a Relu, or an op with a fused relu, or a clip from >= 0) skips
    the lower clamp (``fake_quant``'s ``nonneg``: the same bits). An Add of two feature maps
    of one shape and layout writes its sum into an input that is a pair's output read by
    nothing else (that array is the pair's own: ``fake_quant`` returns a new array or the
    producer's, which only the pair read), the same blocks and operations as the Add kernel
    without its new output array (no page faults), and when only a pair reads the sum, that
    pair's fake quantization runs on each block of it while the block is in cache (the pair
    then passes it on)."""


    def __init__(self, graph: Graph, **kw: Any):
        super().__init__(graph, **kw)
        self._cache: dict[str, tuple[np.ndarray, ...]] = {}
        self._const_nodes = {n.name for n in graph
                             if n.inputs and all(v is None or v.const is not None for v in n.inputs)}
        self._pairs: set[str] = set()   # QuantizeLinear nodes fused with their DequantizeLinear
        self._passthrough: set[str] = set()
        self._overwrite: set[str] = set()  # pairs that may round their input in place
        self._nonneg: set[str] = set()  # pairs whose input is a ReLU's output (>= 0 or NaN)
        self._add_into: dict[str, int] = {}  # Add -> the input it may sum into
        self._add_post: dict[str, tuple[str, Callable]] = {}  # Add -> its pair, the step
        self._conv_post: dict[str, tuple[str, Callable]] = {}  # Conv -> its pair, fake_quant_step
        self._prerounded: set[str] = set()  # pairs whose Conv rounded its output this run
        self._intermediate = False
        if self.observer is None and not self.overrides:
            outputs = {v.name for v in graph.outputs}
            for n in graph:
                users = n.output.users if n.op_type == "QuantizeLinear" else []
                if (len(users) == 1 and users[0].op_type == "DequantizeLinear"
                        and n.output.name not in outputs and users[0].inputs[1] is n.inputs[1]
                        and users[0].inputs[2] is n.inputs[2]):
                    self._pairs.add(n.name)
                    self._passthrough.add(users[0].name)
                    v = n.inputs[0]
                    prod = v.producer
                    if prod is not None and _relu_output(prod):
                        self._nonneg.add(n.name)
                    if (prod is not None and prod.op_type in FRESH_OUTPUT_OPS
                            and prod.name not in self._const_nodes and len(v.uses) == 1
                            and v.name not in outputs):
                        self._overwrite.add(n.name)
                        sc, zc = n.inputs[1].const, n.inputs[2].const
                        if (prod.op_type == "Conv" and sc is not None and zc is not None
                                and np.ndim(sc) == 0):
                            self._conv_post[prod.name] = (n.name, fake_quant_step(
                                QParams(sc, zc, n.attrs["qmin"], n.attrs["qmax"]),
                                nonneg=_relu_output(prod)))
            for n in graph:
                if (n.op_type != "Add" or len(n.inputs) != 2 or any(v is None for v in n.inputs)
                        or n.inputs[0].name == n.inputs[1].name):
                    continue
                for pos, v in enumerate(n.inputs):
                    prod = v.producer
                    if (prod is not None and prod.name in self._passthrough and len(v.uses) == 1
                            and v.name not in outputs):
                        self._add_into[n.name] = pos
                        break
                out = n.output
                pair = out.uses[0][0] if len(out.uses) == 1 else None
                if (n.name in self._add_into and pair is not None and pair.name in self._pairs
                        and out.name not in outputs):
                    sc, zc = pair.inputs[1].const, pair.inputs[2].const
                    if sc is not None and zc is not None and np.ndim(sc) == 0:
                        self._add_post[n.name] = (pair.name, fake_quant_step(
                            QParams(sc, zc, pair.attrs["qmin"], pair.attrs["qmax"]),
                            nonneg=_relu_output(n)))

    def run(self, inputs: Any, intermediate: bool = False) -> dict[str, np.ndarray]:
        self._intermediate = intermediate
        self._prerounded = set()  # (a run that failed half-way may have left some)
        return super().run(inputs, intermediate)

    def run_node(self, node: Node, args: list[np.ndarray | None]) -> tuple[np.ndarray, ...]:
        if node.name in self._const_nodes:
            out = self._cache.get(node.name)
            if out is None:
                out = self._cache[node.name] = super().run_node(node, args)
            return out
        if node.name in self._conv_post and not self._intermediate:
            y = self._conv_rounded(node, args)
            if y is not None:
                return (y,)
        if node.name in self._pairs:
            if node.name in self._prerounded:
                self._prerounded.discard(node.name)
                return (args[0],)
            x, s, z = args
            a = node.attrs
            p = QParams(s, z, a["qmin"], a["qmax"], None if np.ndim(s) == 0 else a["axis"] % x.ndim)
            return (fake_quant(x, p, overwrite=node.name in self._overwrite
                               and not self._intermediate, nonneg=node.name in self._nonneg),)
        if node.name in self._passthrough:
            return (args[0],)
        if node.name in self._add_into and not self._intermediate:
            pair, step = self._add_post.get(node.name, (None, None))
            y = _add_into(args, self._add_into[node.name], node.attrs, step)
            if y is not None:
                if pair is not None:
                    self._prerounded.add(pair)
                return (y,)
        return super().run_node(node, args)

    def _conv_rounded(self, node: Node, args: list[Any]) -> np.ndarray | None:
        """The Conv with its output pair's ``fake_quant`` steps applied in the convolution's
        epilogue (``conv_post``: on fc's GEMM, by the kernel on its registers before it
        stores, from the step's ``c_params``; else to each output block while it is in
        cache); the pair then passes it on. None when ``conv_post`` cannot (run the two
        apart)."""
        from fc.np_ops import conv as conv_mod
        from fc.np_ops.registry import get_kernel

        if get_kernel("Conv") is not conv_mod.conv or any(
                not isinstance(a, np.ndarray) or a.dtype != np.float32 for a in args):
            return None
        pair, step = self._conv_post[node.name]
        b = args[2] if len(args) > 2 else None
        y = conv_mod.conv_post(args[0], args[1], b, step, **node.attrs)
        if y is not None:
            self._prerounded.add(pair)
        return y


def _add_into(args: list[Any], pos: int, attrs: Mapping[str, Any],
              post: Callable[[np.ndarray], None] | None = None) -> np.ndarray | None:
    """The Add kernel's blocked sum of two feature maps (``fc.np_ops.elementwise.add``: the
    same float32 additions, slabs and activation) into ``args[pos]``, then ``post`` (its
    output pair's ``fake_quant_step``) on each block while it is in cache; None when the
    kernel would not take that path or the inputs differ in layout (the output keeps A's
    layout)."""
    from fc.np_ops import _parallel
    from fc.np_ops.elementwise import add_blocks

    a, b = args
    if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape == b.shape
            and a.dtype == b.dtype == np.float32 and a.strides == b.strides
            and a.nbytes >= _parallel.MIN_PARALLEL_BYTES and args[pos].flags.writeable):
        return None
    return add_blocks(a, b, args[pos], attrs["activation"], attrs["act_alpha"],
                      attrs["act_beta"], post)


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


# -- the float simulation of the _t arithmetic ----------------------------------------------

_MODELLED = frozenset({"Conv", "Gemm", "Add", "GlobalAveragePool", "AveragePool", "Concat"})


def _round(t: np.ndarray, mode: str) -> np.ndarray:
    """Round float64 ``t`` to integers: ``up`` half towards +inf, ``away`` half away from
    zero, ``even`` half to even."""
    if mode == "up":
        return np.floor(t + 0.5)
    if mode == "away":
        return np.copysign(np.floor(np.abs(t) + 0.5), t)
    return np.rint(t)


def fixed_point_model(v: np.ndarray, real: np.ndarray | float, rounding: str) -> np.ndarray:
    """``v * real`` rounded the way the chip requantizes, in float64 (``v``: the
    accumulator's value, an integer up to float64 noise; ``real`` > 0, per channel along
    axis 1 when 1-D). The multiplier is the effective one, M0 * 2^(left - 31 - n) of
    ``fc.np_ops.integer.quantize_multipliers`` (not the float ratio); ``rounding``:

    - ``"single"``: one rounding, half up (TFLite's TFLITE_SINGLE_ROUNDING);
    - ``"gemmlowp"``: v * 2^left (saturated to int32), then x * M0 / 2^31 rounded half up
      (SaturatingRoundingDoublingHighMul's nudge rounds exact ties of negative products
      towards zero: floor(x + 1/2)), then / 2^n rounded half away from zero
      (RoundingDivideByPOT).

    float64 is exact enough: the exact value's fraction is a multiple of 2^-(31 + n) and the
    float64 error of v * M0 2^-(31 + n) is below 2^-40 for |v * real| < 2^12."""
    from fc.np_ops.integer import INT32_MAX, INT32_MIN, quantize_multipliers

    v = np.asarray(v, np.float64)
    reals = np.asarray(real, np.float64)
    m0, n, left = quantize_multipliers(reals)
    m0, n, left = (a.astype(np.float64) for a in (m0, n, left))
    if reals.ndim == 1 and reals.size > 1:
        shape = (1, -1) + (1,) * (v.ndim - 2)
        m0, n, left = m0.reshape(shape), n.reshape(shape), left.reshape(shape)
    if rounding == "single":
        return _round(v * m0 * np.exp2(left - 31 - n), "up")
    if rounding != "gemmlowp":
        raise ValueError(f"rounding {rounding!r} is not 'gemmlowp' or 'single'")
    x = np.clip(v * np.exp2(left), INT32_MIN, INT32_MAX)
    hi = _round(x * m0 * 2.0 ** -31, "up")
    return _round(hi * np.exp2(-n), "away")


class FixedPointSim(Interpreter):
    """The simulation of ``symmetry_max_t``: the quantized IR run in float, with each
    requantization modelling the integer executor's arithmetic, so that the simulation and
    the integer run agree bit for bit where float64 can tell (in practice everywhere).

    What is float: every activation and weight is its dequantized value (q - z) * s, in
    float64 (exact: 8 x 24 bits); Conv/Gemm run fc's float kernels on them, AveragePool's
    and GlobalAveragePool's means and Add's sums are float; every op outside the integer set
    is float. What is the chip's: at a layer's ``QuantizeLinear``, the value y becomes
    ``fixed_point_model(y / s_acc, s_acc / s_out)`` with the layer's accumulator scale
    s_acc (s_x * s_w per channel for Conv/Gemm) and the effective multiplier and rounding
    of the integer run; the bias enters at s_x * s_w (what the int32 accumulator adds, not
    the float32 ``B_scale`` of the file, which is s_x * s_w rounded to 24 bits); a fused
    ReLU/ReLU6 clamps the rounded integers (the integer executor's clamp) instead of the
    float value; Add rescales each input at 2^20 first and the pools use one rounding,
    as ``fc.quant.integer_run`` documents. The plain ``SimInterpreter`` (float32, one
    round-half-to-even at each ``QuantizeLinear`` with the file's scales) is the QDQ
    graph's own meaning; it differs from the integer run on ~1e-5 of each layer's values
    (float32 noise at rounding edges, the bias scale, double rounding), and a network
    amplifies those single steps (see ``tests/quant/test_integer_efficientnet.py``).

    Power-of-two graphs (``scale_shift_t``) need none of this: their integer run is the
    plain simulation bit for bit."""

    def __init__(self, graph: Graph, *, rounding: str = "gemmlowp", **kw: Any):
        super().__init__(graph, **kw)
        if rounding not in ("gemmlowp", "single"):
            raise ValueError(f"rounding {rounding!r} is not 'gemmlowp' or 'single'")
        self.rounding = rounding
        outputs = {v.name for v in graph.outputs}
        self._q: dict[str, Node] = {}      # layer -> the QuantizeLinear of its output
        for n in graph:
            users = n.outputs[0].users if n.outputs else []
            if (n.op_type in _MODELLED and len(users) == 1 and users[0].op_type == "QuantizeLinear"
                    and n.outputs[0].name not in outputs):
                self._q[n.name] = users[0]
        self._layer_q = {q.name for q in self._q.values()}
        self._scales: dict[str, tuple[float, float, int]] = {}  # DQ output -> s, z, axis
        for n in graph:
            if n.op_type == "DequantizeLinear":
                self._scales[n.output.name] = (n.inputs[1].const, n.inputs[2].const, n.attrs["axis"])
            elif n.op_type in SCALE_PRESERVING and n.inputs[0].name in self._scales:
                for v in n.outputs:  # MaxPool, Reshape, ...: the same integers
                    self._scales[v.name] = self._scales[n.inputs[0].name]
        self._outputs = outputs
        self._const_nodes = {n.name for n in graph
                             if n.inputs and all(v is None or v.const is not None for v in n.inputs)}
        self._cache: dict[str, tuple[np.ndarray, ...]] = {}
        self._ints: dict[str, np.ndarray] = {}

    def _dq(self, node: Node, args: list[Any]) -> np.ndarray:
        q, s, z = args[0], np.asarray(args[1], np.float64), np.asarray(args[2], np.float64)
        if s.ndim == 1:
            shape = [1] * q.ndim
            shape[node.attrs["axis"] % q.ndim] = -1
            s, z = s.reshape(shape), z.reshape(shape)
        return (q.astype(np.float64) - z) * s

    def _scale(self, v: Value) -> np.ndarray:
        return np.asarray(self._scales[v.name][0], np.float64)

    def run_node(self, node: Node, args: list[np.ndarray | None]) -> tuple[np.ndarray, ...]:
        if node.name in self._const_nodes:
            out = self._cache.get(node.name)
            if out is None:
                out = self._cache[node.name] = self._plain(node, args)
            return out
        return self._plain(node, args)

    def _plain(self, node: Node, args: list[Any]) -> tuple[np.ndarray, ...]:
        op = node.op_type
        if op == "DequantizeLinear" and node.output.name not in self._outputs:
            return (self._dq(node, args),)
        if op == "QuantizeLinear" and node.name in self._layer_q:
            return (self._ints.pop(node.inputs[0].name),)
        if node.name in self._q:
            self._ints[node.output.name] = self._layer(node, args)
            return (np.zeros((), np.float64),)  # stands in; its QuantizeLinear reads _ints
        return super().run_node(node, args)

    def _layer(self, node: Node, args: list[Any]) -> np.ndarray:
        op, q = node.op_type, self._q[node.name]
        s_out = np.float64(q.inputs[1].const)
        attrs = dict(node.attrs)
        if "activation" in attrs:
            attrs["activation"] = ""
        fn = self.kernel_for(node)
        if op in ("Conv", "Gemm"):
            s_acc = self._scale(node.inputs[0]) * self._scale(node.inputs[1])
            shape = (1, -1) + (1,) * (np.ndim(args[0]) - 2) if op == "Conv" else (1, -1)
            a = list(args)
            if len(a) > 2 and a[2] is not None:
                bq = node.inputs[2].producer.inputs[0].const  # the int32 bias, at s_x * s_w
                a[2] = bq.astype(np.float64) * s_acc
            y = fn(*a, **attrs)
            acc = y / (s_acc.reshape(shape) if s_acc.ndim else s_acc)
            r = fixed_point_model(acc, s_acc / s_out, self.rounding)
        elif op == "Add":
            sa, sb = (float(self._scale(v)) for v in node.inputs[:2])
            da, db = args[0] / sa, args[1] / sb
            twice = 2 * max(sa, sb)
            left = 1 << 20
            ra = fixed_point_model(da * left, sa / twice, self.rounding)
            rb = fixed_point_model(db * left, sb / twice, self.rounding)
            r = fixed_point_model(ra + rb, twice / (left * s_out), self.rounding)
        elif op == "GlobalAveragePool":
            s_in = float(self._scale(node.inputs[0]))
            n = int(np.prod(np.shape(args[0])[2:]))
            total = fn(*args, **attrs) * n / s_in  # the sum of the integers
            r = fixed_point_model(total, s_in / (n * s_out), "single")
        elif op == "AveragePool":
            from fc.np_ops.integer import avg_pool_sums

            s_in = float(self._scale(node.inputs[0]))
            x = args[0]
            counts = avg_pool_sums(np.zeros((1, 1) + x.shape[2:], np.int64),
                                   kernel_shape=attrs["kernel_shape"], strides=attrs["strides"],
                                   pads=attrs["pads"], ceil_mode=attrs["ceil_mode"],
                                   count_include_pad=attrs["count_include_pad"])[1]
            total = np.rint(fn(x, **attrs) * counts / s_in)  # the window sums of the integers
            if s_in == s_out:
                r = _round(total / counts, "even")
            else:
                r = np.empty_like(total)
                for c in np.unique(counts):
                    at = counts == c
                    r[:, :, at] = fixed_point_model(total[:, :, at], s_in / (int(c) * s_out),
                                                    "single")
        elif op == "Concat":
            parts = []
            for v, a in zip(node.inputs, args):
                s = float(self._scale(v))
                d = a / s
                parts.append(d if s == s_out else fixed_point_model(d, s / s_out, self.rounding))
            r = np.concatenate(parts, axis=attrs["axis"])
        else:  # pragma: no cover - _MODELLED lists the ops above
            raise AssertionError(op)
        return self._clamp(node, q, r)

    @staticmethod
    def _clamp(node: Node, q: Node, r: np.ndarray) -> np.ndarray:
        s, z = float(q.inputs[1].const), int(q.inputs[2].const)
        lo, hi = q.attrs["qmin"], q.attrs["qmax"]
        act = node.attrs.get("activation", "")
        if act == "relu":
            lo = max(lo, z)
        elif act == "clip":
            lo = max(lo, z + int(np.rint(node.attrs["act_alpha"] / s)))
            hi = min(hi, z + int(np.rint(node.attrs["act_beta"] / s)))
        elif act:
            raise ValueError(f"node {node.name!r}: fused activation {act!r} is not a clamp")
        return np.clip(r + z, lo, hi).astype(q.inputs[2].const.dtype)
