"""LiveKit's own browser agent (livekit-plugins-browser's BrowserAgent, with Anthropic's
computer-use tool) driving a browser leased from an lkpool Pool, streamed into a LiveKit
room as a screen share: open the room in a LiveKit front end for the plugin (its
`browser-input` / focus RPCs work unchanged) and watch, or take over.

Needs a LiveKit server and an Anthropic key:

    pip install 'lkpool[dev]'   # or: pip install livekit-plugins-browser livekit-plugins-anthropic
    export LIVEKIT_URL=wss://... LIVEKIT_API_KEY=... LIVEKIT_API_SECRET=...
    export ANTHROPIC_API_KEY=...
    python examples/browser_agent.py --room demo "Find the weather in Paris"

The pool starts one warm browser; the agent's page is leased from it in milliseconds
(livekit.browser would start CEF for it), and the lease ends when the agent stops.
"""

from __future__ import annotations

import argparse
import asyncio
import os

from livekit import api, rtc
from livekit.plugins import anthropic

from lkpool import Pool, Settings
from lkpool.livekit import PooledBrowserAgent


def token(room: str, identity: str) -> str:
    return (api.AccessToken(os.environ["LIVEKIT_API_KEY"], os.environ["LIVEKIT_API_SECRET"])
            .with_identity(identity)
            .with_grants(api.VideoGrants(room_join=True, room=room))
            .to_jwt())


async def main(args: argparse.Namespace) -> None:
    room = rtc.Room()
    await room.connect(os.environ["LIVEKIT_URL"], token(args.room, "browser-agent"))
    settings = Settings.from_env(num_warm=1, max_instances=1)
    async with Pool(settings) as pool:
        agent = PooledBrowserAgent(pool=pool, url=args.url, llm=anthropic.LLM(),
                                   width=1280, height=720, framerate=30)
        await agent.start(room=room)
        try:
            await agent.send_message(args.task)
            await asyncio.Event().wait()  # until Ctrl-C: the room may send more tasks
        finally:
            await agent.aclose()
            await room.disconnect()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("task", help="what the agent should do")
    parser.add_argument("--room", default="lkpool-agent", help="LiveKit room name")
    parser.add_argument("--url", default="https://www.google.com/", help="start page")
    asyncio.run(main(parser.parse_args()))
