"""One converter registry for every frontend, keyed by the *source* framework's op names.

(Tables keyed by fc's IR op names, such as kernels and lowerings, are
``fc.ir.registry.OpTable``.) Each frontend makes one (or more) ``ConverterRegistry``:

    CONVERTERS = ConverterRegistry("ONNX", versioned=True, loader=_load_modules)
    converter = CONVERTERS.register

    @converter("Conv", since=1, check=check_2d)      # ONNX: opsets 1.. (until=None: newest)
    def conv(ctx): ...

    MX = ConverterRegistry("MXNet", meta={"label_inputs": ()})

    @MX.register("SoftmaxOutput", "Softmax", label_inputs=(1,))   # aliases, metadata
    def softmax_output(ctx): ...

A converter is ``fn(ctx) -> Value | list[Value | None]`` (one fc value per source output).
Its optional ``check(ctx) -> str | None`` says, before ``fn`` runs, why fc refuses this
node (``"3-D"``, ``"act_type=softrelu"``); the importer runs every check of a model and
raises one ``UnsupportedOpsError`` listing every refused node (:class:`Refusals`).

A check runs twice: up front, before anything is converted, when only the attributes, the
constants and the model's declared shapes are known (``ctx.known_shape(i)`` and
``ctx.known_const(i)`` return ``None`` for what is not known yet), and again just before
``fn`` with everything known. So ``fn`` never re-checks what its check covers, and a check
returns ``None`` when what it needs is not known yet.

Registering a name twice (for a versioned registry: overlapping version ranges) raises;
``override=True`` replaces an entry. Version ranges are inclusive; ``version`` at lookup is
the model's (the ONNX default-domain opset). Built-in converters are imported by the
``loader`` (an explicit list of modules, no discovery) before the first lookup or the first
registration from outside, so registration order cannot break anything.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from fc.errors import ImportError_, UnsupportedOpsError

__all__ = ["Check", "Converter", "ConverterRegistry", "Refusals"]

Fn = Callable[..., Any]
#: ``check(ctx) -> reason | None``
Check = Callable[[Any], "str | None"]
_NEWEST = 10**9


@dataclass(frozen=True)
class Converter:
    """One registration: the function, its version range, its check and its metadata."""

    name: str
    fn: Fn
    since: int | None = None
    until: int | None = None
    check: Check | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    def covers(self, version: int | None) -> bool:
        if self.since is None or version is None:
            return True
        return self.since <= version <= (self.until if self.until is not None else _NEWEST)

    def overlaps(self, other: Converter) -> bool:
        if self.since is None or other.since is None:
            return True
        hi = self.until if self.until is not None else _NEWEST
        ohi = other.until if other.until is not None else _NEWEST
        return self.since <= ohi and other.since <= hi

    @property
    def versions(self) -> str:
        if self.since is None:
            return "all versions"
        return f"{self.since}..{self.until if self.until is not None else 'latest'}"

    def refusal(self, ctx: Any) -> str | None:
        """The check's reason for refusing the node of ``ctx`` (``None``: accepted)."""
        return self.check(ctx) if self.check is not None else None

    def __call__(self, ctx: Any) -> Any:
        return self.fn(ctx)


class ConverterRegistry:
    """Converters of one source framework (see the module docstring).

    ``framework`` names it in messages (``"ONNX"``, ``"MXNet"``, ``"PyTorch ATen"``);
    ``versioned`` registries take ``since``/``until`` and are looked up with a version;
    ``meta`` declares the metadata keys a registration may carry, with their defaults
    (every entry then has all of them); ``kind`` is what an entry is (``"converter"``,
    ``"folder"``).
    """

    def __init__(self, framework: str, *, versioned: bool = False,
                 loader: Callable[[], None] | None = None, meta: Mapping[str, Any] | None = None,
                 kind: str = "converter", version_name: str = "version"):
        self.framework = framework
        self.versioned = versioned
        self.kind = kind
        self.version_name = version_name
        self._meta_defaults = dict(meta or {})
        self._loader = loader
        self._state = "unloaded" if loader is not None else "loaded"
        self._entries: dict[str, list[Converter]] = {}

    def load(self) -> None:
        """Import the built-in converters (once; every lookup does it first)."""
        if self._state == "unloaded":
            self._state = "loading"
            try:
                assert self._loader is not None
                self._loader()
            except BaseException:
                self._state = "unloaded"
                raise
            self._state = "loaded"

    # -- registration ---------------------------------------------------------------------
    def register(self, *names: str, since: int | None = None, until: int | None = None,
                 check: Check | None = None, override: bool = False,
                 **meta: Any) -> Callable[[Fn], Fn]:
        """Register the decorated ``fn(ctx)`` for each source op name in ``names``."""
        what = f"{self.framework} {self.kind}"
        if not names:
            raise ValueError(f"{what}: register() needs at least one op name")
        if self.versioned:
            since = 1 if since is None else since
            if until is not None and until < since:
                raise ValueError(f"{what} {names[0]!r}: until={until} < since={since}")
        elif since is not None or until is not None:
            raise ValueError(f"{what} {names[0]!r}: {self.framework} converters have no "
                             "version range")
        unknown = sorted(set(meta) - set(self._meta_defaults))
        if unknown:
            raise TypeError(f"{what} {names[0]!r}: unknown metadata {unknown} (this registry "
                            f"takes {sorted(self._meta_defaults)})")
        full_meta = MappingProxyType({**self._meta_defaults, **meta})

        def deco(fn: Fn) -> Fn:
            if self._state == "unloaded":  # built-ins first, so a collision is seen now
                self.load()
            for name in names:
                entry = Converter(name, fn, since, until, check, full_meta)
                entries = self._entries.setdefault(name, [])
                clash = [e for e in entries if e.overlaps(entry)]
                if clash and not override:
                    raise ValueError(
                        f"{what} for {name!r} registered twice ({clash[0].fn.__name__} "
                        f"for {clash[0].versions} and {fn.__name__} for {entry.versions}); "
                        "pass override=True to replace it")
                entries[:] = sorted([e for e in entries if e not in clash] + [entry],
                                    key=lambda e: e.since or 0)
            return fn

        return deco

    def unregister(self, name: str) -> None:
        """Remove every entry of ``name`` (tests that register a temporary op)."""
        self.load()
        self._entries.pop(name, None)

    # -- lookup ---------------------------------------------------------------------------
    def find(self, name: str, version: int | None = None) -> Converter | None:
        """The entry of ``name`` covering ``version`` (any entry for unversioned)."""
        self.load()
        for entry in self._entries.get(name, ()):
            if entry.covers(version):
                return entry
        return None

    def get(self, name: str, version: int | None = None) -> Converter:
        """``find``, but a miss raises an ``ImportError_`` naming the op (and version)."""
        found = self.find(name, version)
        if found is None:
            at = f" at {self.version_name} {version}" if self.versioned and version else ""
            raise ImportError_(f"no {self.framework} {self.kind} for {name!r}{at}")
        return found

    def __contains__(self, name: object) -> bool:
        self.load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        self.load()
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        self.load()
        return len(self._entries)

    def names(self) -> list[str]:
        """Every registered op name (aliases included), sorted."""
        return list(self)

    def ranges(self) -> dict[str, list[tuple[int | None, int | None]]]:
        """Op name -> the version ranges registered for it, sorted."""
        self.load()
        return {name: [(e.since, e.until) for e in entries]
                for name, entries in sorted(self._entries.items())}

    def __repr__(self) -> str:
        return (f"ConverterRegistry({self.framework!r}, {self.kind}, {len(self._entries)} ops, "
                f"{self._state})")


class Refusals:
    """Every node of one model that fc refuses, raised at the end as one error.

    A node is refused under a *label*: the op name when no converter exists, or
    ``"Op(reason)"`` when its converter's check refuses it. A node is recorded once, by its
    ``key`` (default: its name; a node index where names may repeat), so the up-front pass and
    the conversion pass do not count it twice; the first label wins.
    """

    def __init__(self, framework: str, source: str):
        self.framework = framework
        self.source = source
        self._by_key: dict[Hashable, tuple[str, str]] = {}

    def add(self, name: str, label: str, key: Hashable = None) -> None:
        self._by_key.setdefault(name if key is None else key, (name, label))

    def judge(self, name: str, op: str, converter: Converter | None, ctx: Any,
              key: Hashable = None) -> bool:
        """Record node ``name`` if it is refused (no ``converter``, or its check refuses);
        return whether it was refused."""
        if converter is None:
            self.add(name, op, key)
            return True
        reason = converter.refusal(ctx)
        if reason:
            self.add(name, f"{op}({reason})", key)
            return True
        return False

    def __contains__(self, key: object) -> bool:
        return key in self._by_key

    def __bool__(self) -> bool:
        return bool(self._by_key)

    def __len__(self) -> int:
        return len(self._by_key)

    def by_label(self) -> dict[str, list[str]]:
        """Label -> node names, in model order."""
        out: dict[str, list[str]] = {}
        for name, label in self._by_key.values():
            out.setdefault(label, []).append(name)
        return out

    def error(self) -> UnsupportedOpsError:
        return UnsupportedOpsError(self.framework, self.source, self.by_label())

    def raise_if_any(self) -> None:
        if self._by_key:
            raise self.error()
