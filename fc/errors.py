"""Every user-facing failure of fc is an ``FcError``: the CLI prints its one line and exits 2.

Messages name the object (file, node, field) and the offending value, so that the line
alone tells the user what to fix.
"""

from __future__ import annotations

__all__ = [
    "FcError",
    "IRError",
    "SchemaError",
    "ImportError_",
    "UnsupportedOpsError",
    "ExecutionError",
    "PassError",
    "ReconstructError",
    "LimitError",
]


class FcError(Exception):
    """Base class of every error fc reports to a user."""


class IRError(FcError):
    """A malformed IR: bad graph structure, JSON or npz file."""


class SchemaError(FcError):
    """An op or attribute that does not fit its schema."""


class ImportError_(FcError):
    """A model that a frontend cannot read (named so as not to shadow the builtin)."""


class UnsupportedOpsError(ImportError_):
    """A model using ops a frontend cannot translate; lists all of them at once."""

    def __init__(self, framework: str, source: str, unsupported: dict[str, list[str]]):
        self.unsupported = unsupported
        parts = []
        for op, names in sorted(unsupported.items()):
            shown = ", ".join(repr(n) for n in names[:3])
            more = f", ... (+{len(names) - 3})" if len(names) > 3 else ""
            parts.append(f"{op} x{len(names)} ({shown}{more})")
        super().__init__(
            f"{source}: {len(unsupported)} unsupported {framework} op type(s): " + "; ".join(parts)
        )


class ExecutionError(FcError):
    """A kernel failed while the golden executor ran a node."""


class PassError(FcError):
    """A compiler pass produced or met an invalid graph."""


class ReconstructError(FcError):
    """An IR that a reconstructor (torch, TF) cannot rebuild, or a failed rebuild."""


class LimitError(FcError):
    """An input asking fc for more memory than its limits allow (``fc.limits``)."""
