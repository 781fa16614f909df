"""A real cluster on loopback: a `redis-server` on a free port (no persistence) and lkpool
nodes as subprocesses, capacity 2 each, heartbeats shrunk so failures show within seconds
(but not so far that a node starved of CPU on a loaded machine is taken for dead: that
would free its slots while it still holds them).

`shared_cluster` (one per module) serves the tests that leave it as they found it;
`cluster` makes a fresh one for a test that kills, restarts or drains parts of it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support import leaks

SECRET = "test-cluster-secret"
GUARD_TOKENS = {"alpha": "alpha-token", "bravo": "bravo-token"}
GUARD_HOST = "lkpool.test"
NODE_ENV = {
    "MAX_INSTANCES": "2", "NUM_WARM": "1", "CLUSTER_HEARTBEAT": "0.25",
    "CLUSTER_NODE_TIMEOUT": "3", "ACQUIRE_TIMEOUT": "6", "WIDTH": "320", "HEIGHT": "240",
    "AUDIO": "0", "FRAMERATE": "10", "HEALTH_CHECK_INTERVAL": "1", "CLUSTER_SECRET": SECRET,
    "LOG_LEVEL": "INFO",
}
NAMES = ("alpha", "bravo", "charlie")

needs_redis = pytest.mark.skipif(shutil.which("redis-server") is None,
                                 reason="redis-server is not installed (make test installs it)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@dataclass
class Redis:
    port: int
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Starts empty: nothing saved, nothing loaded."""
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        leaks.spawned_pids.add(self.proc.pid)
        wait_until(lambda: socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                   or True, 10, "redis-server")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@dataclass
class Node:
    name: str
    port: int
    log_path: Path
    proc: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass
class LocalCluster:
    redis: Redis
    profiles: Path
    logs: Path
    # a per-test cluster's processes count in the per-test leak check; a shared one's are
    # checked when the module ends (its nodes start warm instances during any test)
    tracked: bool = True
    nodes: dict[str, Node] = field(default_factory=dict)
    pids: set[int] = field(default_factory=set)

    def start_node(self, name: str, port: int | None = None, **env: str) -> Node:
        node = self.nodes.get(name) or Node(name, port or free_port(),
                                            self.logs / f"{name}.log")
        environ = os.environ | NODE_ENV | {
            "REDIS_URL": self.redis.url, "NODE_NAME": name,
            "CHROMIUM_PROFILE_BASE_DIR": str(self.profiles)} | env
        with node.log_path.open("ab") as log:
            node.proc = subprocess.Popen(
                [sys.executable, "-m", "lkpool", "serve", "--host", "127.0.0.1", "--port",
                 str(node.port)], env=environ, stdout=log, stderr=log)
        self.pids.add(node.proc.pid)
        if self.tracked:
            leaks.spawned_pids.add(node.proc.pid)
        self.nodes[name] = node

        def up() -> bool:
            assert node.proc is not None
            if node.proc.poll() is not None:
                raise AssertionError(f"node {name} exited:\n{node.log()[-3000:]}")
            return _nodes_up(node, environ.get("TOKEN", "")) > 0  # /health answers
        wait_until(up, 60, f"node {name}")
        return node

    def stop_node(self, name: str, sig: int = signal.SIGTERM, wait: bool = True) -> int | None:
        proc = self.nodes[name].proc
        assert proc is not None
        proc.send_signal(sig)
        return proc.wait(60) if wait else None

    def close(self) -> None:
        for node in self.nodes.values():
            if node.proc is not None and node.proc.poll() is None:
                node.proc.terminate()
        for node in self.nodes.values():
            if node.proc is not None:
                try:
                    node.proc.wait(60)
                except subprocess.TimeoutExpired:
                    node.proc.kill()
                    node.proc.wait()
        self.redis.kill()


def _make(tmp: Path, tracked: bool = True, names: tuple[str, ...] = NAMES,
          **env: str) -> LocalCluster:
    profiles = tmp / "cluster-profiles"
    logs = tmp / "logs"
    profiles.mkdir()
    logs.mkdir()
    redis = Redis(free_port())
    redis.start()
    cluster = LocalCluster(redis, profiles, logs, tracked)
    try:
        for name in names:
            cluster.start_node(name, **env)
        # every node heard of the others
        wait_until(lambda: all(_nodes_up(n, env.get("TOKEN", "")) == len(names)
                               for n in cluster.nodes.values()), 10, "all nodes registered")
    except BaseException:
        cluster.close()
        raise
    return cluster


def _nodes_up(node: Node, token: str = "") -> int:
    import json

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"{node.base}/health", headers=headers)
    with urllib.request.urlopen(request, timeout=2) as resp:
        return int(json.load(resp)["cluster"]["nodes_up"])


def _finish(cluster: LocalCluster) -> None:
    cluster.close()
    left = list(cluster.profiles.iterdir())
    assert not left, f"profiles left by the nodes: {left}"
    shm = [n for n in leaks.shm_names()
           if any(n.startswith(f"{leaks.SHM_PREFIX}{pid}_") for pid in cluster.pids)]
    assert not shm, f"shared memory left by the nodes: {shm}"


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """Three nodes kept for the module; each test leaves no lease behind."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (make test installs it)")
    # every slot warm: a test's leases are handed out at once, however loaded the machine
    cluster = _make(tmp_path_factory.mktemp("cluster"), tracked=False, NUM_WARM="2")
    yield cluster
    _finish(cluster)


@pytest.fixture
def guarded_cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """Two fresh nodes as on a real deployment: each with its own TOKEN (so only the shared
    secret can carry a request from one to the other), reached by each other at a name
    (INTERNAL_URL http://localhost:PORT) and by clients at a name (`lkpool.test`, in
    ALLOWED_HOSTS)."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (make test installs it)")
    profiles, logs = tmp_path / "cluster-profiles", tmp_path / "logs"
    profiles.mkdir()
    logs.mkdir()
    redis = Redis(free_port())
    redis.start()
    c = LocalCluster(redis, profiles, logs)
    try:
        for name in ("alpha", "bravo"):
            port = free_port()
            c.start_node(name, port, TOKEN=GUARD_TOKENS[name], ALLOWED_HOSTS=GUARD_HOST,
                         INTERNAL_URL=f"http://localhost:{port}",
                         PUBLIC_URL=f"http://{GUARD_HOST}:{port}")
        wait_until(lambda: all(_nodes_up(n, GUARD_TOKENS[n.name]) == 2
                               for n in c.nodes.values()), 10, "both nodes registered")
    except BaseException:
        c.close()
        raise
    yield c
    _finish(c)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """Three fresh nodes for a test that breaks some of them."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (make test installs it)")
    c = _make(tmp_path)
    yield c
    _finish(c)
