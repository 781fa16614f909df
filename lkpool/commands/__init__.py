"""One module per `lkpool` subcommand, each with `add_arguments(parser)` and `run(args) -> int`.

The table `COMMANDS` in `lkpool.cli` names them; a module is imported only when its command
runs (or its `--help` is asked for), so a slow import never slows the others.
"""
