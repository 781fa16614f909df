"""The DevTools port of a sandboxed Chromium, brought out to the host's loopback.

Chromium listens on 127.0.0.1:P of its own network namespace; the server, the proxy and the
child reach it at 127.0.0.1:P of the host. `Forward` owns the host's listening socket (bound
before Chromium starts, so P is ours: no race for a free port) and, for each connection,
opens one inside the namespace and copies bytes both ways, one thread per direction with
blocking sockets: a slow reader on one side stops the reading on the other, as a direct
connection would (backpressure), and no byte waits in a buffer of ours.

A socket belongs to the network namespace its creator was in, and the namespace is per
thread: the accepting thread enters the sandbox's namespace (`setns`) and creates each
inner socket there; the accepted ones belong to the host's. Entering it takes
CAP_SYS_ADMIN over the sandbox's user namespace, which a root server has; any other server
falls back on pasta's own forward (`-t`), whose copy stalls on an old pasta (Debian 12's,
2023-03) when a reader is slow, a pasta bug this module exists to avoid.

Other instances cannot connect to P: each sandbox has a network namespace of its own, in
which the host's loopback does not exist.

The server's proxy skips this relay: it holds a `Namespace` of each instance and opens its
DevTools WebSockets from inside (one copy of every CDP message fewer, bench/pool.py).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterable

logger = logging.getLogger(__name__)

CHUNK = 1 << 18
BACKLOG = 64


def listen(port: int) -> socket.socket:
    """The host's end: 127.0.0.1:`port` (0 picks one)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def can_enter_namespaces() -> bool:
    """Whether this process may `setns` into a sandbox's network namespace."""
    return os.geteuid() == 0 and hasattr(os, "setns")


class Namespace:
    """A sandbox's network namespace, held open by the server so that its proxy connects to
    Chromium's DevTools from inside instead of through the child's relay.

    The handle pins the namespace: `open` checks it against the inode the child reported
    (which holds it open too), so it never names another lease's namespace whatever pid is
    reused later, and it stays that namespace until `close`."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self.inode = os.fstat(fd).st_ino  # what another process checks its handle against

    @classmethod
    def of(cls, pid: int) -> Namespace:
        """The namespace of process `pid`, for the process that started it (the child)."""
        return cls(os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC))

    @classmethod
    def open(cls, pid: int, inode: int) -> Namespace | None:
        """The namespace of process `pid` if it is the one with `inode`; None when it is
        not (the process is gone) or cannot be entered from here."""
        if not (pid and inode and can_enter_namespaces()):
            return None
        try:
            ns = cls.of(pid)
        except OSError:
            return None
        if ns.inode != inode:
            ns.close()
            return None
        return ns

    def socket(self) -> socket.socket:
        """A new TCP socket of the namespace, unconnected and non-blocking. The calling
        thread enters the namespace for the one system call and is back before returning."""
        if self._fd < 0:
            raise OSError("the sandbox's network namespace is closed")
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.setns(self._fd, os.CLONE_NEWNET)
            try:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            finally:
                os.setns(home, os.CLONE_NEWNET)
        finally:
            os.close(home)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class _Relays:
    """The open connections of one relay, which `close` cuts however many threads pump them:
    a connection accepted while closing is closed at once instead of tracked."""

    def __init__(self, pid: int) -> None:
        self._netns = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._closed = False

    def _track(self, *socks: socket.socket) -> bool:
        with self._lock:
            if self._closed:
                for sock in socks:
                    sock.close()
                return False
            self._open.update(socks)
            return True

    def _forget(self, *socks: socket.socket) -> None:
        with self._lock:
            self._open.difference_update(socks)

    def _closing(self) -> list[socket.socket] | None:
        """Marks the relay closed: the connections to cut, or None when it already was."""
        with self._lock:
            if self._closed:
                return None
            self._closed = True
            return list(self._open)


def _shut(socks: Iterable[socket.socket]) -> None:
    for sock in socks:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class Forward(_Relays):
    """Copies connections to the host's `listener` into the namespace of process `pid`."""

    def __init__(self, listener: socket.socket, pid: int) -> None:
        super().__init__(pid)
        self.listener = listener
        self.port = listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, name=f"devtools-{self.port}",
                                        daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        try:
            os.setns(self._netns, os.CLONE_NEWNET)  # this thread only
        except OSError as exc:
            logger.error("cannot enter the sandbox's network: %s", exc)
            return
        while True:
            try:
                outer, _ = self.listener.accept()
            except OSError:
                return  # closed
            try:
                inner = socket.create_connection(("127.0.0.1", self.port), timeout=5)
                inner.settimeout(None)
            except OSError:
                outer.close()  # Chromium does not listen yet: the caller tries again
                continue
            for sock in (outer, inner):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if not self._track(outer, inner):
                return
            pair = _Pair(outer, inner, self._forget)
            for src, dst in ((outer, inner), (inner, outer)):
                threading.Thread(target=pair.pump, args=(src, dst), daemon=True,
                                 name=f"devtools-{self.port}-pump").start()

    def close(self) -> None:
        """Stops accepting and cuts every connection; idempotent."""
        socks = self._closing()
        if socks is None:
            return
        _shut([self.listener])  # wakes the blocked accept()
        self.listener.close()
        _shut(socks)
        self._thread.join(timeout=2)
        os.close(self._netns)


class _Pair:
    """One forwarded connection: two directions, closed once both are done."""

    def __init__(self, outer: socket.socket, inner: socket.socket, forget) -> None:
        self.socks = (outer, inner)
        self._forget = forget
        self._left = 2
        self._lock = threading.Lock()

    def pump(self, src: socket.socket, dst: socket.socket) -> None:
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        try:
            while n := src.recv_into(buf):
                dst.sendall(view[:n])
            dst.shutdown(socket.SHUT_WR)  # EOF goes on; the other way may still talk
        except OSError:
            for sock in self.socks:  # one side broke: so does the other
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        with self._lock:
            self._left -= 1
            done = self._left == 0
        if done:
            self._forget(*self.socks)
            for sock in self.socks:
                sock.close()


class Outward(_Relays):
    """Each of `ports` from 127.0.0.1 of the namespace of process `pid` out to the same port
    on the host's 127.0.0.1 (ALLOW_HOST_PORTS), where the sandbox's network (slirp4netns,
    `--disable-host-loopback`) reaches no host loopback port at all.

    Each listening socket is made by a short-lived thread inside the namespace; the thread
    that accepts stays in the host's, so the sockets it opens to the host's ports are the
    host's."""

    def __init__(self, pid: int, ports: tuple[int, ...]) -> None:
        super().__init__(pid)
        self.listeners = self._listen_inside(ports) if ports else []
        self._threads = [threading.Thread(target=self._accept, args=(sock,), daemon=True,
                                          name=f"allowed-{sock.getsockname()[1]}")
                         for sock in self.listeners]
        for thread in self._threads:
            thread.start()

    def _listen_inside(self, ports: tuple[int, ...]) -> list[socket.socket]:
        made: list[socket.socket] = []
        failure: list[BaseException] = []

        def inside() -> None:
            try:
                os.setns(self._netns, os.CLONE_NEWNET)
                for port in ports:
                    made.append(listen(port))
            except OSError as exc:
                failure.append(exc)

        thread = threading.Thread(target=inside, name="allowed-listen")
        thread.start()
        thread.join()
        if failure:
            for sock in made:
                sock.close()
            os.close(self._netns)
            raise failure[0]
        return made

    def _accept(self, listener: socket.socket) -> None:
        port = listener.getsockname()[1]
        while True:
            try:
                inner, _ = listener.accept()
            except OSError:
                return
            try:
                outer = socket.create_connection(("127.0.0.1", port), timeout=5)
                outer.settimeout(None)
            except OSError:
                inner.close()  # nothing listens on the host's port: refused, as it would be
                continue
            for sock in (outer, inner):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if not self._track(inner, outer):
                return
            pair = _Pair(outer, inner, self._forget)
            for src, dst in ((outer, inner), (inner, outer)):
                threading.Thread(target=pair.pump, args=(src, dst), daemon=True,
                                 name=f"allowed-{port}-pump").start()

    def close(self) -> None:
        socks = self._closing()
        if socks is None:
            return
        _shut((*self.listeners, *socks))
        for sock in self.listeners:
            sock.close()
        for thread in self._threads:
            thread.join(timeout=2)
        os.close(self._netns)
