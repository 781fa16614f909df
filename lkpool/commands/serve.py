"""`lkpool serve`: the pool with its REST API and DevTools proxy, until SIGTERM or SIGINT.

Every setting is a flag generated from `lkpool.config.fields()` (`--num-warm 2` sets
NUM_WARM); a flag beats the environment, which beats the default. A bad value exits with
status 2 and the message of its `ConfigError`.

No token, no network: on an address other than loopback without `TOKEN`, the server makes
a strong token for the run, prints it once to stderr and requires it (as Jupyter does), so a
`--host 0.0.0.0` never serves the pool to whoever reaches the port.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import secrets
import signal
import sys
from collections.abc import Callable

from ..config import ConfigError, Settings, env_name, fields, parse

logger = logging.getLogger("lkpool.serve")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _uvloop() -> Callable[[], asyncio.AbstractEventLoop]:
    import uvloop

    return uvloop.new_event_loop


def _auto() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        return _uvloop()
    except ImportError:
        return None


# --loop: the event loop implementation (uvloop pipes proxied CDP messages faster)
LOOPS: dict[str, Callable[[], Callable[[], asyncio.AbstractEventLoop] | None]] = {
    "auto": _auto,
    "asyncio": lambda: None,
    "uvloop": _uvloop,
}
# settings whose value --help must not print
SECRETS = frozenset({"token", "livekit_api_key", "livekit_api_secret", "cluster_secret"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--loop", choices=list(LOOPS), default="auto",
                        help="event loop: uvloop when installed (auto), or asyncio's own "
                             "[default auto]")
    group = parser.add_argument_group("settings (each also read from its environment "
                                      "variable)")
    for f in fields():
        env = env_name(f)
        current = os.environ.get(env)
        if current is not None:
            shown = f"${env}=" + ("(set)" if f.name in SECRETS else repr(current))
        else:
            shown = repr(f.default)
        help_text = f"{f.metadata['help']} [env {env}; default {shown}]"
        group.add_argument("--" + f.name.replace("_", "-"), dest=f.name, metavar=env,
                           default=None, help=help_text.replace("%", "%%"))


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings from the environment, overridden by the flags given."""
    overrides = {f.name: parse(f, getattr(args, f.name)) for f in fields()
                 if getattr(args, f.name, None) is not None}
    return Settings.from_env(**overrides)


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach an address (a name other than localhost may
    resolve anywhere, and '' or 0.0.0.0 is every interface)."""
    name = host.strip().strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def guard_network(settings: Settings) -> Settings:
    """The settings to serve with: given a TOKEN, or a generated one when HOST is reachable
    from the network without it (printed once here; it is never logged)."""
    if settings.token or is_loopback(settings.host):
        return settings
    token = secrets.token_urlsafe(32)
    print(f"lkpool serve: HOST={settings.host} is reachable from the network and TOKEN is "
          "not set, so this run requires this generated token (set TOKEN to choose one):\n"
          f"    TOKEN={token}", file=sys.stderr, flush=True)
    return settings.replace(token=token)


def run(args: argparse.Namespace) -> int:
    try:
        settings = settings_from(args)
        level = logging.getLevelName(settings.log_level.upper())
        if not isinstance(level, int):
            raise ConfigError(f"LOG_LEVEL={settings.log_level!r} is not a logging level")
    except ConfigError as exc:
        print(f"lkpool serve: error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from ..engines import check
    from ..errors import EngineError

    try:
        check(settings)  # e.g. ENGINE=cef without its binaries: say so now, not per lease
    except EngineError as exc:
        print(f"lkpool serve: error: {exc}", file=sys.stderr)
        return 2
    try:
        loop_factory = LOOPS[args.loop]()
    except ImportError:
        print("lkpool serve: error: --loop uvloop needs uvloop (pip install uvloop)",
              file=sys.stderr)
        return 2
    settings = guard_network(settings)
    try:
        asyncio.run(serve(settings), loop_factory=loop_factory)
    except OSError as exc:  # the port is taken, the address is not ours...
        logger.error("cannot serve on %s:%s: %s", settings.host, settings.port, exc)
        return 1
    return 0


async def serve(settings: Settings) -> None:
    from aiohttp import web

    from ..server.app import create_app
    from ..server.edge import make_runner

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, _on_signal, sig, stop)
    # shutdown_timeout bounds how long open requests may take to finish
    runner = make_runner(create_app(settings), settings, handle_signals=False,
                         shutdown_timeout=5.0)
    await runner.setup()  # starts the pool (cleanup_ctx)
    try:
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        loop_name = type(loop).__module__.split(".")[0]
        for host, port, *_ in runner.addresses:
            logger.info("lkpool listening on http://%s:%s (%s loop)", host, port, loop_name)
        await stop.wait()
    finally:
        # Shutdown, in order (aiohttp's runner.cleanup does steps 1-3, our cleanup_ctx 4-5):
        # 1. stop accepting connections; 2. proxied WebSockets closed with 1001;
        # 3. open requests drained within shutdown_timeout, then cancelled;
        # 4. the proxy's HTTP client closed; 5. the pool closed: every lease ended, every
        #    instance stopped, its shared memory unlinked and its profile removed.
        logger.info("stopping")
        await runner.cleanup()
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
        logger.info("stopped")


def _on_signal(sig: signal.Signals, stop: asyncio.Event) -> None:
    if stop.is_set():
        logger.warning("%s again: already stopping", sig.name)
        return
    logger.info("%s: stopping", sig.name)
    stop.set()
