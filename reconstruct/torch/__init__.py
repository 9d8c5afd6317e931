"""Rebuild an fc graph as a ``torch.nn.Module`` made of real torch layers.

``reconstruct(graph)`` returns a ``torch.fx.GraphModule``: each IR node becomes a call of a
torch layer (``nn.Conv2d``, ``nn.BatchNorm2d``, ``nn.Linear``, ...) or a torch function, in
the IR's order. From IR_for_reconstruct it trains (every weight is an ``nn.Parameter``, BN
keeps its running statistics); from IR_fused_for_CModel it is the inference model the
hardware runs, fused activations written out as calls. ``write_back(module, graph)`` puts
the module's (trained) tensors back into a copy of the IR, ``save_py`` writes a standalone
source file, ``export_program`` an ``ExportedProgram`` (.pt2).

The module is returned in eval mode; ``module.fc_info`` remembers the IR names (weights,
values, inputs, outputs) that the helpers here use.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.fx as fx

from fc.errors import FcError, ReconstructError
from fc.ir.clone import clone
from fc.ir.core import Graph
from fc.reconstruct.torch.builder import Binding, Builder, ReconstructInfo
from fc.reconstruct.torch.pyfile import save_py
from fc.reconstruct.torch.registry import LOWERINGS

__all__ = ["reconstruct", "write_back", "run_numpy", "run_intermediates", "export_program",
           "save_py", "unsupported_ops", "LOWERINGS", "Binding", "ReconstructInfo"]


def unsupported_ops(graph: Graph) -> dict[str, list[str]]:
    """Op type -> names of the nodes that have no torch lowering."""
    out: dict[str, list[str]] = {}
    for node in graph:
        if node.op_type not in LOWERINGS:
            out.setdefault(node.op_type, []).append(node.name)
    return out


def _check_supported(graph: Graph) -> None:
    missing = unsupported_ops(graph)
    if missing:
        parts = []
        for op, names in sorted(missing.items()):
            more = f", ... (+{len(names) - 3})" if len(names) > 3 else ""
            parts.append(f"{op} x{len(names)} ({', '.join(repr(n) for n in names[:3])}{more})")
        raise ReconstructError(f"graph {graph.name!r}: {len(missing)} op type(s) have no torch "
                               f"lowering: {'; '.join(parts)}")


def reconstruct(graph: Graph, *, trainable: bool = True) -> fx.GraphModule:
    """The torch module computing ``graph`` (in eval mode).

    ``trainable=False`` makes every parameter ``requires_grad=False`` (inference only).
    Every op without a lowering is listed in one ``ReconstructError``.
    """
    _check_supported(graph)
    b = Builder(graph, trainable=trainable)
    for v in graph.inputs:
        b.placeholder(v)
    for node in graph:
        b.node = node
        args = list(node.inputs)
        while args and args[-1] is None:
            args.pop()
        try:
            result = LOWERINGS.get(node.op_type)(b, *args, **node.attrs)
        except ReconstructError as e:
            if str(e).startswith("node "):
                raise
            raise ReconstructError(f"node {node.name!r} ({node.op_type}): {e}") from None
        except Exception as e:  # a torch refusal while building: name the node
            raise ReconstructError(f"node {node.name!r} ({node.op_type}): cannot build the torch "
                                   f"layer: {type(e).__name__}: {e}") from e
        b.bind_outputs(node, result)
    b.node = None
    return b.finish().eval()


def _info(module: torch.nn.Module) -> ReconstructInfo:
    info = getattr(module, "fc_info", None)
    if not isinstance(info, ReconstructInfo):
        raise ReconstructError("the module was not made by fc.reconstruct.torch.reconstruct "
                               "(it has no fc_info)")
    return info


def write_back(module: torch.nn.Module, graph: Graph) -> Graph:
    """A copy of ``graph`` whose weights are the module's current tensors (e.g. after
    training): every bound parameter and buffer, in the IR's layout and dtype."""
    info = _info(module)
    state = module.state_dict()
    out = clone(graph)
    for key, binding in info.bindings.items():
        v = out.initializers.get(binding.ir_name)
        if v is None:
            raise ReconstructError(f"graph {graph.name!r} has no weight {binding.ir_name!r} "
                                   f"(module tensor {key!r})")
        if key not in state:
            raise ReconstructError(f"module has no tensor {key!r} (IR weight {binding.ir_name!r})")
        arr = binding.to_ir(state[key], v.const.dtype)
        if arr.shape != v.const.shape:
            raise ReconstructError(f"module tensor {key!r} {list(arr.shape)} does not fit IR weight "
                                   f"{binding.ir_name!r} {list(v.const.shape)}")
        v.const = arr
    return out


def _feeds(info: ReconstructInfo, inputs: Mapping[str, Any] | np.ndarray) -> list[torch.Tensor]:
    if isinstance(inputs, np.ndarray | torch.Tensor):
        if len(info.inputs) != 1:
            raise ReconstructError(f"the model has {len(info.inputs)} inputs {info.inputs}; pass "
                                   "a dict")
        inputs = {info.inputs[0]: inputs}
    missing = [n for n in info.inputs if n not in inputs]
    extra = sorted(set(inputs) - set(info.inputs))
    if missing or extra:
        raise ReconstructError(f"inputs: missing {missing}, unexpected {extra}; the model's "
                               f"inputs are {info.inputs}")
    return [torch.as_tensor(np.asarray(inputs[n])) for n in info.inputs]


def run_numpy(module: torch.nn.Module, inputs: Mapping[str, Any] | np.ndarray
              ) -> dict[str, np.ndarray]:
    """The module's outputs for numpy inputs (by IR input name), by IR output name."""
    info = _info(module)
    with torch.no_grad():
        result = module(*_feeds(info, inputs))
    results = result if isinstance(result, tuple) else (result,)
    return {name: r.numpy() for name, r in zip(info.outputs, results)}


class _Recorder(fx.Interpreter):
    def __init__(self, module: fx.GraphModule, wanted: dict[str, list[str]]):
        super().__init__(module, garbage_collect_values=True)
        self.wanted = wanted
        self.seen: dict[str, np.ndarray] = {}

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        for ir_name in self.wanted.get(n.name, ()):
            self.seen[ir_name] = out.detach().numpy().copy()
        return out


def run_intermediates(module: fx.GraphModule, inputs: Mapping[str, Any] | np.ndarray
                      ) -> dict[str, np.ndarray]:
    """Every IR value the module computes (inputs and weights excluded), by IR name."""
    info = _info(module)
    wanted: dict[str, list[str]] = {}
    for ir_name, fx_name in info.values.items():
        wanted.setdefault(fx_name, []).append(ir_name)
    rec = _Recorder(module, wanted)
    with torch.no_grad():
        rec.run(*_feeds(info, inputs))
    return rec.seen


def export_program(module: torch.nn.Module, inputs: Mapping[str, Any] | np.ndarray,
                   path: str | os.PathLike | None = None) -> torch.export.ExportedProgram:
    """``torch.export`` of the module (eval mode) at the inputs' shapes; saved to ``path``
    (a .pt2 file, written atomically) when given."""
    from fc.ir.serialize import atomic_write

    info = _info(module)
    was_training = module.training
    module.eval()
    try:
        program = torch.export.export(module, tuple(_feeds(info, inputs)))
    except FcError:
        raise
    except Exception as e:
        raise ReconstructError(f"torch.export of the reconstructed {info.graph_name!r} failed: "
                               f"{type(e).__name__}: {str(e).splitlines()[0]}") from e
    finally:
        module.train(was_training)
    if path is not None:
        with atomic_write(path) as f:
            torch.export.save(program, f)
    return program
