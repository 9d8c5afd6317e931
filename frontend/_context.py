"""What every importer's converters share: one source-framework node being translated.

A converter reads its tensor inputs as fc ``Value``s or, where fc needs the numbers at
import, as constant arrays (``ctx.value(i)``, ``ctx.const(i)``); its attributes and literal
arguments through the typed reader ``ctx.attrs`` (``fc.frontend.attrs``); it emits fc nodes
carrying the source node's name as provenance (``ctx.add_node``); and it reports problems as
one-line ``ImportError_``s naming the file and the node (``ctx.error``). Each framework's
context subclasses this with how its nodes name their inputs and outputs.

A context made with ``checking=True`` serves the up-front run of the converters' checks
(``fc.frontend.registry``): inputs not produced yet are unknown (``known_shape(i)`` and
``known_const(i)`` return ``None``) and nothing can be emitted.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np

from fc.errors import FcError, ImportError_
from fc.frontend.attrs import AttrReader
from fc.ir.core import Graph, Node, Value

__all__ = ["ConvertContextBase"]


class ConvertContextBase:
    """Inputs, attributes, constants and node emission for one source node (``name``, of
    source op ``op``) into ``graph``.

    Subclasses set ``self.attrs`` (an ``AttrReader``) and provide ``where`` (file and node,
    for errors), ``num_inputs``, ``input_name(i)``, ``_lookup(i)`` (the environment entry of
    a present input, ``None`` if no earlier node produced it), ``_missing(i)`` (the error for
    that), ``_weight_key(i)`` (a cache key and a weight name for constant input ``i``),
    ``_final_names(num_outputs, node_name)`` and ``_helper_name(suffix)``.
    """

    #: what a constant input must be, in the error for a computed one
    CONST_KIND = "a constant"
    #: the node's attributes / literal arguments, set by the subclass
    attrs: AttrReader

    def __init__(self, *, name: str, op: str, graph: Graph | None,
                 consts: dict[Hashable, Value], source: str, checking: bool = False):
        #: the source node's name: the provenance and (made unique) the fc node name
        self.name = name
        #: the source op (``"Conv"``, ``"Convolution"``, ``"aten.convolution.default"``)
        self.op = op
        self.graph = graph  # type: ignore[assignment]
        self._consts = consts
        self._source = source
        #: an up-front check: unknown inputs are allowed, emitting is not
        self.checking = checking

    # -- to be provided by the framework -------------------------------------------------
    @property
    def where(self) -> str:
        raise NotImplementedError

    @property
    def num_inputs(self) -> int:
        raise NotImplementedError

    def input_name(self, i: int) -> str:
        raise NotImplementedError

    def _lookup(self, i: int) -> Value | np.ndarray | None:
        raise NotImplementedError

    def _missing(self, i: int) -> ImportError_:
        return self.error(f"input {i} {self.input_name(i)!r} is not produced by any earlier node")

    def _weight_key(self, i: int) -> tuple[Hashable, str]:
        raise NotImplementedError

    def _final_names(self, num_outputs: int, node_name: str) -> list[str]:
        raise NotImplementedError

    def _helper_name(self, suffix: str) -> str:
        return f"{self.name}_{suffix}"

    # -- errors ---------------------------------------------------------------------------
    def error(self, msg: str) -> ImportError_:
        """An ``ImportError_`` whose one line names the file and this node."""
        return ImportError_(f"{self.where}: {msg}")

    # -- inputs ---------------------------------------------------------------------------
    def has_input(self, i: int) -> bool:
        return i < self.num_inputs

    def _entry(self, i: int) -> Value | np.ndarray:
        if not self.has_input(i):
            raise self.error(f"input {i} is missing (the node has {self.num_inputs} inputs)")
        entry = self._lookup(i)
        if entry is None:
            raise self._missing(i)
        return entry

    # -- what an up-front check may ask -----------------------------------------------------
    def _known(self, i: int) -> Value | np.ndarray | None:
        return self._lookup(i) if self.has_input(i) else None

    def known_shape(self, i: int) -> tuple[int, ...] | None:
        """Input ``i``'s shape if it is known now (always, outside an up-front check)."""
        entry = self._known(i)
        return None if entry is None or entry.shape is None else tuple(entry.shape)

    def known_rank(self, i: int) -> int | None:
        shape = self.known_shape(i)
        return None if shape is None else len(shape)

    def known_const(self, i: int) -> np.ndarray | None:
        """Input ``i``'s array if it is a constant known now, else ``None``."""
        entry = self._known(i)
        if isinstance(entry, np.ndarray):
            return entry
        return entry.const if entry is not None and entry.is_const else None

    def _emitting(self) -> None:
        if self.checking:
            raise RuntimeError(f"{self.where}: a converter check must not emit nodes or "
                               "weights (it returns a reason or None)")

    def is_const(self, i: int) -> bool:
        if not self.has_input(i):
            return False
        entry = self._entry(i)
        return isinstance(entry, np.ndarray) or entry.is_const

    def const(self, i: int, what: str = "") -> np.ndarray:
        """The array of constant input ``i``; a computed tensor there is an error, because fc
        needs the value at import (it becomes an attribute or a static shape)."""
        entry = self._entry(i)
        if isinstance(entry, np.ndarray):
            return entry
        if entry.is_const:
            return entry.const
        label = f" ({what})" if what else ""
        raise self.error(f"input {i}{label} {self.input_name(i)!r} must be {self.CONST_KIND}, "
                         "but it is computed at run time")

    def const_or_none(self, i: int, what: str = "") -> np.ndarray | None:
        """``const(i)``, or ``None`` when the optional input is absent."""
        return self.const(i, what) if self.has_input(i) else None

    def _const_of(self, i: int, what: str, kinds: str, words: str) -> np.ndarray:
        arr = self.const(i, what)
        if arr.dtype.kind not in kinds:
            label = f" ({what})" if what else ""
            raise self.error(f"input {i}{label} {self.input_name(i)!r} must be {words}, got "
                             f"a {arr.dtype.name} tensor")
        return arr.reshape(-1)

    def const_ints(self, i: int, what: str = "") -> tuple[int, ...]:
        """Constant input ``i`` as a flat tuple of ints (a shape, axes, pads); a tensor of
        another type (floats, strings) is an error, never silently converted."""
        return tuple(int(v) for v in self._const_of(i, what, "iu", "an integer tensor"))

    def const_ints_or_none(self, i: int, what: str = "") -> tuple[int, ...] | None:
        return self.const_ints(i, what) if self.has_input(i) else None

    def const_floats(self, i: int, what: str = "") -> tuple[float, ...]:
        """Constant input ``i`` as a flat tuple of floats (scales); integers are accepted."""
        return tuple(float(v) for v in self._const_of(i, what, "iuf", "a numeric tensor"))

    def value(self, i: int) -> Value | None:
        """Input ``i`` as an fc ``Value`` (``None`` if absent); a constant becomes a graph
        weight on first use, named after its source tensor."""
        if not self.has_input(i):
            return None
        entry = self._entry(i)
        if isinstance(entry, Value):
            return entry
        self._emitting()
        key, name = self._weight_key(i)
        v = self._consts.get(key)
        if v is None:
            v = self.graph.add_const(name, entry)
            self._consts[key] = v
        return v

    def const_value(self, array: Any, name: str) -> Value:
        """A new weight made by a converter (e.g. a reshaped slope), named ``name``."""
        self._emitting()
        return self.graph.add_const(name, np.asarray(array))

    def shape(self, i: int) -> tuple[int, ...]:
        entry = self._entry(i)
        if entry.shape is None:
            raise self.error(f"input {i} {self.input_name(i)!r} has no known shape")
        return tuple(entry.shape)

    def rank(self, i: int) -> int:
        return len(self.shape(i))

    def dtype(self, i: int) -> str:
        entry = self._entry(i)
        return entry.dtype.name if isinstance(entry, np.ndarray) else str(entry.dtype)

    # -- outputs --------------------------------------------------------------------------
    def add_node(
        self,
        op_type: str,
        inputs: Sequence[Value | None],
        attrs: dict[str, Any] | None = None,
        *,
        suffix: str = "",
        final: bool = True,
        num_outputs: int = 1,
        output_names: Sequence[str] | None = None,
    ) -> Node:
        """Emit an fc node for this source node.

        ``final`` nodes produce the source node's outputs, so their values take its output
        names (or ``output_names``); helper nodes of a multi-node translation
        (``final=False``) are named ``<name>_<suffix>``. Schema errors come back as one line
        naming the file and the node.
        """
        self._emitting()
        node_name = self.name if final and not suffix else self._helper_name(suffix)
        outputs = None
        if final:
            names = (list(output_names) if output_names is not None
                     else self._final_names(num_outputs, node_name))
            outputs = [Value(self.graph.reserve(n)) for n in names]
        try:
            return self.graph.add_node(op_type, inputs, attrs, name=node_name,
                                       num_outputs=num_outputs, outputs=outputs,
                                       provenance=[self.name])
        except ImportError_:
            raise
        except FcError as e:  # the schema's message already names the fc node
            raise ImportError_(f"{self._source}: {e}") from None

    # -- running a converter ------------------------------------------------------------------
    def run(self, fn: Callable[[Any], Any]) -> list[Value | None]:
        """Call converter ``fn`` on this node: one fc value (or ``None``) per source output.

        An ``FcError`` that does not yet name the file is re-raised naming the file and this
        node, so every conversion failure is one line saying where.
        """
        try:
            result = fn(self)
        except FcError as e:
            text = str(e)
            if isinstance(e, ImportError_) and text.startswith(self._source):
                raise
            where = self._source if text.startswith("node ") else self.where
            raise ImportError_(f"{where}: {text}") from None
        except Exception as e:  # noqa: BLE001
            # a converter meeting a node it does not expect (a bug or a malformed model):
            # still one line naming the node; --debug shows the traceback
            raise self.error(f"cannot convert ({type(e).__name__}: {_first_line(e)})") from e
        return [result] if isinstance(result, Value) else list(result)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else ""
