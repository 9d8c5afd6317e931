"""The subcommands of ``fcc``, one module each, listed explicitly in the order ``--help`` shows.

A command module has ``add_parser(sub, common)`` (its argparse sub-parser, with
``set_defaults(func=run_command)``) and ``run_command(args) -> int``. Adding a command is one
module and one line here.
"""

from fc.commands import checklist, compile, complexity, compress, export, info, quant, reconstruct, run

__all__ = ["COMMANDS"]

COMMANDS = (compile, run, reconstruct, export, info, complexity, quant, compress, checklist)
