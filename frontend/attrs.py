"""Typed readers of a source node's attributes and literal (non-tensor) arguments.

Every frontend reads the non-tensor part of a node the same way, ``ctx.attrs.<type>(key,
default)``:

    ctx.attrs.int("group", 1)            ctx.attrs.ints("kernel_shape")
    ctx.attrs.float("epsilon", 1e-5)     ctx.attrs.floats("scales", None)
    ctx.attrs.bool("ceil_mode", False)   ctx.attrs.str("mode", "constant")
    ctx.attrs.strs("directions", ())     ctx.attrs.tensor("value")
    ctx.attrs.opt_ints("begin")          (a tuple whose items may be None)

* no default: the attribute is required, and its absence is an error naming it;
* ``default=None``: optional, the call returns ``None`` when it is absent;
* absent means missing, or present as "no value" (ONNX has none, MXNet writes ``"None"``,
  an ATen call passes ``None`` for an optional argument);
* a value of the wrong type (``kernel_shape`` given as one INT, ``axis`` as INTS, a bias
  term of ``"abc"``) is an ``ImportError_`` whose one line names the file, the node, the
  attribute and what it actually is.

Two readers cover every framework:

* :class:`LiteralAttrs` for sources whose values are already typed Python objects: ONNX
  ``AttributeProto``s (decoded with their type name), a TF ``NodeDef``'s ``AttrValue``s, and a
  torch FX node's literal arguments. Its keys may also be *positions* (``ctx.attrs.ints(3)``
  for the ``stride`` of ``aten.convolution(x, w, b, stride, ...)``) when the reader is given
  the argument names in order (``positional=schema_argument_names``);
* MXNet's :class:`~fc.frontend.mxnet.context.MxAttrs`, which parses MXNet's strings
  (``"(3, 3)"``, ``"True"``) on request.

A reader subclass implements :meth:`AttrReader._present` and one ``_as_<kind>`` per kind; the
base class owns the default/required logic and the error messages.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fc.errors import ImportError_

__all__ = ["AttrReader", "LiteralAttrs", "REQUIRED", "WrongType", "describe", "show"]

Key = builtins.str | builtins.int


class _Required:
    def __repr__(self) -> builtins.str:
        return "<required>"


#: the default of a reader call without one: the attribute must be present
REQUIRED: Any = _Required()


class WrongType(Exception):
    """Raised by a reader's ``_as_<kind>`` when the stored value is not of that kind; the
    base class turns it into the one-line ``ImportError_``. ``actual`` says what it is."""

    def __init__(self, actual: builtins.str):
        super().__init__(actual)
        self.actual = actual


def show(value: Any, limit: builtins.int = 60) -> builtins.str:
    """A literal's value for an error message, cut to ``limit`` characters."""
    if isinstance(value, np.ndarray):
        return f"{value.dtype.name}{list(value.shape)}"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe(value: Any) -> builtins.str:
    """A literal's Python type and value for an error message (``"list [1, 2]"``)."""
    if isinstance(value, np.ndarray):
        return f"a tensor {show(value)}"
    return f"{type(value).__name__} {show(value)}"


_KIND_WORDS = {
    "int": "an integer", "float": "a number", "bool": "a bool", "str": "a string",
    "ints": "a list of integers", "opt_ints": "a list of integers (or None)",
    "floats": "a list of numbers", "strs": "a list of strings", "tensor": "a tensor",
}


class AttrReader:
    """Typed, defaulted access to one node's attributes; see the module docstring.

    ``where`` is the node's description for errors (``"model.onnx: node 'c1' (Conv, opset
    13)"``). ``positional`` names the literal arguments in order, so that an ``int`` key is
    read as the argument at that position (torch's ATen calls).
    """

    def __init__(self, where: builtins.str, positional: Sequence[builtins.str] = ()):
        self.where = where
        self.positional = tuple(positional)

    # -- to be provided by a reader -------------------------------------------------------
    def _present(self, name: builtins.str) -> bool:
        """Whether ``name`` has a value (absent and "no value" are both ``False``)."""
        raise NotImplementedError

    def names(self) -> list[builtins.str]:
        """The attributes the node carries, for messages and up-front checks."""
        raise NotImplementedError

    # each ``_as_<kind>(name)`` returns the typed value or raises ``WrongType``
    def _as_int(self, name: builtins.str) -> builtins.int:
        raise NotImplementedError

    def _as_float(self, name: builtins.str) -> builtins.float:
        raise NotImplementedError

    def _as_bool(self, name: builtins.str) -> builtins.bool:
        raise NotImplementedError

    def _as_str(self, name: builtins.str) -> builtins.str:
        raise NotImplementedError

    def _as_opt_ints(self, name: builtins.str) -> tuple[builtins.int | None, ...]:
        raise NotImplementedError

    def _as_floats(self, name: builtins.str) -> tuple[builtins.float, ...]:
        raise NotImplementedError

    def _as_strs(self, name: builtins.str) -> tuple[builtins.str, ...]:
        raise NotImplementedError

    def _as_tensor(self, name: builtins.str) -> np.ndarray:
        raise NotImplementedError

    def _as_ints(self, name: builtins.str) -> tuple[builtins.int, ...]:
        values = self._as_opt_ints(name)
        if any(v is None for v in values):
            raise WrongType(f"{list(values)} (with None)")
        return tuple(values)  # type: ignore[arg-type]

    # -- keys and errors ------------------------------------------------------------------
    def _name(self, key: Key) -> builtins.str:
        if isinstance(key, builtins.int) and not isinstance(key, builtins.bool):
            if not 0 <= key < len(self.positional):
                raise ImportError_(f"{self.where}: no literal argument {key} (the call has "
                                   f"{len(self.positional)})")
            return self.positional[key]
        return key

    def _label(self, key: Key) -> builtins.str:
        name = self._name(key)
        if isinstance(key, builtins.int) and not isinstance(key, builtins.bool):
            return f"argument {key} {name!r}"
        return f"attribute {name!r}"

    def error(self, key: Key, problem: builtins.str) -> ImportError_:
        """A one-line error about attribute ``key`` of this node."""
        return ImportError_(f"{self.where}: {self._label(key)} {problem}")

    def has(self, key: Key) -> bool:
        return self._present(self._name(key))

    def _read(self, kind: builtins.str, key: Key, default: Any) -> Any:
        name = self._name(key)
        if not self._present(name):
            if default is REQUIRED:
                raise self.error(key, "is required but missing")
            return default
        try:
            return getattr(self, f"_as_{kind}")(name)
        except WrongType as e:
            raise self.error(key, f"must be {_KIND_WORDS[kind]}, got {e.actual}") from None

    # -- the typed getters ----------------------------------------------------------------
    def int(self, key: Key, default: Any = REQUIRED) -> Any:
        return self._read("int", key, default)

    def float(self, key: Key, default: Any = REQUIRED) -> Any:
        return self._read("float", key, default)

    def bool(self, key: Key, default: Any = REQUIRED) -> Any:
        return self._read("bool", key, default)

    def str(self, key: Key, default: Any = REQUIRED) -> Any:
        return self._read("str", key, default)

    def ints(self, key: Key, default: Any = REQUIRED) -> Any:
        return self._read("ints", key, _tuple_default(default))

    def opt_ints(self, key: Key, default: Any = REQUIRED) -> Any:
        return self._read("opt_ints", key, _tuple_default(default))

    def floats(self, key: Key, default: Any = REQUIRED) -> Any:
        return self._read("floats", key, _tuple_default(default))

    def strs(self, key: Key, default: Any = REQUIRED) -> Any:
        return self._read("strs", key, _tuple_default(default))

    def tensor(self, key: Key, default: Any = REQUIRED) -> Any:
        return self._read("tensor", key, default)


def _tuple_default(default: Any) -> Any:
    if default is REQUIRED or default is None:
        return default
    return tuple(default)


def _is_int(v: Any) -> bool:
    return isinstance(v, builtins.int | np.integer) and not isinstance(v, builtins.bool | np.bool_)


def _is_number(v: Any) -> bool:
    return _is_int(v) or isinstance(v, builtins.float | np.floating)


class LiteralAttrs(AttrReader):
    """A reader over already-typed Python values: ``{name: value}``.

    ``None`` values count as absent. ``kinds`` optionally names each value's source type
    for messages (ONNX's ``"INTS"``, TF's ``"list(int)"``). Integers are accepted where a
    number is asked for; ``0``/``1`` where a bool is (ONNX has no bool attributes); a value
    of ``bytes`` is text when it is UTF-8.
    """

    def __init__(self, values: Mapping[builtins.str, Any], where: builtins.str, *,
                 positional: Sequence[builtins.str] = (),
                 kinds: Mapping[builtins.str, builtins.str] | None = None):
        super().__init__(where, positional)
        self.values = dict(values)
        self.kinds = dict(kinds or {})

    def _present(self, name: builtins.str) -> bool:
        return self.values.get(name) is not None

    def names(self) -> list[builtins.str]:
        return [k for k in self.values if self.values[k] is not None]

    def raw(self, key: Key) -> Any:
        """The stored value as it is (``None`` if absent), for converters that dispatch on
        its type themselves (a torch ``Scalar`` that is an int or a float)."""
        return self.values.get(self._name(key))

    def _wrong(self, name: builtins.str) -> WrongType:
        value = self.values[name]
        kind = self.kinds.get(name)
        return WrongType(f"{kind} {show(value)}" if kind else describe(value))

    def _as_int(self, name: builtins.str) -> builtins.int:
        v = self.values[name]
        if not _is_int(v):
            raise self._wrong(name)
        return builtins.int(v)

    def _as_float(self, name: builtins.str) -> builtins.float:
        v = self.values[name]
        if not _is_number(v):
            raise self._wrong(name)
        return builtins.float(v)

    def _as_bool(self, name: builtins.str) -> builtins.bool:
        v = self.values[name]
        if isinstance(v, builtins.bool | np.bool_):
            return builtins.bool(v)
        if _is_int(v) and v in (0, 1):
            return builtins.bool(v)
        raise self._wrong(name)

    def _text(self, name: builtins.str, v: Any) -> builtins.str:
        if isinstance(v, builtins.str):
            return v
        if isinstance(v, bytes):
            try:
                return v.decode("utf-8")
            except UnicodeDecodeError:
                raise WrongType(f"bytes that are not UTF-8 text ({describe(v)})") from None
        raise self._wrong(name)

    def _as_str(self, name: builtins.str) -> builtins.str:
        return self._text(name, self.values[name])

    def _items(self, name: builtins.str) -> Sequence[Any]:
        v = self.values[name]
        if isinstance(v, np.ndarray) and v.ndim == 1:
            return list(v.tolist())
        if not isinstance(v, list | tuple):
            raise self._wrong(name)
        return v

    def _as_opt_ints(self, name: builtins.str) -> tuple[builtins.int | None, ...]:
        items = self._items(name)
        if not all(i is None or _is_int(i) for i in items):
            raise self._wrong(name)
        return tuple(None if i is None else builtins.int(i) for i in items)

    def _as_floats(self, name: builtins.str) -> tuple[builtins.float, ...]:
        items = self._items(name)
        if not all(_is_number(i) for i in items):
            raise self._wrong(name)
        return tuple(builtins.float(i) for i in items)

    def _as_strs(self, name: builtins.str) -> tuple[builtins.str, ...]:
        return tuple(self._text(name, i) for i in self._items(name))

    def _as_tensor(self, name: builtins.str) -> np.ndarray:
        v = self.values[name]
        if not isinstance(v, np.ndarray):
            raise self._wrong(name)
        return v
