"""Each Chromium in a sandbox of its own: a lease holder drives the whole browser over CDP, so
whatever the browser can read, reach or write, a lease can.

The sandbox is bubblewrap (`bwrap`) plus a user-mode network (slirp4netns, or pasta), the
pattern of Flatpak and of rootless containers, built from unprivileged user namespaces:

- **user**: Chromium runs as uid 1000 of a user namespace of its own, with no capability
  outside it; Chromium's own sandbox (its zygote's namespaces and seccomp-bpf) is on inside.
  On the host its processes keep the server's uid (root's, when the server is root): a
  separate host uid would need the profile's whole path opened to it.
- **mount**: a root of its own. Read-only: `/usr` (with the merged-/usr links), and the few
  files of `/etc` a browser needs (fonts, TLS roots, name resolution, Chromium's own
  config). Read-write: the instance's profile only. Private `/tmp`, `/dev` and
  `/dev/shm`. The X socket and cookie of its own display are the only other things in.
- **pid**: its own `/proc`: no other process, no other process's environment.
- **IPC**: its own SysV IPC namespace, shared with its own Xvfb only (Chromium hands frames
  to Xvfb in SysV shared memory, MIT-SHM: in a namespace without Xvfb it falls back on the
  socket, +40% CPU at 1080p60). A server that is not root cannot make Xvfb one: the
  sandbox then keeps the host's IPC namespace.
- **network**: its own, given to slirp4netns, which carries TCP/UDP to the outside world
  through host sockets but not to the host's loopback (`--disable-host-loopback`; it runs
  in a sandbox and seccomp filter of its own). Two ways across only, both `forward.py`'s:
  the DevTools port, from the host's 127.0.0.1 into the namespace, so the server (and
  nothing in another lease's namespace) reaches it; and each `ALLOW_HOST_PORTS` port from
  the namespace's 127.0.0.1 out to the same port on the host's. Those forwards enter the
  namespace with `setns`, which a server that is not root may not: it gets pasta instead
  (`--no-map-gw`, every automatic forward off, `-t` and `-T` for the two), which costs
  about 28 MB of memory per instance (slirp4netns: 1 MB) and whose copy on Debian 12
  (2023-03) can stall under a slow reader.
- **environment**: cleared, then only `ENV_ALLOW` and what the caller sets.

`--die-with-parent` and the pid namespace tie the whole tree to bwrap, which is in the
child's process group: the child's `killpg` sweep ends it, and its network process too.
"""

from __future__ import annotations

import json
import logging
import os
import select
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ..errors import BrowserStartError
from .forward import Forward, Outward, can_enter_namespaces

logger = logging.getLogger(__name__)

INSTALL_HINT = ("apt-get install bubblewrap slirp4netns passt, or SANDBOX=false (a lease then "
                "reaches the host)")
# the DNS server slirp4netns answers on (it forwards to the host's)
SLIRP_DNS = "10.0.2.3"
TMP_BYTES = 128 << 20
# the uid a sandboxed browser has inside its namespace
INNER_UID = 1000
SETUP_TIMEOUT = 10.0
# host variables a browser may see (locale and time zone); everything else is set by us
ENV_ALLOW = ("LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "TZ")
# read-only pieces of the host's /etc that Chromium and its libraries read
ETC_FILES = (
    "fonts", "ssl", "ca-certificates", "alternatives", "ld.so.cache", "ld.so.conf",
    "ld.so.conf.d", "resolv.conf", "hosts", "nsswitch.conf", "host.conf", "gai.conf",
    "localtime", "timezone", "mime.types", "chromium", "chromium.d", "pulse",
)
# caches built for every program on the host: without fontconfig's, each browser would build
# its own in memory at start (+30 MB per instance, and time)
SHARED_CACHES = ("/var/cache/fontconfig",)
# the merged-/usr links of Debian and most distributions
USR_LINKS = ("bin", "sbin", "lib", "lib64", "lib32")
PASSWD = f"chromium:x:{INNER_UID}:{INNER_UID}::/home/chromium:/usr/sbin/nologin\n"
GROUP = f"chromium:x:{INNER_UID}:\n"


def missing() -> str | None:
    """What this machine lacks for the sandbox, or None."""
    for tool in ("bwrap", "slirp4netns" if can_enter_namespaces() else "pasta"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


def allowed_env(extra: Mapping[str, str], environ: Mapping[str, str] | None = None
                ) -> dict[str, str]:
    """The environment of a browser or helper: `ENV_ALLOW` from the host, PATH, then `extra`.
    Nothing else of the server's (its TOKEN, LIVEKIT_API_SECRET, ...) goes through."""
    environ = os.environ if environ is None else environ
    env = {k: environ[k] for k in ENV_ALLOW if k in environ}
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    env.update(extra)
    return env


def free_port() -> int:
    """A loopback port nobody listens on now (pasta binds it a moment later; a race lost to
    another process fails pasta's start, which `start` retries with another port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Spec:
    """What goes into one sandbox besides `/usr` and `/etc`'s pieces."""
    argv: list[str]
    profile: str  # bound read-write at the same path, and the browser's HOME
    env: dict[str, str]
    port: int  # the DevTools port, the same inside and on the host's loopback
    allow_ports: tuple[int, ...] = ()
    ro_files: dict[str, str] = field(default_factory=dict)  # host path -> path inside
    data_files: dict[str, bytes] = field(default_factory=dict)  # path inside -> contents
    ipc_of: int = 0  # a process whose IPC namespace the sandbox shares (its Xvfb), or 0


@dataclass
class Sandbox:
    """A started sandbox: bwrap (whose exit is the browser's), its network (slirp4netns or
    pasta), and our forwards (None where pasta does the forwarding)."""
    bwrap: subprocess.Popen
    network: subprocess.Popen
    port: int  # DevTools, the same inside and on the host's loopback
    forward: Forward | None = None
    outward: Outward | None = None
    inner: int = 0  # the host pid of the namespace's init (bwrap inside), 0 when unknown

    def kill(self) -> None:
        for fwd in (self.forward, self.outward):
            if fwd is not None:
                fwd.close()
        for proc in (self.bwrap, self.network):
            if proc.poll() is None:
                proc.kill()
        for proc in (self.bwrap, self.network):
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        if self.inner:
            _wait_namespace_gone(self.inner, time.monotonic() + 5)


def _wait_namespace_gone(init: int, deadline: float) -> None:
    """Waits until the pid namespace of `init` holds no process. Its init dies with the outer
    bwrap (--die-with-parent), but on its own time: the kernel then kills every process of
    the namespace and lets the init end only once they all have, so an init that is gone or a
    zombie means nothing of the browser is left (its zombie is reaped by whoever adopted it).
    Without this wait an ended instance's renderers could outlive it by a moment."""
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{init}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            return
        if state in (b"Z", b"X"):
            return
        time.sleep(0.01)
    logger.warning("sandbox namespace of pid %d still has processes after 5 s", init)


def _bwrap_args(spec: Spec, fds: dict[str, int]) -> list[str]:
    args = ["bwrap", "--unshare-user", "--uid", str(INNER_UID), "--gid", str(INNER_UID),
            "--unshare-pid", "--unshare-net", "--unshare-uts",
            *([] if spec.ipc_of else ["--unshare-ipc"]),
            "--unshare-cgroup-try", "--die-with-parent", "--new-session",
            "--hostname", "lkpool",
            "--ro-bind", "/usr", "/usr"]
    for link in USR_LINKS:
        if os.path.islink(f"/{link}"):
            args += ["--symlink", os.readlink(f"/{link}"), f"/{link}"]
        elif os.path.isdir(f"/{link}"):
            args += ["--ro-bind", f"/{link}", f"/{link}"]
    for name in ETC_FILES:
        if os.path.exists(f"/etc/{name}"):
            args += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    for folder in SHARED_CACHES:
        if os.path.isdir(folder):
            args += ["--ro-bind", folder, folder]
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/dev/shm",
             # /tmp is memory: bounded, so a lease cannot fill the host's RAM through it
             "--size", str(TMP_BYTES), "--tmpfs", "/tmp",
             "--dir", "/home/chromium",
             "--bind", spec.profile, spec.profile]
    for host, inside in spec.ro_files.items():
        args += ["--ro-bind", host, inside]
    for inside in spec.data_files:
        args += ["--perms", "0444", "--ro-bind-data", str(fds[inside]), inside]
    args += ["--info-fd", str(fds["info"]), "--block-fd", str(fds["block"]),
             "--chdir", spec.profile, "--clearenv"]
    for key, value in spec.env.items():
        args += ["--setenv", key, value]
    args = [*args, "--", *spec.argv]
    if spec.ipc_of:  # into the IPC namespace of the instance's Xvfb (display.py)
        args = ["nsenter", f"--ipc=/proc/{spec.ipc_of}/ns/ipc", "--", *args]
    return args


def _pasta_args(spec: Spec, pid: int) -> list[str]:
    """pasta, for a server that is not root (root's sandboxes use slirp4netns and our own
    forwards): it joins the user and network namespaces of `pid`, both its own uid's."""
    return ["pasta", "--foreground", "--quiet", "--config-net", "--no-map-gw",
            # every forward is explicit: 'auto' (the default) would forward each port the
            # host listens on into the namespace, the server's included
            "-t", f"127.0.0.1/{spec.port}", "-u", "none", "-U", "none",
            "-T", ",".join(map(str, spec.allow_ports)) if spec.allow_ports else "none",
            str(pid)]


def _read_info(fd: int, proc: subprocess.Popen, deadline: float) -> int:
    """bwrap writes `{"child-pid": N, ...}` once the namespaces exist."""
    data = b""
    while not data.rstrip().endswith(b"}"):
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None:
            raise BrowserStartError(f"bwrap could not make the sandbox (exit {proc.poll()}); "
                                    "see chromium.log; " + INSTALL_HINT)
        if select.select([fd], [], [], min(left, 0.1))[0]:
            chunk = os.read(fd, 4096)
            if not chunk:
                continue
            data += chunk
    pid = int(json.loads(data)["child-pid"])
    # pasta must not join before bwrap has written the namespace's uid map
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with open(f"/proc/{pid}/uid_map") as f:
                if f.read().strip():
                    return pid
        except FileNotFoundError:
            break  # bwrap gave up: its reason is in the log
        time.sleep(0.002)
    raise BrowserStartError("the sandbox's user namespace was not set up (see chromium.log)")


def _listening(ports: Iterable[int], net: str = "/proc/net") -> bool:
    """Whether every one of `ports` has a listening socket in the network namespace whose
    /proc/<pid>/net is `net`."""
    found = set()
    for table in ("tcp", "tcp6"):
        try:
            with open(os.path.join(net, table)) as f:
                for line in f.readlines()[1:]:
                    fields = line.split()
                    if fields[3] == "0A":  # LISTEN
                        found.add(int(fields[1].rsplit(":", 1)[1], 16))
        except FileNotFoundError:
            continue
    return set(ports) <= found


def _routed(pid: int) -> bool:
    """Whether pasta has configured the namespace (its default route is there)."""
    with open(f"/proc/{pid}/net/route") as f:
        return any(line.split()[1] == "00000000" for line in f.readlines()[1:])


def _start_pasta(spec: Spec, pid: int, log, deadline: float) -> subprocess.Popen:
    pasta = subprocess.Popen(_pasta_args(spec, pid), env=allowed_env({}),
                             stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    def ready() -> bool:
        return (_listening([spec.port]) and _listening(spec.allow_ports, f"/proc/{pid}/net")
                and _routed(pid))

    while not ready():
        if pasta.poll() is not None or time.monotonic() > deadline:
            if pasta.poll() is None:
                pasta.kill()
            pasta.wait()
            raise OSError(f"pasta exited with {pasta.returncode}")
        time.sleep(0.005)
    return pasta


def _tail(path: str, size: int = 300) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - size))
            return f.read().decode(errors="replace").strip().replace("\n", " / ")
    except OSError:
        return ""


def _start_slirp(pid: int, log, deadline: float) -> subprocess.Popen:
    ready_r, ready_w = os.pipe()
    # the network namespace by a descriptor of ours, and no user namespace to join: as root
    # it needs none, and joining bwrap's while bwrap still sets it up fails now and then
    netns = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    try:
        proc = subprocess.Popen(
            ["slirp4netns", "--configure", "--mtu=65520", "--disable-host-loopback",
             "--enable-sandbox", "--enable-seccomp", f"--ready-fd={ready_w}",
             "--netns-type=path", f"/proc/self/fd/{netns}", "tap0"],
            pass_fds=(ready_w, netns), env=allowed_env({}), stdin=subprocess.DEVNULL,
            stdout=log, stderr=log)
    finally:
        os.close(ready_w)
        os.close(netns)
    try:
        left = max(0.0, deadline - time.monotonic())
        if not (select.select([ready_r], [], [], left)[0] and os.read(ready_r, 1) == b"1"):
            proc.kill()
            proc.wait()
            raise OSError(f"slirp4netns did not get ready (exit {proc.returncode}): "
                          f"{_tail(log.name)}")
    finally:
        os.close(ready_r)
    return proc


def start(spec: Spec, log, listener: socket.socket | None, attempts: int = 3) -> Sandbox:
    """Starts `spec.argv` in a sandbox (blocking: run it in a thread). Chromium is held until
    its network is in place, so its first request already goes through pasta. `listener`:
    the host's end of the DevTools port (`forward.listen`, on `spec.port`), or None for
    pasta to forward it; it is the sandbox's from here, closed on failure."""
    deadline = time.monotonic() + SETUP_TIMEOUT
    if listener is not None:  # slirp4netns: name resolution through its DNS forwarder
        spec.data_files["/etc/resolv.conf"] = f"nameserver {SLIRP_DNS}\n".encode()
    info_r, info_w = os.pipe()
    block_r, block_w = os.pipe()
    data_fds: dict[str, int] = {}
    pass_fds = [info_w, block_r]
    try:
        for inside, content in spec.data_files.items():
            r, w = os.pipe()
            os.write(w, content)  # small (a cookie, a passwd line): fits the pipe's buffer
            os.close(w)
            data_fds[inside] = r
            pass_fds.append(r)
        fds = {"info": info_w, "block": block_r, **data_fds}
        bwrap = subprocess.Popen(
            _bwrap_args(spec, fds), pass_fds=pass_fds, env=allowed_env({}),
            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    finally:
        for fd in (info_w, block_r, *data_fds.values()):
            os.close(fd)
    try:
        pid = _read_info(info_r, bwrap, deadline)
        for attempt in range(attempts):
            try:
                network = (_start_slirp(pid, log, deadline) if listener is not None
                           else _start_pasta(spec, pid, log, deadline))
                break
            except OSError as exc:
                if attempt == attempts - 1 or time.monotonic() > deadline:
                    raise BrowserStartError(f"the sandbox's network did not start ({exc}); "
                                            "see chromium.log") from exc
        box = Sandbox(bwrap, network, spec.port, inner=pid)
        try:
            if listener is not None:
                box.forward = Forward(listener, pid)
                box.outward = Outward(pid, spec.allow_ports)
        except BaseException:
            box.kill()
            raise
        os.write(block_w, b"go")
    except BaseException:
        if listener is not None:
            listener.close()
        bwrap.kill()
        bwrap.wait()
        raise
    finally:
        os.close(info_r)
        os.close(block_w)
    return box
