"""``python -m fc``: the same program as ``fc`` / ``fcc``."""

from fc.cli import entry

entry()
