"""Op schemas: the one place each op's inputs, outputs, attributes and shape rule are written.

Every other interpretation of an op (numpy kernel, importer, pass, lowering) is keyed by the
same op name and uses the attribute names and defaults declared here. IR nodes always carry
their *complete* attribute set (defaults filled in), so the JSON a hardware team reads is
explicit and no consumer repeats a default.

A shape rule has the kernels' calling convention: tensors positional (as ``TensorType``),
attributes keyword-only, and returns one ``TensorType`` or a list of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from fc.errors import SchemaError

__all__ = [
    "Attr",
    "INT",
    "FLOAT",
    "STRING",
    "INTS",
    "FLOATS",
    "STRINGS",
    "REQUIRED",
    "TensorType",
    "OpSchema",
    "register_op",
    "get_schema",
    "has_schema",
    "all_schemas",
    "complete_attrs",
    "infer_types",
    "FLT_MAX",
]

INT, FLOAT, STRING, INTS, FLOATS, STRINGS = "int", "float", "string", "ints", "floats", "strings"
ATTR_TYPES = (INT, FLOAT, STRING, INTS, FLOATS, STRINGS)
# The largest float32: stands in for +-infinity in attributes (JSON has no infinity).
FLT_MAX = 3.4028234663852886e38


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


class TensorType(NamedTuple):
    shape: tuple[int, ...]
    dtype: str

    @property
    def rank(self) -> int:
        return len(self.shape)


@dataclass(frozen=True)
class Attr:
    type: str
    default: Any = REQUIRED

    def __post_init__(self) -> None:
        if self.type not in ATTR_TYPES:
            raise ValueError(f"unknown attribute type {self.type!r}")


def _type_name(value: Any) -> str:
    return type(value).__name__


def coerce_attr(op: str, name: str, attr: Attr, value: Any) -> Any:
    """Return ``value`` as the canonical Python type of ``attr`` or raise naming the field."""
    where = f"{op} attribute {name!r}"
    if attr.type == INT:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise SchemaError(f"{where} must be int, got {_type_name(value)} {value!r}")
        return int(value)
    if attr.type == FLOAT:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise SchemaError(f"{where} must be float, got {_type_name(value)} {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise SchemaError(f"{where} must be finite, got {value!r}")
        return value
    if attr.type == STRING:
        if not isinstance(value, str):
            raise SchemaError(f"{where} must be string, got {_type_name(value)} {value!r}")
        return value
    if not isinstance(value, list | tuple):
        raise SchemaError(f"{where} must be a list ({attr.type}), got {_type_name(value)} {value!r}")
    elem = Attr({INTS: INT, FLOATS: FLOAT, STRINGS: STRING}[attr.type])
    try:
        return tuple(coerce_attr(op, name, elem, v) for v in value)
    except SchemaError:
        raise SchemaError(f"{where} must be {attr.type}, got {value!r}") from None


@dataclass(frozen=True)
class InputSpec:
    name: str
    optional: bool = False
    variadic: bool = False


@dataclass
class OpSchema:
    op_type: str
    inputs: tuple[InputSpec, ...]
    outputs: tuple[str, ...]
    attrs: dict[str, Attr]
    infer: Callable[..., Any]
    doc: str = ""
    variadic_outputs: bool = False
    min_inputs: int = field(init=False)

    def __post_init__(self) -> None:
        self.min_inputs = sum(1 for s in self.inputs if not s.optional and not s.variadic) + sum(
            1 for s in self.inputs if s.variadic
        )

    def check_arity(self, n_inputs: int, n_outputs: int, where: str) -> None:
        variadic = any(s.variadic for s in self.inputs)
        if n_inputs < self.min_inputs or (not variadic and n_inputs > len(self.inputs)):
            expect = f"at least {self.min_inputs}" if variadic else (
                f"{self.min_inputs}..{len(self.inputs)}"
                if self.min_inputs != len(self.inputs) else str(self.min_inputs))
            raise SchemaError(f"{where}: {self.op_type} takes {expect} inputs, got {n_inputs}")
        if not self.variadic_outputs and n_outputs != len(self.outputs):
            raise SchemaError(f"{where}: {self.op_type} has {len(self.outputs)} output(s), "
                              f"got {n_outputs}")

    def complete(self, attrs: dict[str, Any], where: str = "") -> dict[str, Any]:
        """All attributes typed, defaults filled, in schema order; unknown/missing ones raise."""
        where = where or self.op_type
        unknown = sorted(set(attrs) - set(self.attrs))
        if unknown:
            raise SchemaError(f"{where}: unknown attribute(s) {unknown} for {self.op_type}; "
                              f"known: {sorted(self.attrs)}")
        out = {}
        for name, spec in self.attrs.items():
            if name in attrs:
                try:
                    out[name] = coerce_attr(self.op_type, name, spec, attrs[name])
                except SchemaError as e:
                    raise SchemaError(f"{where}: {e}") from None
            elif spec.default is REQUIRED:
                raise SchemaError(f"{where}: {self.op_type} attribute {name!r} is required")
            else:
                out[name] = spec.default
        return out


_REGISTRY: dict[str, OpSchema] = {}


def _parse_inputs(specs: Sequence[str]) -> tuple[InputSpec, ...]:
    out = []
    for s in specs:
        if s.endswith("*"):
            out.append(InputSpec(s[:-1], variadic=True))
        elif s.endswith("?"):
            out.append(InputSpec(s[:-1], optional=True))
        else:
            out.append(InputSpec(s))
    return tuple(out)


def register_op(
    op_type: str,
    *,
    inputs: Sequence[str],
    outputs: Sequence[str] = ("Y",),
    attrs: dict[str, Attr] | None = None,
    variadic_outputs: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare an op: ``inputs`` names end in ``?`` (optional) or ``*`` (variadic).

    Decorates the shape rule. Registering an op twice raises.
    """

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        if op_type in _REGISTRY:
            raise ValueError(f"op schema {op_type!r} registered twice")
        _REGISTRY[op_type] = OpSchema(
            op_type,
            _parse_inputs(inputs),
            tuple(outputs),
            dict(attrs or {}),
            fn,
            doc=(fn.__doc__ or "").strip(),
            variadic_outputs=variadic_outputs,
        )
        return fn

    return deco


def _ensure_loaded() -> None:
    # The schema modules register themselves on import; importing them here (explicitly,
    # not by discovery) keeps `fc.ir.schema` importable from the schema modules themselves.
    import fc.ir.schemas  # noqa: F401


def get_schema(op_type: str) -> OpSchema:
    _ensure_loaded()
    try:
        return _REGISTRY[op_type]
    except KeyError:
        raise SchemaError(f"unknown op {op_type!r} (fc knows {len(_REGISTRY)} ops)") from None


def has_schema(op_type: str) -> bool:
    _ensure_loaded()
    return op_type in _REGISTRY


def all_schemas() -> dict[str, OpSchema]:
    _ensure_loaded()
    return dict(_REGISTRY)


def complete_attrs(op_type: str, attrs: dict[str, Any], where: str = "") -> dict[str, Any]:
    return get_schema(op_type).complete(attrs, where)


def infer_types(node: Any) -> list[TensorType]:
    """Output types of ``node`` from its inputs' stored shapes/dtypes and its attributes."""
    schema = get_schema(node.op_type)
    where = f"node {node.name!r} ({node.op_type})"
    args = []
    for v in node.inputs:
        if v is None:
            args.append(None)
        elif v.shape is None or v.dtype is None:
            raise SchemaError(f"{where}: input {v.name!r} has no shape/dtype yet")
        else:
            args.append(TensorType(v.shape, v.dtype))
    # Trailing missing optionals are simply not passed, so rules can default them.
    while args and args[-1] is None:
        args.pop()
    try:
        result = schema.infer(*args, **node.attrs)
    except SchemaError as e:
        raise SchemaError(f"{where}: {e}") from None
    except (ValueError, IndexError, TypeError, ZeroDivisionError) as e:
        raise SchemaError(f"{where}: shape inference failed: {e}") from None
    types = [result] if isinstance(result, TensorType) else list(result)
    return [TensorType(tuple(int(d) for d in t.shape), t.dtype) for t in types]
