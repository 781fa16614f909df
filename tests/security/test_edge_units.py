"""The pure parts of the edge, without a server: which Hosts and Origins the policy serves,
and the input socket's bounded outbox."""

from __future__ import annotations

import asyncio

import pytest

from lkpool.config import ConfigError, Settings
from lkpool.server.edge import Policy
from lkpool.server.outbox import Outbox


def test_hosts_served_by_default_and_by_setting() -> None:
    """IP addresses and localhost names always; other names only when listed."""
    policy = Policy.from_settings(Settings(allowed_hosts="lk.example.com, .corp.example",
                                           public_url="https://pub.example.org/lk"))
    for host in ("127.0.0.1:8888", "[::1]:80", "10.1.2.3", "localhost", "a.localhost:1",
                 "LK.example.com:443", "x.corp.example", "pub.example.org", "localhost."):
        assert policy.allowed(host, None), host
    for host in ("rebind.attacker.example:8888", "corp.example.evil", "example.com",
                 "127.0.0.1.nip.io", "a b/c", ""):
        assert not policy.allowed(host, None), host
    assert Policy.from_settings(Settings(allowed_hosts="*")).allowed("anything.example", None)


def test_origins_allowed() -> None:
    """The server's own origin (http or https, same host and port), PUBLIC_URL's and listed
    ones; never null or another port of the same host."""
    policy = Policy.from_settings(Settings(allowed_origins="https://dash.example",
                                           public_url="https://pub.example.org"))
    host = "127.0.0.1:8888"
    for origin in ("http://127.0.0.1:8888", "https://127.0.0.1:8888", "https://dash.example",
                   "https://dash.example:443", "https://pub.example.org"):
        assert policy.allowed(host, origin), origin
    for origin in ("http://evil.example", "null", "http://127.0.0.1:8889", "file://",
                   "http://127.0.0.1", "https://dash.example:444"):
        assert not policy.allowed(host, origin), origin


def test_public_url_must_be_http() -> None:
    """A PUBLIC_URL that is not http(s) stops start-up naming the variable."""
    with pytest.raises(ConfigError, match="PUBLIC_URL"):
        Settings(public_url="ftp://x")


async def test_outbox_coalesces_state_and_closes_a_reader_behind() -> None:
    """A thousand URL changes wait as one; acks queue in order up to the limit, then the
    outbox overflows and ends."""
    box = Outbox(coalesce={"url_changed"}, limit=3)
    for i in range(1000):
        box.put({"type": "url_changed", "url": str(i)})
    box.put({"type": "ack", "id": 1})
    assert len(box) == 2
    assert await box.get() == {"type": "url_changed", "url": "999"}
    assert await box.get() == {"type": "ack", "id": 1}
    for i in range(3):
        box.put({"type": "ack", "id": i})
    assert not box.overflowed
    box.put({"type": "ack", "id": 99})
    assert box.overflowed and await box.get() is None
    await asyncio.wait_for(box.wait_overflow(), 1)


async def test_outbox_end_delivers_the_last_message() -> None:
    """end(last) sends `last` after what is queued, then None."""
    box = Outbox(coalesce=(), limit=10)
    box.put({"type": "ack", "id": 1})
    box.end({"type": "closed", "reason": "released"})
    assert [await box.get(), await box.get(), await box.get()] == [
        {"type": "ack", "id": 1}, {"type": "closed", "reason": "released"}, None]
