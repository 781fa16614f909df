"""Settings: every knob of lkpool in one frozen dataclass.

The same object goes to the server, the pool and each instance's child (it pickles).
Values come from keyword arguments, from the environment (`Settings.from_env`) or from CLI
flags generated from the same field table (`lkpool serve --help`). A bad value raises
`ConfigError` naming the variable and what it accepts; the constructor has no other side
effect.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from .errors import LkpoolError

Engine = Literal["chromium", "cef"]
Capture = Literal["auto", "x11", "screencast"]

MAX_WIDTH = 3840
MAX_HEIGHT = 2160
MAX_FRAMERATE = 60
# a node's name goes into session ids and URLs: a DNS label
NODE_NAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


class ConfigError(LkpoolError, ValueError):
    """A setting has a value lkpool cannot use."""


def _knob(default: Any, help: str, *, env: str | None = None, **limits: Any) -> Any:
    """A settings field; `env` defaults to the upper-cased field name."""
    return field(default=default, metadata={"help": help, "env": env, **limits})


def _default_chromium() -> str:
    return shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"


@dataclass(frozen=True, kw_only=True)
class Settings:
    host: str = _knob("127.0.0.1", "address the server listens on")
    port: int = _knob(8888, "port the server listens on", min=0, max=65535)
    token: str = _knob("", "when set, every endpoint but /session/{id}/..., /health and the "
                       "pages needs it; off loopback an unset one is generated at start")
    engine: Engine = _knob("chromium", "browser engine: chromium (ours) or cef (livekit.browser)")
    capture: Capture = _knob("auto", "frame source: x11 (Xvfb grab), screencast, or auto")
    chromium_path: str = _knob(_default_chromium(), "the Chromium binary")
    chromium_flags: str = _knob("", "extra Chromium flags, space separated")
    chromium_profile_base_dir: str = _knob(
        os.path.join(tempfile.gettempdir(), "lkpool-profiles"),
        "folder under which each instance gets a fresh profile",
    )
    base_port: int = _knob(
        9000, "kept for chrome-pool compatibility; every instance is proxied on PORT", min=0,
        max=65535,
    )
    debugging_port_start: int = _knob(
        0, "first DevTools port to hand out; 0 lets each Chromium pick a free one", min=0,
        max=65535,
    )
    num_warm: int = _knob(1, "idle instances kept started", min=0, max=256)
    max_instances: int = _knob(8, "most instances at once", min=1, max=256)
    idle_timeout: float = _knob(300.0, "seconds an idle instance above the floor, or an idle "
                                "lease, lives", min=1.0)
    scale_down_interval: float = _knob(60.0, "seconds between scale-down passes", min=0.1)
    max_startup_attempts: int = _knob(3, "failed starts in a row before the pool gives up",
                                      min=1, max=100)
    health_check_interval: float = _knob(2.0, "seconds between health checks of a leased "
                                         "instance", min=0.1)
    idle_health_check_interval: float = _knob(
        30.0, "seconds between health checks of an idle instance (its crash is an event "
        "anyway; this finds one that hangs)", min=0.1)
    health_check_timeout: float = _knob(3.0, "seconds an instance has to answer a check",
                                        min=0.1)
    proxy_connection_timeout: float = _knob(5.0, "seconds to reach an instance's DevTools",
                                            min=0.1)
    acquire_timeout: float = _knob(5.0, "seconds an allocation waits for a busy pool", min=0.0)
    lease_timeout: float = _knob(30.0, "default lease length in seconds", min=1.0)
    max_lease_timeout: float = _knob(86400.0, "longest lease or extension in seconds",
                                     min=1.0)
    max_reusable: int = _knob(0, "leases an instance may serve before it is replaced; 0 = a "
                              "fresh instance per lease", min=0)
    expires: float = _knob(0.0, "seconds after which an instance is replaced; 0 = never",
                           min=0.0)
    start_timeout: float = _knob(30.0, "seconds an instance has to start", min=1.0)
    request_timeout: float = _knob(15.0, "seconds a request to an instance may take", min=0.1)
    width: int = _knob(1280, "default page width", min=1, max=MAX_WIDTH)
    height: int = _knob(720, "default page height", min=1, max=MAX_HEIGHT)
    framerate: int = _knob(30, "default page framerate", min=1, max=MAX_FRAMERATE)
    screen_width: int = _knob(1920, "widest page shown on each instance's X screen (x11 "
                              "capture), which is fitted to the page up to this size; a "
                              "wider page is captured by screencast; 0 = the first page's",
                              min=0, max=MAX_WIDTH)
    screen_height: int = _knob(1080, "tallest page shown on the X screen, as SCREEN_WIDTH",
                               min=0, max=MAX_HEIGHT)
    audio: bool = _knob(True, "capture each instance's audio through PulseAudio")
    # isolation of leases (proc/sandbox.py): what a lease's browser may reach on the host
    sandbox: bool = _knob(True, "run each Chromium in its own user, mount, pid and network "
                          "namespaces (bubblewrap + slirp4netns); off only where the kernel "
                          "forbids them, and then a lease reaches the host")
    allow_host_ports: str = _knob("", "host loopback TCP ports a lease may reach at "
                                  "http://127.0.0.1:<port>/, comma separated (a-b for a range); "
                                  "no other host port is reachable from a sandbox")
    download_max_bytes: int = _knob(256 << 20, "bytes a lease may download before its "
                                    "downloads are cancelled", min=0)
    max_body_bytes: int = _knob(1 << 20, "largest HTTP request body", min=1024)
    max_ws_message_bytes: int = _knob(64 << 20, "largest WebSocket message", min=1024)
    livekit_url: str = _knob("", "LiveKit server for publishing")
    livekit_api_key: str = _knob("", "LiveKit API key for signing publish tokens")
    livekit_api_secret: str = _knob("", "LiveKit API secret for signing publish tokens")
    log_level: str = _knob("INFO", "logging level")
    # ---- the edge: who may talk to the server, and how much (SECURITY.md) -------------------
    public_url: str = _knob("", "URL clients use to reach this node")
    allowed_hosts: str = _knob("", "extra Host names served, comma separated (IP addresses "
                               "and localhost always are); * serves any")
    allowed_origins: str = _knob("", "extra web origins (scheme://host[:port]) allowed to "
                                 "open sockets and change state, comma separated")
    livekit_room_prefix: str = _knob("lkpool-", "rooms and identities the server signs "
                                     "publish tokens for must start with this")
    max_session_sockets: int = _knob(16, "WebSockets open at once per session (frames, "
                                     "input, CDP); more are closed with 1008", min=1,
                                     max=1024)
    client_timeout: float = _knob(15.0, "seconds a client has to send a request's head or "
                                  "JSON body; also how long an idle keep-alive connection "
                                  "stays open", min=1.0)
    # ---- the cluster (lkpool.cluster): several nodes sharing one Redis serve one API
    redis_url: str = _knob("", "Redis of the cluster's shared state (redis://host:6379/0); "
                           "empty: this node serves on its own")
    node_name: str = _knob("", "this node's stable name in the cluster; empty: the host name")
    internal_url: str = _knob("", "URL other nodes reach this node at; empty: PUBLIC_URL, "
                              "else http://HOST:PORT")
    cluster_secret: str = _knob("", "shared secret of the node-to-node calls (needed with "
                                "REDIS_URL)")
    cluster_heartbeat: float = _knob(1.0, "seconds between a node's heartbeats", min=0.05)
    cluster_node_timeout: float = _knob(5.0, "seconds without a heartbeat after which a node "
                                        "is lost and its sessions end (node_lost)", min=0.1)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _validate(f, getattr(self, f.name))
        host_ports(self.allow_host_ports)  # raises ConfigError on a bad list
        if self.public_url and urlsplit(self.public_url).scheme not in ("http", "https"):
            raise ConfigError(f"PUBLIC_URL={self.public_url!r} must be an http(s):// URL")
        if self.redis_url and not self.cluster_secret:
            raise ConfigError("REDIS_URL needs CLUSTER_SECRET: node-to-node calls authenticate "
                              "with it")
        if self.node_name and not NODE_NAME_RE.fullmatch(self.node_name):
            raise ConfigError(f"NODE_NAME={self.node_name!r} must be letters, digits and '-' "
                              "(at most 63)")
        if self.num_warm > self.max_instances:
            raise ConfigError(
                f"NUM_WARM={self.num_warm} is above MAX_INSTANCES={self.max_instances}"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from environment variables (named as in `env_name`), then `overrides`."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            name = env_name(f)
            if name in environ:
                values[f.name] = parse(f, environ[name])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def env_name(f: dataclasses.Field) -> str:
    return f.metadata.get("env") or f.name.upper()


def _choices(f: dataclasses.Field) -> tuple[str, ...] | None:
    args = get_args(eval(f.type, globals())) if isinstance(f.type, str) else get_args(f.type)
    return args or None


def parse(f: dataclasses.Field, raw: str) -> Any:
    """Turns the text of an environment variable or flag into the field's type."""
    kind: type = type(f.default)
    try:
        if kind is bool:
            low = raw.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
        return kind(raw.strip()) if kind in (int, float) else raw
    except ValueError:
        raise ConfigError(
            f"{env_name(f)}={raw!r} is not a valid {kind.__name__} ({f.metadata['help']})"
        ) from None


def _validate(f: dataclasses.Field, value: Any) -> None:
    name = env_name(f)
    kind = type(f.default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{name}={value!r} must be a {kind.__name__}")
    choices = _choices(f)
    if choices and value not in choices:
        raise ConfigError(f"{name}={value!r} must be one of {', '.join(choices)}")
    lo, hi = f.metadata.get("min"), f.metadata.get("max")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise ConfigError(f"{name}={value!r} is out of range ({rng})")


def host_ports(spec: str) -> tuple[int, ...]:
    """ALLOW_HOST_PORTS as sorted, distinct ports: "8080,9000-9009" -> (8080, 9000, ...)."""
    ports: set[int] = set()
    for part in filter(None, (p.strip() for p in spec.split(","))):
        lo, _, hi = part.partition("-")
        try:
            first, last = int(lo), int(hi or lo)
        except ValueError:
            raise ConfigError(f"ALLOW_HOST_PORTS={spec!r}: {part!r} is not a port or a "
                              "range a-b") from None
        if not 1 <= first <= last <= 65535 or last - first >= 1024:
            raise ConfigError(f"ALLOW_HOST_PORTS={spec!r}: {part!r} is out of range "
                              "(1..65535, at most 1024 ports a range)")
        ports.update(range(first, last + 1))
    return tuple(sorted(ports))


def fields() -> tuple[dataclasses.Field, ...]:
    """The field table, for the CLI and the README's configuration table."""
    return dataclasses.fields(Settings)
