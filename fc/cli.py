"""The ``fc`` / ``fcc`` command line (``fc`` is a bash/zsh builtin, hence the second name).

Every user mistake is an ``FcError``: one line on stderr, exit status 2, and nothing
half-written. ``--debug`` shows the traceback and fc's debug log (e.g. why a fusion refused).
Python warnings raised on the way (numpy's, a framework's) are shown after a successful
command and dropped before an error line, so an error stays one line. A file system failure
(disk full, read-only) is one line too. Ctrl-C, at any point after Python has started, exits
130 with "fcc: interrupted" (``fc.interrupt``): this module imports nothing heavy, so fc's
handler is in place before numpy, the frameworks or fc's commands load.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from fc import interrupt

interrupt.install()

__all__ = ["main", "build_parser", "entry"]

_INTERRUPTED = 128 + signal.SIGINT


def build_parser() -> Any:
    import argparse

    from fc import __version__
    from fc.commands import COMMANDS

    p = argparse.ArgumentParser(
        prog="fcc",
        description="fc: a frontend compiler for neural-network accelerators "
                    "(installed as both `fc` and `fcc`; bash's builtin `fc` hides the first).")
    p.add_argument("--version", action="version", version=f"fc {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks and fc's debug log")
    # --debug is accepted after the subcommand too (SUPPRESS keeps the global value).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks and fc's debug log")
    common.add_argument("--max-tensor-size", metavar="SIZE",
                        help="largest tensor fc reads or creates (default 512M; e.g. 2G)")
    common.add_argument("--max-total-size", metavar="SIZE",
                        help="most bytes of tensors in one file (default 4G)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    for module in COMMANDS:
        module.add_parser(sub, common)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run one fcc command; return its exit status (0, 2 for an error, 130 interrupted)."""
    import warnings

    interrupt.install()
    interrupt.reset()
    previous_hook = sys.unraisablehook
    sys.unraisablehook = _quiet_when_interrupted(previous_hook)
    try:
        with warnings.catch_warnings(record=True) as caught:
            rc, debug = _main(argv)
    finally:
        sys.unraisablehook = previous_hook
    if rc == 0 or debug:
        for w in caught:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return rc


def _quiet_when_interrupted(hook: Any) -> Any:
    """Finalizers of objects a Ctrl-C cut short (half-built mxnet symbols) complain through
    ``sys.unraisablehook``; after an interrupt that is noise before "interrupted"."""

    def quiet(unraisable: Any) -> None:
        if not interrupt.interrupted():
            hook(unraisable)

    return quiet


def _main(argv: Sequence[str] | None) -> tuple[int, bool]:
    try:
        parser = build_parser()
    except BaseException:
        if interrupt.interrupted():  # Ctrl-C while the commands load (perhaps re-raised
            print("fcc: interrupted", file=sys.stderr)  # by an import as an ImportError)
            return _INTERRUPTED, False
        raise
    args = parser.parse_args(argv)
    if args.debug:
        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
        return _run(args), True
    # Log records (fc's notes, a framework's warnings) are held and shown only after a
    # successful command: an error stays the one line it is.
    held = _HeldLog()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(held)
    root.setLevel(logging.WARNING)
    try:
        rc = _run(args)
    finally:
        root.removeHandler(held)
        root.setLevel(old_level)
    if rc == 0:
        held.replay()
    return rc, False


class _HeldLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[Any] = []
        self.setFormatter(logging.Formatter("%(name)s: %(message)s"))

    def emit(self, record: Any) -> None:
        self.records.append(record)

    def replay(self) -> None:
        for r in self.records:
            print(self.format(r), file=sys.stderr)


def _one_line(text: str) -> str:
    """An error message as fcc prints it: one line whatever user text it quotes (line breaks
    and other control characters escaped, lone surrogates escaped so stderr can encode them)."""
    if text.isprintable():
        return text
    out = "".join(c if c.isprintable() or c == " " else ascii(c)[1:-1] for c in text)
    return out.encode("utf-8", "backslashreplace").decode("utf-8")


def _run(args: Any) -> int:
    from fc.errors import FcError
    from fc.limits import limits, parse_size
    from fc.spelling import cli_spelling

    try:
        sizes = {}
        if getattr(args, "max_tensor_size", None):
            sizes["max_tensor_bytes"] = parse_size(args.max_tensor_size)
        if getattr(args, "max_total_size", None):
            sizes["max_total_bytes"] = parse_size(args.max_total_size)
        with cli_spelling(), limits(**sizes):  # errors name --input-shape, not input_shapes=
            rc = args.func(args)
        interrupt.check()  # a Ctrl-C that some library swallowed still stops fcc
        return rc
    except KeyboardInterrupt:
        print("fcc: interrupted", file=sys.stderr)
        return _INTERRUPTED
    except BaseException as e:
        if interrupt.interrupted() and not args.debug:  # whatever the interrupt turned into
            print("fcc: interrupted", file=sys.stderr)
            return _INTERRUPTED
        if isinstance(e, FcError):
            if args.debug:
                raise
            print(f"fcc: error: {_one_line(str(e))}", file=sys.stderr)
            return 2
        if isinstance(e, BrokenPipeError):  # `fcc complexity ... | head`: the reader left
            sys.stderr.close()
            return 0
        if isinstance(e, OSError) and not args.debug:  # disk full, read-only, permissions
            where = f"{e.filename}: " if e.filename else ""
            print(f"fcc: error: {where}{e.strerror or e}", file=sys.stderr)
            return 2
        raise


def entry() -> None:
    """The console scripts' entry point: ``sys.exit(main())``, except that an interrupted
    run exits 130 itself. (Python would otherwise turn an exit after a Ctrl-C that passed
    through some frameworks' code into a death by SIGINT, with no exit status.)"""
    rc = main()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # done: a late Ctrl-C cannot cut the exit
    if rc == _INTERRUPTED:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    sys.exit(rc)


if __name__ == "__main__":  # pragma: no cover
    entry()
