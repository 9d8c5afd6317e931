"""Op schemas: the one place each op's inputs, outputs, attributes and shape rule are written.

Every other interpretation of an op (numpy kernel, importer, pass, lowering) is keyed by the
same op name and uses the attribute names and defaults declared here. IR nodes always carry
their *complete* attribute set (defaults filled in), so the JSON a hardware team reads is
explicit and no consumer repeats a default.

A shape rule has the kernels' calling convention: tensors positional (as ``TensorType``),
attributes keyword-only, and returns one ``TensorType`` or a list of them.

Each input has a *role* (``InputSpec.role``): what the tensor is to the op, which folding,
per-channel quantization, pruning and reconstruction need to know without a table of their
own:

* ``data``: an activation flowing through the graph (the default);
* ``weight``: a layer's weight. Output channel ``m`` of the layer is linear in one slice of
  it, along ``weight_out_axis(node)`` (Conv 0, ConvTranspose 1 within each of ``group``
  blocks of axis 0, Gemm 0 with ``transB`` else 1, MatMul the last axis, Scale 0);
  ``weight_by_out_channel`` gives that slice of every channel as one row;
* ``bias``: a per-output-channel vector added to the weight's product;
* ``param``: any other constant parameter (normalization statistics and affine vectors,
  PRelu's slope).

A weight is a constant in a deployable graph, except MatMul's ``B``, which is an activation
in attention (``A @ B`` of two activations) and a weight in a Linear exported without bias.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from fc.errors import SchemaError

__all__ = [
    "Attr",
    "InputSpec",
    "DATA",
    "WEIGHT",
    "BIAS",
    "PARAM",
    "ROLES",
    "input_role",
    "weight_input",
    "weight_out_axis",
    "weight_groups",
    "weight_by_out_channel",
    "weight_from_out_channel",
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
DATA, WEIGHT, BIAS, PARAM = "data", "weight", "bias", "param"
ROLES = (DATA, WEIGHT, BIAS, PARAM)
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
    """Return ``value`` as the canonical Python type of ``attr`` or raise naming the field.

    Canonical: ``int``, ``float`` (finite), ``str``, or a tuple of those. numpy scalars and
    1-D arrays are accepted (importers read them from framework files); ``bool`` is not an
    int here, because ``True`` where a number belongs is almost always a mix-up.
    """
    where = f"{op} attribute {name!r}"
    if attr.type == INT:
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise SchemaError(f"{where} must be int, got {_type_name(value)} {_clip(value)}")
        return int(value)
    if attr.type == FLOAT:
        if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
            raise SchemaError(f"{where} must be float, got {_type_name(value)} {_clip(value)}")
        value = float(value)
        if not math.isfinite(value):
            raise SchemaError(f"{where} must be finite, got {value!r}")
        return value
    if attr.type == STRING:
        if not isinstance(value, str):
            raise SchemaError(f"{where} must be string, got {_type_name(value)} {_clip(value)}")
        return str(value)
    if isinstance(value, np.ndarray) and value.ndim == 1:
        value = list(value)  # numpy scalars; each is checked below
    if not isinstance(value, list | tuple):
        raise SchemaError(f"{where} must be a list ({attr.type}), got {_type_name(value)} "
                          f"{_clip(value)}")
    elem = Attr({INTS: INT, FLOATS: FLOAT, STRINGS: STRING}[attr.type])
    out = []
    for i, v in enumerate(value):
        try:
            out.append(coerce_attr(op, name, elem, v))
        except SchemaError:
            raise SchemaError(f"{where} must be {attr.type}, but element {i} is "
                              f"{_type_name(v)} {_clip(v)} in {_clip(value)}") from None
    return tuple(out)


def _clip(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 80 else r[:77] + "..."


@dataclass(frozen=True)
class InputSpec:
    name: str
    optional: bool = False
    variadic: bool = False
    #: what the tensor is to the op: DATA, WEIGHT, BIAS or PARAM (module docstring)
    role: str = DATA


#: attrs -> an axis or a group count, for the weight layout of a schema
AttrFn = Callable[[Mapping[str, Any]], int]


@dataclass
class OpSchema:
    op_type: str
    inputs: tuple[InputSpec, ...]
    outputs: tuple[str, ...]
    attrs: dict[str, Attr]
    infer: Callable[..., Any]
    doc: str = ""
    variadic_outputs: bool = False
    #: the axis of the WEIGHT input holding output channels (None: the op has no weight)
    weight_axis: AttrFn | None = None
    #: how many blocks axis 0 of the weight splits into, each feeding its own run of output
    #: channels (ConvTranspose: ``group``); 1 for every other layout
    weight_groups: AttrFn | None = None
    min_inputs: int = field(init=False)

    def __post_init__(self) -> None:
        self.min_inputs = sum(1 for s in self.inputs if not s.optional and not s.variadic) + sum(
            1 for s in self.inputs if s.variadic
        )

    def check_inputs(self, inputs: Sequence[Any], n_outputs: int, where: str) -> None:
        """Arity, and no ``None`` (missing) where the schema has a required input."""
        self.check_arity(len(inputs), n_outputs, where)
        for i, spec in enumerate(self.inputs):
            if spec.variadic:
                missing = [j for j in range(i, len(inputs)) if inputs[j] is None]
                if missing:
                    raise SchemaError(f"{where}: {self.op_type} variadic input {spec.name!r} "
                                      f"is missing at position(s) {missing}")
                break
            if not spec.optional and (i >= len(inputs) or inputs[i] is None):
                raise SchemaError(f"{where}: {self.op_type} required input {spec.name!r} "
                                  f"(position {i}) is missing")

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


def _parse_inputs(op_type: str, specs: Sequence[str], roles: Mapping[str, str]
                  ) -> tuple[InputSpec, ...]:
    out = []
    for s in specs:
        name = s.rstrip("*?")
        role = roles.get(name, DATA)
        if role not in ROLES:
            raise ValueError(f"op schema {op_type!r}: input {name!r} has role {role!r}, not one "
                             f"of {list(ROLES)}")
        out.append(InputSpec(name, optional=s.endswith("?"), variadic=s.endswith("*"), role=role))
    unknown = sorted(set(roles) - {spec.name for spec in out})
    if unknown:
        raise ValueError(f"op schema {op_type!r}: roles name unknown inputs {unknown}")
    return tuple(out)


def _attr_fn(value: int | AttrFn | None) -> AttrFn | None:
    if value is None or callable(value):
        return value
    return lambda attrs, _v=int(value): _v


def register_op(
    op_type: str,
    *,
    inputs: Sequence[str],
    outputs: Sequence[str] = ("Y",),
    attrs: Mapping[str, Attr] | None = None,
    variadic_outputs: bool = False,
    roles: Mapping[str, str] | None = None,
    weight_axis: int | AttrFn | None = None,
    weight_groups: int | AttrFn | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare an op: ``inputs`` names end in ``?`` (optional) or ``*`` (variadic).

    ``roles`` maps input names to WEIGHT/BIAS/PARAM (the rest are DATA); an op with a WEIGHT
    input says where its output channels are (``weight_axis``, ``weight_groups``: an int or
    a function of the complete attributes). Decorates the shape rule. Registering an op
    twice raises.
    """

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        if op_type in _REGISTRY:
            raise ValueError(f"op schema {op_type!r} registered twice")
        # Defaults in canonical form (tuples, floats): nodes share them, so they must be
        # immutable, and a JSON round trip must give them back unchanged.
        specs = {name: a if a.default is REQUIRED else Attr(a.type, coerce_attr(op_type, name, a,
                                                                                 a.default))
                 for name, a in (attrs or {}).items()}
        _check_rule_signature(op_type, fn, specs)
        parsed = _parse_inputs(op_type, inputs, roles or {})
        has_weight = any(s.role == WEIGHT for s in parsed)
        if has_weight != (weight_axis is not None):
            raise ValueError(f"op schema {op_type!r}: a WEIGHT input and weight_axis go together")
        _REGISTRY[op_type] = OpSchema(
            op_type,
            parsed,
            tuple(outputs),
            specs,
            fn,
            doc=(fn.__doc__ or "").strip(),
            variadic_outputs=variadic_outputs,
            weight_axis=_attr_fn(weight_axis),
            weight_groups=_attr_fn(weight_groups),
        )
        return fn

    return deco


def _check_rule_signature(op_type: str, fn: Callable[..., Any], attrs: dict[str, Attr]) -> None:
    """A shape rule's keyword-only parameters are exactly the schema's attributes (unless it
    takes ``**kwargs``): a typo there would otherwise surface only when a node is built."""
    params = inspect.signature(fn).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    kw = {p.name for p in params if p.kind is p.KEYWORD_ONLY}
    if kw != set(attrs):
        raise ValueError(f"op schema {op_type!r}: shape rule {fn.__name__} takes keyword-only "
                         f"{sorted(kw)}, but the attributes are {sorted(attrs)}")


_LOADED = False


def _ensure_loaded() -> None:
    # The schema modules register themselves on import; importing them here (explicitly,
    # not by discovery) keeps `fc.ir.schema` importable from the schema modules themselves.
    # The flag spares the import statement on every lookup (verify does several per node).
    global _LOADED
    if not _LOADED:
        import fc.ir.schemas  # noqa: F401

        _LOADED = True


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
    inputs = node.inputs
    schema.check_inputs(inputs, len(node.outputs), where)
    args = []
    for v in inputs:
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
    except (ValueError, IndexError, KeyError, TypeError, AttributeError, ArithmeticError) as e:
        raise SchemaError(f"{where}: shape inference failed: {type(e).__name__}: {e}") from None
    types = [result] if isinstance(result, TensorType) else list(result)
    if len(types) != len(node.outputs):
        raise SchemaError(f"{where}: the shape rule gives {len(types)} output(s), the node has "
                          f"{len(node.outputs)}")
    out = []
    for t in types:
        shape = tuple(int(d) for d in t.shape)
        if any(d < 0 for d in shape):
            raise SchemaError(f"{where}: inferred a negative dimension {list(shape)}")
        out.append(TensorType(shape, t.dtype))
    return out


# -- input roles and weight layout ------------------------------------------------------------
def input_role(op_type: str, index: int) -> str:
    """The role of input ``index`` of ``op_type`` (a variadic input's role for every position
    from it on)."""
    specs = get_schema(op_type).inputs
    for i, spec in enumerate(specs):
        if i == index or spec.variadic and index >= i:
            return spec.role
    raise SchemaError(f"{op_type} has no input {index} (it has {len(specs)})")


def weight_input(op_type: str) -> int | None:
    """The position of ``op_type``'s WEIGHT input, or None when it has none."""
    return next((i for i, s in enumerate(get_schema(op_type).inputs) if s.role == WEIGHT), None)


def _weight_layout(node: Any) -> tuple[int, int, tuple[int, ...]]:
    """(out axis, groups, weight shape) of ``node``'s weight, normalized."""
    schema = get_schema(node.op_type)
    i = weight_input(node.op_type)
    w = node.inputs[i] if i is not None and i < len(node.inputs) else None
    if w is None or w.shape is None:
        raise SchemaError(f"node {node.name!r} ({node.op_type}) has no weight input with a "
                          "known shape")
    assert schema.weight_axis is not None  # register_op pairs it with the WEIGHT role
    rank = len(w.shape)
    axis = schema.weight_axis(node.attrs)
    axis = axis + rank if axis < 0 else axis
    groups = schema.weight_groups(node.attrs) if schema.weight_groups is not None else 1
    if not 0 <= axis < rank or groups < 1 or (groups > 1 and (axis == 0 or w.shape[0] % groups)):
        raise SchemaError(f"node {node.name!r} ({node.op_type}): weight {list(w.shape)} has no "
                          f"output-channel axis {axis} in {groups} group(s)")
    return axis, groups, w.shape


def weight_out_axis(node: Any) -> int:
    """The axis of ``node``'s weight along which its output channels lie (non-negative).

    With ``weight_groups(node) > 1`` (ConvTranspose with group > 1), axis 0 of the weight is
    split into that many blocks and this axis indexes the output channels *within* a block:
    output channel ``g * W.shape[axis] + j`` reads block ``g``, index ``j``. Use
    ``weight_by_out_channel`` to get one row per output channel without that arithmetic.
    """
    return _weight_layout(node)[0]


def weight_groups(node: Any) -> int:
    """How many blocks axis 0 of ``node``'s weight splits into (see ``weight_out_axis``)."""
    return _weight_layout(node)[1]


def weight_by_out_channel(node: Any, w: np.ndarray) -> np.ndarray:
    """``w`` (the array of ``node``'s weight) with output channel ``m`` as ``[m]`` of axis 0.

    The other axes keep their order (a Conv weight is returned as is; a ConvTranspose weight
    (C, M/g, kh, kw) becomes (M, C/g, kh, kw); a Gemm B (K, M) becomes (M, K)). A view when
    the layout allows, else a copy: per-channel statistics read it, per-channel rewrites go
    back through ``weight_from_out_channel``.
    """
    axis, groups, shape = _weight_layout(node)
    w = np.asarray(w)
    if tuple(w.shape) != shape:
        raise SchemaError(f"node {node.name!r} ({node.op_type}): array {list(w.shape)} is not "
                          f"its weight {list(shape)}")
    if groups == 1:
        return np.moveaxis(w, axis, 0)
    grouped = w.reshape(groups, shape[0] // groups, *shape[1:])
    blocks = np.moveaxis(grouped, axis + 1, 1)  # (g, M/g, C/g, ...)
    return blocks.reshape(groups * shape[axis], *blocks.shape[2:])


def weight_from_out_channel(node: Any, rows: np.ndarray) -> np.ndarray:
    """The inverse of ``weight_by_out_channel``: the weight's own layout again."""
    axis, groups, shape = _weight_layout(node)
    rows = np.asarray(rows)
    if groups == 1:
        return np.moveaxis(rows, 0, axis)
    per = shape[axis]
    blocks = rows.reshape(groups, per, *rows.shape[1:])  # (g, M/g, C/g, ...)
    return np.moveaxis(blocks, 1, axis + 1).reshape(shape)
