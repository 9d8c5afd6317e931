"""Assembling a ``torch.fx.Graph`` from an fc graph, one IR node at a time.

The lowerings (``ops_*.py``) see a :class:`Builder` positioned on one IR node. They turn IR
values into fx nodes with :meth:`Builder.arg`, place real torch layers with
:meth:`Builder.layer` (an ``nn.Conv2d`` whose ``weight`` *is* the IR weight) and stateless
operations with :meth:`Builder.call` / :meth:`Builder.method`, and return the fx node of
each IR output.

Names: a layer lives at the module path its weights' names give (IR weight
``layer1.0.conv1.weight`` -> module ``layer1.0.conv1``, so the state dict reads like the
source model's), else at the IR node's name made an identifier. A constant that a stateless
call uses becomes a root attribute named after the IR weight the same way.

Parameters or buffers: every weight a layer binds is what the layer makes it (conv weights
and BN affine parameters are ``nn.Parameter``, BN running statistics are buffers). A constant
used by a call is an ``nn.Parameter`` when it is a float tensor of more than one element (a
per-channel scale, a positional embedding) and a buffer otherwise: scalars such as a Pow
exponent or an epsilon are constants of the formula, and training them is wrong (the
gradient of ``x ** p`` in ``p`` is NaN for x < 0).

Every binding remembers the IR weight it came from and how its layout differs (a transposed
``nn.Linear`` weight, a per-channel slope reshaped), so trained tensors write back into the
IR exactly (:func:`fc.reconstruct.torch.write_back`).
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.fx as fx
from torch import nn

from fc.errors import ReconstructError
from fc.ir.core import Graph, Node, Value

__all__ = ["Binding", "LayerSpec", "TensorSpec", "ReconstructInfo", "Builder", "torch_dtype"]

_DTYPES = {
    "float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
    "int8": torch.int8, "uint8": torch.uint8, "int16": torch.int16, "int32": torch.int32,
    "int64": torch.int64, "bool": torch.bool,
}


def torch_dtype(name: str) -> torch.dtype:
    try:
        return _DTYPES[name]
    except KeyError:
        raise ReconstructError(f"dtype {name!r} has no torch equivalent") from None


@dataclass(frozen=True)
class Binding:
    """A torch parameter or buffer that holds IR weight ``ir_name``.

    The torch tensor is the IR array, transposed first when ``transpose`` (2-D), then
    reshaped to ``torch_shape``; :meth:`to_ir` undoes both.
    """

    ir_name: str
    ir_shape: tuple[int, ...]
    torch_shape: tuple[int, ...]
    transpose: bool = False

    def to_torch(self, array: np.ndarray) -> torch.Tensor:
        a = array.T if self.transpose else array
        return torch.from_numpy(np.array(a, copy=True).reshape(self.torch_shape))

    def to_ir(self, tensor: torch.Tensor, dtype: np.dtype) -> np.ndarray:
        a = tensor.detach().cpu().numpy().reshape(
            self.ir_shape[::-1] if self.transpose else self.ir_shape)
        return np.ascontiguousarray(a.T if self.transpose else a, dtype=dtype)


@dataclass(frozen=True)
class LayerSpec:
    """A layer as constructed: enough to write it back out as source (``--save_py``)."""

    path: str
    cls: type[nn.Module]
    kwargs: dict[str, Any]


@dataclass(frozen=True)
class TensorSpec:
    """A root parameter or buffer used by a stateless call."""

    path: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    parameter: bool


@dataclass
class ReconstructInfo:
    """What the reconstructed module remembers of its IR (set as ``module.fc_info``)."""

    graph_name: str
    inputs: list[str]
    outputs: list[str]
    #: state-dict key -> the IR weight it holds
    bindings: dict[str, Binding] = field(default_factory=dict)
    #: IR value name -> name of the fx node that computes it (for per-layer comparison)
    values: dict[str, str] = field(default_factory=dict)
    layers: list[LayerSpec] = field(default_factory=list)
    tensors: list[TensorSpec] = field(default_factory=list)


_PATH_PART = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*|[0-9]+)$")


def _usable_part(part: str) -> bool:
    """A path component torch accepts as a submodule/attribute name and fx can emit."""
    return (bool(_PATH_PART.match(part)) and not keyword.iskeyword(part)
            and not hasattr(nn.Module, part) and not part.startswith("fc_"))


def _identifier(name: str) -> str:
    s = re.sub(r"[^0-9A-Za-z_]", "_", name).strip("_") or "v"
    if s[0].isdigit():
        s = "v_" + s
    if keyword.iskeyword(s) or hasattr(nn.Module, s) or s.startswith("fc_"):
        s += "_"
    return s


class Builder:
    """The fx graph, the root's modules and tensors, and the bindings, being built."""

    def __init__(self, graph: Graph, *, trainable: bool = True):
        self.graph = graph
        self.trainable = trainable
        self.fx = fx.Graph()
        self.root: dict[str, Any] = {}
        self.info = ReconstructInfo(graph.name, [v.name for v in graph.inputs],
                                    [v.name for v in graph.outputs])
        self.env: dict[str, fx.Node] = {}
        #: the IR node being lowered
        self.node: Node | None = None
        self._tree: dict[str, str] = {}  # path -> "container" | "leaf"
        self._attr_of_const: dict[str, fx.Node] = {}
        self._param_cache: dict[tuple[str, bool, tuple[int, ...]], torch.Tensor] = {}

    # -- naming ----------------------------------------------------------------------------
    def _path_free(self, path: str) -> bool:
        parts = path.split(".")
        if not all(_usable_part(p) for p in parts):
            return False
        if path in self._tree:
            return False
        return all(self._tree.get(".".join(parts[:i]), "container") == "container"
                   for i in range(1, len(parts)))

    def _claim(self, candidates: Sequence[str]) -> str:
        """The first free candidate path, else the last one made unique; marks it a leaf."""
        for c in candidates:
            if c and self._path_free(c):
                path = c
                break
        else:
            base = _identifier(candidates[-1])
            path, i = base, 0
            while not self._path_free(path):
                i += 1
                path = f"{base}_{i}"
        parts = path.split(".")
        for i in range(1, len(parts)):
            self._tree[".".join(parts[:i])] = "container"
        self._tree[path] = "leaf"
        return path

    @property
    def _out_name(self) -> str:
        assert self.node is not None
        return self.node.outputs[0].name

    # -- tensors ---------------------------------------------------------------------------
    def _tensor_for(self, v: Value, binding: Binding, parameter: bool) -> torch.Tensor:
        key = (binding.ir_name, binding.transpose, binding.torch_shape)
        t = self._param_cache.get(key)
        if t is None or isinstance(t, nn.Parameter) != parameter:
            data = binding.to_torch(v.const)
            t = nn.Parameter(data, requires_grad=self.trainable) if parameter else data
            self._param_cache[key] = t
        return t

    def arg(self, v: Value | fx.Node | Any) -> Any:
        """An IR value as an fx node (a constant becomes a root parameter or buffer); fx
        nodes and Python literals pass through."""
        if not isinstance(v, Value):
            return v
        if v.const is None:
            try:
                return self.env[v.name]
            except KeyError:
                raise ReconstructError(f"value {v.name!r} is used before it is computed") from None
        node = self._attr_of_const.get(v.name)
        if node is None:
            arr = v.const
            parameter = arr.dtype.kind == "f" and arr.size > 1
            path = self._claim([v.name, _identifier(v.name)])
            b = Binding(v.name, tuple(arr.shape), tuple(arr.shape))
            self.root[path] = self._tensor_for(v, b, parameter)
            self.info.bindings[path] = b
            self.info.tensors.append(TensorSpec(path, tuple(arr.shape), torch_dtype(arr.dtype.name),
                                                parameter))
            node = self.fx.get_attr(path)
            self._attr_of_const[v.name] = node
        return node

    def constant(self, array: np.ndarray, suffix: str) -> fx.Node:
        """A buffer a lowering derives (e.g. a pool's divisor map): no IR weight behind it,
        so it is not written back."""
        assert self.node is not None
        path = self._claim([_identifier(f"{self.node.name}_{suffix}")])
        self.root[path] = torch.from_numpy(np.array(array, copy=True))
        self.info.tensors.append(TensorSpec(path, tuple(array.shape),
                                            torch_dtype(array.dtype.name), False))
        return self.fx.get_attr(path)

    # -- graph nodes -----------------------------------------------------------------------
    def _args(self, args: Any) -> Any:
        if isinstance(args, list | tuple):
            return type(args)(self._args(a) for a in args)
        if isinstance(args, dict):
            return {k: self._args(a) for k, a in args.items()}
        return self.arg(args)

    def call(self, fn: Callable[..., Any], *args: Any, name: str | None = None, **kwargs: Any
             ) -> fx.Node:
        """``fn(*args, **kwargs)`` as a ``call_function`` node (use torch functions only: the
        generated source must import nothing but torch)."""
        return self.fx.create_node("call_function", fn, self._args(args), self._args(kwargs),
                                   name=name or self._out_name)

    def method(self, method: str, x: Any, *args: Any, name: str | None = None, **kwargs: Any
               ) -> fx.Node:
        """``x.method(*args, **kwargs)`` as a ``call_method`` node."""
        return self.fx.create_node("call_method", method, self._args((x, *args)),
                                   self._args(kwargs), name=name or self._out_name)

    def layer(self, cls: type[nn.Module], kwargs: dict[str, Any], inputs: Sequence[Any], *,
              params: dict[str, Value | tuple[Value, bool] | None] | None = None,
              buffers: dict[str, Value | None] | None = None, name: str | None = None) -> fx.Node:
        """Construct ``cls(**kwargs)`` and call it on ``inputs``.

        ``params``/``buffers`` map the layer's attribute to the IR weight that fills it
        (``(value, True)``: transposed first); the layer's own shape decides the torch
        shape, so a slope of IR shape (C, 1, 1) fills ``nn.PReLU``'s (C,). The module is
        built on the meta device and then filled, so no random initialisation is paid for.
        """
        assert self.node is not None
        weights = {**(params or {}), **(buffers or {})}
        first = next((w[0] if isinstance(w, tuple) else w for w in weights.values()
                      if w is not None), None)
        candidates = []
        if first is not None and "." in first.name:
            candidates.append(first.name.rsplit(".", 1)[0])
        candidates.append(_identifier(self.node.name))
        path = self._claim(candidates)
        with torch.device("meta"):
            module = cls(**kwargs)
        for attr, w in weights.items():
            if w is None:
                continue
            v, transpose = w if isinstance(w, tuple) else (w, False)
            if v.const is None:
                raise ReconstructError(f"node {self.node.name!r} ({self.node.op_type}): "
                                       f"{attr} {v.name!r} must be a constant")
            shape = tuple(getattr(module, attr).shape)
            ir_shape = tuple(v.const.shape)
            if int(np.prod(shape)) != v.const.size:
                raise ReconstructError(f"node {self.node.name!r} ({self.node.op_type}): weight "
                                       f"{v.name!r} {list(ir_shape)} does not fit "
                                       f"{cls.__name__}.{attr} {list(shape)}")
            b = Binding(v.name, ir_shape, shape, transpose)
            is_param = attr in (params or {})
            t = self._tensor_for(v, b, is_param)
            if is_param:
                setattr(module, attr, t)
            else:
                module.register_buffer(attr, t)
            self.info.bindings[f"{path}.{attr}"] = b
        for attr, buf in list(module.named_buffers(recurse=False)):
            if buf.is_meta:  # e.g. BatchNorm's num_batches_tracked
                module.register_buffer(attr, torch.zeros(buf.shape, dtype=buf.dtype))
        left = [n for n, p in module.named_parameters() if p.is_meta]
        if left:
            raise ReconstructError(f"node {self.node.name!r} ({self.node.op_type}): "
                                   f"{cls.__name__} parameter(s) {left} have no IR weight")
        self.root[path] = module
        self.info.layers.append(LayerSpec(path, cls, dict(kwargs)))
        return self.fx.create_node("call_module", path, self._args(tuple(inputs)), {},
                                   name=name or path)

    # -- assembly --------------------------------------------------------------------------
    def placeholder(self, v: Value) -> None:
        self.env[v.name] = self.fx.placeholder(_identifier(v.name))

    def bind_outputs(self, node: Node, results: fx.Node | Sequence[fx.Node]) -> None:
        results = [results] if isinstance(results, fx.Node) else list(results)
        if len(results) != len(node.outputs):
            raise ReconstructError(f"node {node.name!r} ({node.op_type}): the lowering gave "
                                   f"{len(results)} outputs, the node has {len(node.outputs)}")
        for v, r in zip(node.outputs, results):
            self.env[v.name] = r
            self.info.values[v.name] = r.name

    def finish(self) -> fx.GraphModule:
        outs = [self.arg(v) for v in self.graph.outputs]
        self.fx.output(outs[0] if len(outs) == 1 else tuple(outs))
        self.fx.lint()
        gm = fx.GraphModule(self.root, self.fx, class_name=_identifier(self.graph.name))
        gm.fc_info = self.info
        return gm
