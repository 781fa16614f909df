"""`lkpool publish URL --room NAME`: one page from an in-process pool into a LiveKit room,
until Ctrl-C (or SIGTERM), the page closing or the room going away.

The LiveKit server and credentials come from LIVEKIT_URL / LIVEKIT_API_KEY /
LIVEKIT_API_SECRET (or --livekit-url, and --token to bring a token instead of signing one).
Missing ones stop it before any browser starts, with status 2; a LiveKit server that cannot
be joined ends it with status 1 and the reason.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from ..config import ConfigError, Settings
from ..errors import LkpoolError

logger = logging.getLogger("lkpool.publish")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", help="the page to publish (http, https, about or data URL)")
    parser.add_argument("--room", required=True, help="LiveKit room name")
    parser.add_argument("--identity", default="lkpool-page",
                        help="participant identity of the page (default %(default)s)")
    parser.add_argument("--width", type=int, help="page width (default $WIDTH or 1280)")
    parser.add_argument("--height", type=int, help="page height (default $HEIGHT or 720)")
    parser.add_argument("--framerate", type=int, help="frames per second (default $FRAMERATE "
                                                      "or 30)")
    parser.add_argument("--livekit-url", help="LiveKit server URL (default $LIVEKIT_URL)")
    parser.add_argument("--token", help="a LiveKit access token to join with, instead of one "
                                        "signed with $LIVEKIT_API_KEY/$LIVEKIT_API_SECRET")
    parser.add_argument("--allow-input", action="append", default=[], metavar="IDENTITY",
                        help="a participant whose input events (data topic lkpool.input) the "
                             "page takes; repeat for more; none by default")
    parser.add_argument("--engine", choices=("chromium", "cef"), help="default $ENGINE")


def run(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env(width=args.width, height=args.height,
                                     framerate=args.framerate, engine=args.engine,
                                     livekit_url=args.livekit_url)
        url, token = join_args(settings, args)
    except (ConfigError, LkpoolError) as exc:
        print(f"lkpool publish: error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(publish(settings, args, url, token))
    except LkpoolError as exc:
        print(f"lkpool publish: {exc}", file=sys.stderr)
        return 1
    return 0


def join_args(settings: Settings, args: argparse.Namespace) -> tuple[str, str]:
    """(livekit_url, token) from the flags and settings, checked before anything starts."""
    from ..livekit_token import Credentials, check_name, publisher_token

    check_name("room", args.room)
    check_name("identity", args.identity)
    if args.token:
        if not settings.livekit_url:
            raise ConfigError("--token needs --livekit-url or LIVEKIT_URL")
        return settings.livekit_url, args.token
    creds = Credentials.from_settings(settings)
    return creds.url, publisher_token(creds, args.room, args.identity)


async def publish(settings: Settings, args: argparse.Namespace, url: str, token: str) -> None:
    from ..pool import Pool
    from ..publish import PagePublisher, connect_room

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # one instance, leased for as long as the pool allows: this process is its only user
    pool_settings = settings.replace(num_warm=1, max_instances=1,
                                     idle_timeout=settings.max_lease_timeout)
    async with Pool(pool_settings) as pool:
        async with pool.lease(settings.max_lease_timeout, url=args.url) as lease:
            room = await connect_room(url, token, timeout=settings.proxy_connection_timeout)
            try:
                allowed = frozenset(args.allow_input) or None
                async with PagePublisher(lease.page, allowed_identities=allowed) as pub:
                    await pub.publish(room)
                    pub.on("closed", stop.set)
                    room.on("disconnected", lambda *_: stop.set())
                    print(f"publishing {args.url} to room {room.name!r} as "
                          f"{room.local_participant.identity!r}; Ctrl-C to stop",
                          file=sys.stderr, flush=True)
                    ended = asyncio.ensure_future(lease.wait_ended())
                    waiting = asyncio.ensure_future(stop.wait())
                    await asyncio.wait({ended, waiting}, return_when=asyncio.FIRST_COMPLETED)
                    ended.cancel()
                    waiting.cancel()
            finally:
                with contextlib.suppress(Exception):
                    await room.disconnect()
    logger.info("stopped")
