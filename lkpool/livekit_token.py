"""Access tokens for publishing a page into a LiveKit room, signed with livekit-api.

The key and secret come from `Settings` (LIVEKIT_API_KEY / LIVEKIT_API_SECRET) and the server
URL from LIVEKIT_URL. The grant is the least a publisher needs: join that one room and publish
screen share video, its audio and data as that one identity; it does not subscribe to
anyone's media, and the server signs it to live no longer than the lease it publishes.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from .config import Settings
from .errors import InvalidArgument

DEFAULT_TTL = datetime.timedelta(hours=6)
MAX_NAME = 256  # LiveKit room names and identities are short strings
PUBLISH_SOURCES = ["screen_share", "screen_share_audio"]


@dataclass(frozen=True)
class Credentials:
    url: str
    api_key: str
    api_secret: str

    @classmethod
    def from_settings(cls, settings: Settings) -> Credentials:
        """The server's own LiveKit credentials; InvalidArgument when any is missing."""
        missing = [name for name, value in (
            ("LIVEKIT_URL", settings.livekit_url), ("LIVEKIT_API_KEY", settings.livekit_api_key),
            ("LIVEKIT_API_SECRET", settings.livekit_api_secret)) if not value]
        if missing:
            raise InvalidArgument(
                f"no LiveKit credentials here ({', '.join(missing)} not set): pass "
                "livekit_url and token instead of room and identity")
        return cls(settings.livekit_url, settings.livekit_api_key, settings.livekit_api_secret)


def check_name(kind: str, value: object, *, prefix: str = "") -> str:
    """A room or identity name; with `prefix` (LIVEKIT_ROOM_PREFIX) it must start with it."""
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME:
        raise InvalidArgument(f"{kind} must be a non-empty string of at most {MAX_NAME} "
                              f"characters, got {str(value)[:100]!r}")
    if not value.startswith(prefix):
        raise InvalidArgument(f"{kind} must start with {prefix!r} (LIVEKIT_ROOM_PREFIX), got "
                              f"{value[:100]!r}")
    return value


def publisher_token(creds: Credentials, room: str, identity: str, *, name: str = "",
                    ttl: datetime.timedelta = DEFAULT_TTL) -> str:
    """A JWT that lets `identity` join `room` and publish a page's tracks and data."""
    from livekit import api

    grants = api.VideoGrants(room_join=True, room=check_name("room", room), can_publish=True,
                             can_publish_data=True, can_subscribe=False,
                             can_publish_sources=PUBLISH_SOURCES)
    return (api.AccessToken(creds.api_key, creds.api_secret)
            .with_identity(check_name("identity", identity)).with_name(name or identity)
            .with_grants(grants).with_ttl(ttl).to_jwt())
