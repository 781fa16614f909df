"""`lkpool serve | screenshot | publish | mcp`: a table of subcommands, each in lkpool/commands/.

Only the chosen command's module is imported, so each command's dependencies load only when it
runs, and a command whose module is missing fails alone with a clear message.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("lkpool.commands.serve", "run the pool with its REST API and DevTools proxy"),
    "screenshot": ("lkpool.commands.screenshot", "take a screenshot of a page"),
    "publish": ("lkpool.commands.publish", "publish a page to a LiveKit room"),
    "mcp": ("lkpool.commands.mcp", "an MCP server (stdio) that gives an agent browsers"),
}


def build_parser(chosen: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lkpool", description="A pool of off-screen Chromium browsers.")
    sub = parser.add_subparsers(dest="command", metavar="command", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                if exc.name != module_name:
                    raise
                parser.exit(2, f"lkpool: the {name} command is not available in this build\n")
            module.add_arguments(cmd)
            cmd.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(chosen if chosen in COMMANDS else None).parse_args(argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
