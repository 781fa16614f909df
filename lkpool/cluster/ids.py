"""Session ids that route themselves: `{name}.{incarnation}.{random}`.

`name.incarnation` is the node id (nid): the node's stable name (NODE_NAME, a DNS label)
and a number that grows with each start, so a restarted node never matches the ids of its
previous life. The random part carries 192 bits. Any node finds a session's owner from the
id alone, even while Redis is away.
"""

from __future__ import annotations

import re
import secrets
import socket
import time

from ..config import NODE_NAME_RE, Settings

RANDOM_BYTES = 24  # 192 bits, as the single node's ids
# the paths about one session: its REST resource and everything under /session/{id}/
SESSION_PATH = re.compile(r"^/(?:session|browser)/([^/]+)(?:/|$)")


def node_name(settings: Settings) -> str:
    """NODE_NAME, else the host name's first label (made a DNS label)."""
    if settings.node_name:
        return settings.node_name
    label = socket.gethostname().split(".")[0]
    label = "".join(c if c.isalnum() or c == "-" else "-" for c in label).strip("-")[:63]
    return label if NODE_NAME_RE.fullmatch(label or "") else "node"


def new_nid(name: str) -> str:
    """This start's node id: milliseconds since the epoch grow with each restart."""
    return f"{name}.{time.time_ns() // 1_000_000:x}"


def new_random() -> str:
    return secrets.token_urlsafe(RANDOM_BYTES)


def nid_of(session_id: str) -> str | None:
    """The node id a session id names, or None for an id of another shape."""
    name, dot, rest = session_id.partition(".")
    incarnation, dot2, random = rest.partition(".")
    if not (dot and dot2 and random and NODE_NAME_RE.fullmatch(name) and incarnation.isalnum()):
        return None
    return f"{name}.{incarnation}"


def name_of(nid: str) -> str:
    return nid.partition(".")[0]
