"""YAML as fc reads its configuration files: ``yaml.safe_load`` with the holes closed.

``yaml.safe_load`` runs no code, but three things still get past it (issue 16):

* **aliases**: a 490-byte file of nested anchors (``&a [x, x, ...]``, ``&b [*a, *a, ...]``,
  ...) is 9^9 values once anything walks or prints it — fcc hung, growing, on such a
  ``QUAN.strategy``. fc's configs have no use for anchors, so an alias is refused;
* **nesting**: ``[[[[...`` a few thousand deep is a ``RecursionError`` in the composer;
* **scalars that do not construct**: an unquoted ``2001-13-40`` (a bad date), a 5000-digit
  integer, ``!!float x`` raise ``ValueError`` from the constructor; and a hexadecimal
  integer of 5000 digits constructs, but formatting it in a message raises (integers are
  kept to 64 bits).

Each is a ``yaml.MarkedYAMLError`` (with the line where it is, when known), so every caller's
``except yaml.YAMLError`` turns it into its usual one line.
"""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["safe_load", "MAX_DEPTH", "YAMLRefused"]

#: deepest nesting of sequences and mappings accepted (fc's configs nest 3-4 levels)
MAX_DEPTH = 64


class YAMLRefused(yaml.MarkedYAMLError):
    """YAML that fc refuses to build: an alias, nesting deeper than :data:`MAX_DEPTH`, a
    scalar its tag cannot construct."""

    def __init__(self, problem: str, mark: Any = None):
        super().__init__(problem=problem, problem_mark=mark)


class _Loader(yaml.SafeLoader):
    def __init__(self, stream: Any):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise YAMLRefused(f"alias *{event.anchor}: fc's configuration files take no YAML "
                              "aliases (they can expand to billions of values)",
                              event.start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise YAMLRefused(f"nested deeper than {MAX_DEPTH} levels",
                                  self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        try:
            value = super().construct_object(node, deep)
            if isinstance(value, int) and not isinstance(value, bool) and \
                    value.bit_length() > 64:  # 0x + 5000 digits: its repr() alone raises
                raise YAMLRefused(f"integer {str(node.value)[:40]!r}... has "
                                  f"{value.bit_length()} bits, more than a 64-bit integer",
                                  node.start_mark)
            return value
        except yaml.YAMLError:
            raise
        except Exception as e:  # noqa: BLE001 - PyYAML's constructors raise ValueError,
            # OverflowError, TypeError, and AttributeError for "!!timestamp x" (found by
            # the 10-minute quant-config run: 90 of 32,296 cases)
            text = " ".join(str(e).split())[:120]
            raise YAMLRefused(f"{node.tag.rsplit(':', 1)[-1]} value {str(node.value)[:40]!r} "
                              f"cannot be read ({type(e).__name__}: {text})",
                              node.start_mark) from None


def safe_load(text: str | bytes) -> Any:
    """``yaml.safe_load(text)`` without aliases, deep nesting or unconstructible scalars
    (each a :class:`YAMLRefused`, a ``yaml.YAMLError``)."""
    loader = _Loader(text)
    try:
        return loader.get_single_data()
    except RecursionError:  # nesting the depth check did not see (a very long key, say)
        raise YAMLRefused("nested too deeply") from None
    finally:
        loader.dispose()
