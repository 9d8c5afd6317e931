"""The ``fc`` / ``fcc`` command line (``fc`` is a bash/zsh builtin, hence the second name).

Every user mistake is an ``FcError``: one line on stderr, exit status 2. ``--debug`` shows the
traceback and fc's debug log (e.g. why a fusion refused).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from fc import __version__
from fc.commands import COMMANDS
from fc.errors import FcError
from fc.spelling import cli_spelling

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
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
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    for module in COMMANDS:
        module.add_parser(sub, common)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(name)s: %(message)s")
    try:
        with cli_spelling():  # errors name --input-shape, not input_shapes=
            return args.func(args)
    except FcError as e:
        if args.debug:
            raise
        print(f"fcc: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fcc: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `fcc complexity ... | head`: the reader left, not an error
        sys.stderr.close()
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
