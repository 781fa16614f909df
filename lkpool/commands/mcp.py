"""`lkpool mcp [--server URL]`: an MCP server over stdio that opens browsers from the pool
for an agent (lkpool/mcpserver.py). Without `--server` it runs a pool in this process,
configured from the environment like `lkpool serve` (NUM_WARM, MAX_INSTANCES, ...).

stdout is the MCP channel: logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from ..config import ConfigError, Settings

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", help="lkpool server, e.g. http://127.0.0.1:8888; "
                        "without it a pool runs in this process")
    parser.add_argument("--token", help="the server's TOKEN, if it has one")
    parser.add_argument("--lease-timeout", type=float, default=600.0,
                        help="seconds each browser is leased for, the bound on a lost "
                             "lease [600]")


async def serve(args: argparse.Namespace) -> None:
    """Serves until the client closes stdin, or SIGTERM / SIGINT (an MCP client sends
    SIGTERM 2 s after closing stdin): either way the leases are released and an
    in-process pool stops its browsers and removes their profiles before we exit."""
    from ..mcpserver import browsers_at, build

    settings = None
    if args.server is None:
        settings = Settings.from_env(host="127.0.0.1", port=0, token="")
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    stopping = False

    def stop() -> None:
        nonlocal stopping
        if not stopping:  # a second signal must not cut the clean-up short
            stopping = True
            task.cancel()

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop)
    try:
        async with browsers_at(args.server, args.token, args.lease_timeout,
                               settings) as browsers:
            try:
                await build(browsers).run_stdio_async()
            except asyncio.CancelledError:
                if not stopping:
                    raise
                task.uncancel()  # a signal: leave through the clean-up below
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if not 1 <= args.lease_timeout <= 86400:
        print("lkpool mcp: error: --lease-timeout must be in 1..86400", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        return 130
    except ConfigError as exc:
        print(f"lkpool mcp: error: {exc}", file=sys.stderr)
        return 2
    return 0
