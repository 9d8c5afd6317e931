"""The golden executor: an interpreter over an environment dict of numpy arrays.

``run(graph, inputs)`` evaluates nodes in order; each value is freed after its last use
(unless ``intermediate=True``, which returns every tensor, for per-layer reports). A kernel
failure is re-raised as ``ExecutionError`` naming the node and op. The graph's stored shapes
are not used, so a graph compiled at batch 1 runs at any batch size. Tensors may be stored
channels-last inside a run (``fc.np_ops.conv``): they are NCHW arrays all the same, views with
other strides, and the outputs ``run`` returns are C-contiguous.

Two hooks, in the shape of torch.fx's ``Interpreter`` and the ONNX reference evaluator's
``new_ops``, let quantization and per-layer tools reuse the executor without forking it:

- ``overrides={"Conv": fake_quant_conv}`` replaces kernels by op type for one run (same
  calling convention as kernels: tensors positional, complete attributes keyword-only);
  the global table (``fc.np_ops.registry.KERNELS``) is untouched.
- ``observer(node, outputs)`` is called after each node with that node's outputs, as they
  are produced. Dead tensors are still freed, so calibration over many images streams: an
  observer that keeps statistics, not arrays, holds one layer's tensors at a time. Arrays
  passed to the observer are shared with the run and must not be mutated.

Subclass ``Interpreter`` and override ``run_node`` for anything else (torch.fx style).

Two fusions happen at run time, invisible in results. A Conv (activation relu or none)
whose output only a MaxPool reads runs as ``fc.np_ops.nn.conv_max_pool``: the GEMMs, the
pooling, then the bias and relu on the pooled map (a maximum commutes with both exactly, so
the same bits; declined at run time when a pooling window reads padding only), the MaxPool
then handing on that result. And a residual ``Add`` whose operand is the output of an
ordinary ``Conv`` without activation, read by that Add only, has the other operand added in
the convolution's epilogue (``fc.np_ops.conv.conv_residual``: the same float32 operations in
the same order, so the same bits), saving a pass over three feature maps; the Add then hands
on the sum. Both apply only where nothing could tell: no ``intermediate``, no override of
Conv or of the other op, ``run_node``/``kernel_for`` not overridden, the Conv output not a
graph output; for the Add, the other operand computed before the Conv; for the MaxPool, no
observer. With an observer the residual Add is still fused, in the form that hands it every
node's own output: ``conv_residual(keep_conv=True)`` keeps the Conv's output (+ bias) beside
a new array for the sum (the observer sees the Conv's output after the Conv, the sum after
the Add, the bits of the unfused run), and the sum never goes into the residual's memory,
which an observer may still be reading (calibration folds on a worker thread). When that
operand is dead after the Add (made by an op of ``FRESH_OUTPUT_OPS``, not a graph output,
the Add its last reader, not read by the Conv, and at run time no live tensor or caller's input sharing its
memory), the sum is written into its memory instead of a new feature map
(``conv_residual(overwrite=True)``, the same bits): ResNet-50 batch 8, same-process A/B
alternated, load ~1.1-1.5, per-node minima summed 645 -> 610 ms, wall minimum 721 -> 654 ms
(under heavier load, ~3.5-4, within the noise: 904 -> 868 and 522 -> 506 ms minima, medians
mixed); batch 1 unchanged (its maps stay in cache).

A run's large outputs (the convolutions', the MaxPool's, at least 1 MiB) come from buffers it
or an earlier run of this thread used and nothing references any more
(``fc.np_ops.buffers``), instead of memory glibc may have handed back to the system and maps
again, zeroed, page by page. ResNet-50 b8, back-to-back runs in fresh processes (3 x 2
alternated, 15 runs each): 1,800-2,300 page faults and 25-39 ms of system time per run ->
5 and 7.5-8.6 ms; medians 245 / 242 / 225 -> 217 / 224 / 226 ms; b1 had ~30 faults per run
and is unchanged.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from fc.errors import ExecutionError, FcError
from fc.ir.core import Graph, Node
from fc.ir.registry import check_signature
from fc.ir.schema import has_schema
from fc.np_ops import buffers
from fc.np_ops.registry import Kernel, get_kernel

_FUSE_RESIDUAL = True  # tests turn it off to compare
_OVERWRITE_RESIDUAL = True  # the fused Add's sum into its dead residual (tests compare)
_FUSE_POOL = True  # a Conv read only by a MaxPool: nn.conv_max_pool (tests turn it off)
_REUSE_BUFFERS = True  # large outputs from fc.np_ops.buffers' pool (tests, benchmarks compare)
_conv_mod = None  # fc.np_ops.conv, imported at first use (it imports this package)

#: Ops whose kernels always return an array of their own: never an input, a view of one
#: (Identity, Reshape, Transpose, ...) or a constant, so a later node may write into their
#: output once nothing else reads it (the fused residual Add here, the simulation's in-place
#: fake-quant in fc.quant.simulate).
FRESH_OUTPUT_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "MaxPool",
                              "GlobalAveragePool"})

__all__ = ["Interpreter", "Observer", "run"]

Observer = Callable[[Node, tuple[np.ndarray, ...]], None]


def _check_inputs(graph: Graph, inputs: Mapping[str, Any] | np.ndarray) -> dict[str, np.ndarray]:
    if isinstance(inputs, np.ndarray):
        if len(graph.inputs) != 1:
            raise ExecutionError(f"graph has {len(graph.inputs)} inputs "
                                 f"{[v.name for v in graph.inputs]}; pass a dict")
        inputs = {graph.inputs[0].name: inputs}
    missing = [v.name for v in graph.inputs if v.name not in inputs]
    extra = sorted(set(inputs) - {v.name for v in graph.inputs})
    if missing or extra:
        raise ExecutionError(f"inputs: missing {missing}, unexpected {extra}; graph inputs are "
                             f"{[v.name for v in graph.inputs]}")
    env = {}
    for v in graph.inputs:
        arr = np.asarray(inputs[v.name])
        if arr.dtype.name != v.dtype:
            raise ExecutionError(f"input {v.name!r}: dtype {arr.dtype.name}, graph expects {v.dtype}")
        if v.shape is not None and (arr.ndim != len(v.shape) or arr.shape[1:] != v.shape[1:]):
            raise ExecutionError(f"input {v.name!r}: shape {list(arr.shape)}, graph expects "
                                 f"{list(v.shape)} (only the batch dim may differ)")
        env[v.name] = arr
    return env


def _check_overrides(overrides: Mapping[str, Kernel] | None) -> dict[str, Kernel]:
    """Overrides follow the kernels' convention; checked up front so that a typo in an op
    name or a keyword fails before a long calibration run, not silently or at its end.
    Callables without an inspectable signature (numpy ufuncs) are checked for the op only."""
    table = dict(overrides or {})
    for op, fn in table.items():
        if not callable(fn):
            raise ExecutionError(f"override for {op!r} is not callable: {fn!r}")
        if not has_schema(op):
            raise ExecutionError(f"override for {op!r}, which has no schema (fc.ir.schemas)")
        try:
            inspect.signature(fn)
        except (TypeError, ValueError):
            continue
        try:
            check_signature("kernel override", op, fn)
        except ValueError as e:
            raise ExecutionError(str(e)) from None
    return table


def _contiguous(a: np.ndarray) -> np.ndarray:
    return a if not isinstance(a, np.ndarray) or a.flags.c_contiguous else np.ascontiguousarray(a)


class Interpreter:
    """Runs a graph with numpy kernels; ``run_node`` is the one place a node is executed.

    ``overrides`` and ``observer`` are those of ``fc.np_ops.run``. The graph is read at each
    ``run``, so one interpreter can run many batches (of any batch size).
    """

    def __init__(self, graph: Graph, *, overrides: Mapping[str, Kernel] | None = None,
                 observer: Observer | None = None):
        self.graph = graph
        self.overrides = _check_overrides(overrides)
        self.observer = observer

    def kernel_for(self, node: Node) -> Kernel:
        """The function that runs ``node``: its override for this interpreter, else the
        registered kernel."""
        fn = self.overrides.get(node.op_type)
        return fn if fn is not None else get_kernel(node.op_type)

    @staticmethod
    def _run_conv_residual(node: Node, args: list[np.ndarray | None],
                           entry: tuple[Node, int, str, bool], env: dict[str, np.ndarray],
                           summed: dict[int, int | np.ndarray],
                           live: set[str] | None = None,
                           protected: tuple[np.ndarray, ...] = (), keep_conv: bool = False
                           ) -> tuple[np.ndarray, ...] | None:
        """``live``: the names in ``env`` that are not weights (``run`` keeps that set as it
        goes; the weights are most of ``env``), None for all of ``env``."""
        global _conv_mod
        if _conv_mod is None:
            from fc.np_ops import conv as _conv_mod
        conv_residual = _conv_mod.conv_residual

        add, pos, other, overwrite = entry
        if len(args) < 2:
            return None
        res = env[other]
        if overwrite:
            # No other live tensor (a view made by Reshape, Identity, ...) and no caller's
            # input may share the residual's memory; weights are never written either.
            overwrite = not any(np.may_share_memory(a, res) for a in protected) and not any(
                name != other and isinstance(env[name], np.ndarray)
                and np.may_share_memory(env[name], res) for name in (env if live is None
                                                                     else live))
        at = add.attrs
        y = conv_residual(args[0], args[1], args[2] if len(args) > 2 else None, res,
                          **node.attrs, add_activation=at["activation"],
                          add_alpha=at["act_alpha"], add_beta=at["act_beta"],
                          overwrite=overwrite, keep_conv=keep_conv)
        if y is None:
            return None
        if keep_conv:  # the Conv's own output now, the sum when the Add's turn comes
            y, summed[id(add)] = y
        else:
            summed[id(add)] = pos
        return (y,)

    def run_node(self, node: Node, args: list[np.ndarray | None]) -> tuple[np.ndarray, ...]:
        """Execute one node on its input arrays (trailing absent optionals dropped, inner ones
        None); return its outputs as a tuple. Errors are wrapped by ``run`` to name the node."""
        result = self.kernel_for(node)(*args, **node.attrs)
        return tuple(result) if isinstance(result, list | tuple) else (result,)

    def _may_fuse(self, intermediate: bool, op: str, fn: Kernel, observed: bool = False
                  ) -> bool:
        """Whether a Conv may be fused with a node of ``op`` (whose registered kernel must be
        ``fn``): nothing could tell (see the module docstring); ``observed``: a fusion that
        still hands the observer every node's own outputs."""
        from fc.np_ops import conv as conv_mod

        return not (intermediate or (self.observer is not None and not observed)
                    or "Conv" in self.overrides or op in self.overrides
                    or type(self).run_node is not Interpreter.run_node
                    or type(self).kernel_for is not Interpreter.kernel_for
                    or get_kernel("Conv") is not conv_mod.conv or get_kernel(op) is not fn)

    def _pool_plan(self, intermediate: bool) -> dict[int, Node]:
        """Conv nodes whose output only a MaxPool reads (with an activation that commutes
        with a maximum; not a graph output, the MaxPool without an Indices output): id(conv)
        -> the MaxPool, run as ``fc.np_ops.nn.conv_max_pool``."""
        from fc.np_ops import nn

        if not _FUSE_POOL or not self._may_fuse(intermediate, "MaxPool", nn.max_pool):
            return {}
        outputs = {v.name for v in self.graph.outputs}
        plan: dict[int, Node] = {}
        for node in self.graph:
            if (node.op_type != "MaxPool" or not node.inputs or node.inputs[0] is None
                    or len(node.outputs) != 1):
                continue
            y = node.inputs[0]
            conv = y.producer
            if (conv is None or conv.op_type != "Conv"
                    or conv.attrs.get("activation") not in nn._MAX_COMMUTES
                    or y.name in outputs or len(y.uses) != 1):
                continue
            plan[id(conv)] = node
        return plan

    def _residual_plan(self, intermediate: bool) -> dict[int, tuple[Node, int, str, bool]]:
        """Conv nodes whose residual Add runs in their epilogue: id(conv) -> (the Add, the
        Conv output's position among the Add's inputs, the other input's name, whether the
        sum may be written into the other input's memory: the output of an op in
        ``FRESH_OUTPUT_OPS`` (not a view that Identity, Reshape or Transpose made of a weight
        or of another tensor), not a graph output, read by the Add last and not by the Conv;
        ``_run_conv_residual`` also checks at run time that no live tensor or caller's input
        shares its memory)."""
        from fc.np_ops import elementwise

        if not _FUSE_RESIDUAL or not self._may_fuse(intermediate, "Add", elementwise.add,
                                                     observed=True):
            return {}
        watched = self.observer is not None  # the Conv's output kept: no sum into memory
        graph = self.graph
        order = {id(n): i for i, n in enumerate(graph)}
        outputs = {v.name for v in graph.outputs}
        plan: dict[int, tuple[Node, int, str, bool]] = {}
        for node in graph:
            if node.op_type != "Add" or len(node.inputs) != 2 or any(v is None for v in node.inputs):
                continue
            a, b = node.inputs
            if a.name == b.name:
                continue
            for pos, (y, other) in enumerate(((a, b), (b, a))):
                conv = y.producer
                if (conv is None or conv.op_type != "Conv" or id(conv) in plan
                        or conv.attrs.get("group") != 1 or conv.attrs.get("activation")
                        or y.name in outputs or len(y.uses) != 1):
                    continue
                src = other.producer
                if src is not None and order.get(id(src), len(order)) >= order[id(conv)]:
                    continue  # the other operand does not exist yet when the Conv runs
                overwrite = (_OVERWRITE_RESIDUAL and not watched and src is not None
                             and src.op_type in FRESH_OUTPUT_OPS
                             and src.op_type not in self.overrides and other.name not in outputs
                             and all(order[id(u)] <= order[id(node)] for u in other.users)
                             and all(v is None or v.name != other.name for v in conv.inputs))
                plan[id(conv)] = (node, pos, other.name, overwrite)
                break
        return plan

    def run(self, inputs: Mapping[str, Any] | np.ndarray, intermediate: bool = False
            ) -> dict[str, np.ndarray]:
        """Execute the graph; return its outputs by name (every tensor, weights included, with
        ``intermediate``). The kernels' large outputs reuse buffers nothing references any
        more (``fc.np_ops.buffers``)."""
        if not _REUSE_BUFFERS:
            return self._run(inputs, intermediate)
        with buffers.reuse():
            return self._run(inputs, intermediate)

    def _run(self, inputs: Mapping[str, Any] | np.ndarray, intermediate: bool
             ) -> dict[str, np.ndarray]:
        graph = self.graph
        env: dict[str, np.ndarray] = _check_inputs(graph, inputs)
        protected = tuple(env.values())  # the caller's input arrays: never written
        live = set(env)  # the names in env that are not weights
        for name, v in graph.initializers.items():
            env[name] = v.const
        # The schedule, made once per run in one tight loop so that the loop below touches
        # little per node: each node's input names (trailing absent optionals dropped), its
        # kernel, and the tensors to drop after it, each right after its last consumer ran
        # (and an output nobody reads right after its producer and the observer). Between
        # two nodes a GEMM has flushed the cache, and the loop's own work then costs 5-10x
        # its in-cache time (ResNet-50 b1, kernels replaced by a 4 / 12 MB copy each: 0.17
        # ms per run in cache, 0.9 / 2.1-3.0 ms so; this schedule: 0.7 / 1.6-2.4 ms).
        keep = {v.name for v in graph.outputs}
        nodes = list(graph)
        in_names: list[tuple[str | None, ...]] = []
        last: dict[str, int] = {}
        for i, node in enumerate(nodes):
            names = [None if v is None else v.name for v in node.inputs]
            while names and names[-1] is None:
                names.pop()
            in_names.append(tuple(names))
            for v in node.inputs:
                if v is not None and v.const is None:
                    last[v.name] = i
        dead_inputs: list[list[str]] = [[] for _ in nodes]
        dead_outputs: list[list[str]] = [[] for _ in nodes]
        if not intermediate:
            for name, i in last.items():
                if name not in keep:
                    dead_inputs[i].append(name)
            read = {v.name for node in nodes for v in node.inputs if v is not None}
            for i, node in enumerate(nodes):
                dead_outputs[i] = [v.name for v in node.outputs
                                   if v.name not in read and v.name not in keep]

        plan = self._residual_plan(intermediate)
        pool_plan = self._pool_plan(intermediate)
        # id(node) -> its fusion: ("res", plan entry) or ("pool", the MaxPool)
        fuse: dict[int, tuple[str, Any]] = {k: ("res", e) for k, e in plan.items()}
        fuse.update((k, ("pool", pool)) for k, pool in pool_plan.items())
        # id(Add or MaxPool) -> what it hands on: ("sum", the position of its input that
        # holds the sum, or the sum itself when observed) or ("pool", None) (its input holds
        # its result)
        handed: dict[int, tuple[str, Any]] = {}
        keep_conv = self.observer is not None
        observer = self.observer
        # Each node's kernel, looked up here when run_node and kernel_for are Interpreter's
        # own (else run_node per node, as a subclass expects); None: run_node raises then.
        kernels: list[Kernel | None] = [None] * len(nodes)
        if (type(self).run_node is Interpreter.run_node
                and type(self).kernel_for is Interpreter.kernel_for):
            for i, node in enumerate(nodes):
                try:
                    kernels[i] = self.kernel_for(node)
                except FcError:
                    pass
        for node, names, drop_in, drop_out, fn in zip(nodes, in_names, dead_inputs,
                                                      dead_outputs, kernels):
            args = [None if n is None else env[n] for n in names]
            try:
                results = None
                key = id(node)
                if key in handed:
                    kind, held = handed.pop(key)
                    if kind == "pool":
                        results = (args[0],)
                    else:
                        results = (held if keep_conv else args[held],)
                elif key in fuse:
                    kind, entry = fuse[key]
                    if kind == "res":
                        summed: dict[int, int | np.ndarray] = {}
                        results = self._run_conv_residual(node, args, entry, env, summed,
                                                          live, protected, keep_conv)
                        for k, held in summed.items():
                            handed[k] = ("sum", held)
                    elif len(args) >= 2:
                        from fc.np_ops.nn import conv_max_pool

                        y = conv_max_pool(args[0], args[1], args[2] if len(args) > 2 else None,
                                          node.attrs, entry.attrs)
                        if y is not None:
                            handed[id(entry)] = ("pool", None)
                            results = (y,)
                if results is None:
                    if fn is None:
                        results = self.run_node(node, args)
                    else:  # run_node's body
                        result = fn(*args, **node.attrs)
                        results = (tuple(result) if isinstance(result, list | tuple)
                                   else (result,))
                        del result
            except FcError as e:
                raise ExecutionError(f"node {node.name!r} ({node.op_type}): {e}") from e
            except Exception as e:  # a numpy error inside a kernel: name the node
                shapes = [None if a is None else list(np.shape(a)) for a in args]
                raise ExecutionError(f"node {node.name!r} ({node.op_type}) failed on inputs "
                                     f"{shapes}: {type(e).__name__}: {e}") from e
            del args  # the loop variable would keep the inputs alive past their last use
            outputs = node.outputs
            if len(results) != len(outputs):
                raise ExecutionError(f"node {node.name!r} ({node.op_type}): kernel returned "
                                     f"{len(results)} outputs, node has {len(outputs)}")
            for v, r in zip(outputs, results):
                env[v.name] = r
                live.add(v.name)
            for name in drop_in:
                del env[name]
                live.discard(name)
            if observer is not None:
                observer(node, results)
            for name in drop_out:
                env.pop(name, None)
                live.discard(name)
            del results
        if intermediate:
            return env
        # Kernels may return strided views (a Conv's channels-last output): hand the caller
        # plain C-ordered arrays (a no-op for the usual small outputs).
        return {v.name: _contiguous(env[v.name]) for v in graph.outputs}


def run(graph: Graph, inputs: Mapping[str, Any] | np.ndarray, *, intermediate: bool = False,
        overrides: Mapping[str, Kernel] | None = None, observer: Observer | None = None
        ) -> dict[str, np.ndarray]:
    """Execute ``graph``; return its outputs by name (every tensor with ``intermediate``).

    ``overrides`` maps op types to kernels used instead of the registered ones in this run
    only; ``observer(node, outputs)`` is called after each node, while dead tensors are
    still freed (see the module docstring)."""
    return Interpreter(graph, overrides=overrides, observer=observer).run(
        inputs, intermediate=intermediate)
