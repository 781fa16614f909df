"""Audio of one instance: a PulseAudio daemon of its own with one null sink that Chromium
plays into, whose monitor `parec` reads as 48 kHz stereo s16le; cut into 10 ms frames with
a pts.

A daemon per instance, not a sink in a shared daemon: a PulseAudio client may open any
source of its daemon, so with one daemon every lease could record every other lease's
sink monitor (and, through `getUserMedia`, a page could). The daemon's only socket is in the
instance's profile folder, which only this instance's sandbox sees; it is started with no
default configuration (`-n`), two modules, and the allow-listed environment. It is in the
child's process group, so the child's sweep ends it on every path. About 3 MB and 50 ms.
The sink keeps a name that says whose it is (`lkpool_<child pid>_<n>`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable

from .sandbox import allowed_env

logger = logging.getLogger(__name__)

RATE = 48000
CHANNELS = 2
FRAME_SAMPLES = RATE // 100  # 10 ms
FRAME_BYTES = FRAME_SAMPLES * CHANNELS * 2
DAEMON_TIMEOUT = 10.0
_counter = itertools.count()


def _socket_answers(path: str) -> bool:
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(path)
        except OSError:
            return False
    return True


def _start_daemon(folder: str, sink: str) -> tuple[subprocess.Popen, str]:
    """A private PulseAudio daemon whose socket is `folder`/native; returns it and the
    socket's path once it takes connections."""
    os.makedirs(folder, mode=0o700, exist_ok=True)
    path = os.path.join(folder, "native")
    env = allowed_env({"HOME": folder, "XDG_RUNTIME_DIR": folder, "PULSE_RUNTIME_PATH": folder,
                       "XDG_CONFIG_HOME": folder})
    with open(os.path.join(folder, "pulseaudio.log"), "ab", buffering=0) as log:
        proc = subprocess.Popen(
            ["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--system=no",
             "--use-pid-file=no", "--disallow-exit", "--log-target=stderr",
             f"--load=module-native-protocol-unix socket={path} auth-anonymous=1",
             (f"--load=module-null-sink sink_name={sink} rate={RATE} channels={CHANNELS} "
              f"sink_properties=device.description={sink}"),
             "--disallow-module-loading"],
            env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    deadline = time.monotonic() + DAEMON_TIMEOUT
    while not _socket_answers(path):
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            raise RuntimeError(f"pulseaudio did not start (see {folder}/pulseaudio.log)")
        time.sleep(0.005)
    return proc, path


class AudioSink:
    """The instance's own daemon and sink. `open()` returns None (and logs once) when audio
    cannot work here; the instance then runs silent."""

    def __init__(self, name: str, daemon: subprocess.Popen, server: str) -> None:
        self.name = name
        self.daemon = daemon
        self.server = server  # PULSE_SERVER of the daemon
        self._parec: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task | None = None

    @classmethod
    def open(cls, folder: str) -> AudioSink | None:
        """Starts the daemon with its socket in `folder` (a folder of the profile)."""
        if not (shutil.which("parec") and shutil.which("pulseaudio")):
            logger.warning("audio off: parec/pulseaudio not installed "
                           "(apt-get install pulseaudio pulseaudio-utils)")
            return None
        name = f"lkpool_{os.getpid()}_{next(_counter)}"
        try:
            daemon, path = _start_daemon(folder, name)
        except (RuntimeError, OSError) as exc:
            logger.warning("audio off: %s", exc)
            return None
        return cls(name, daemon, f"unix:{path}")

    @property
    def daemon_exit_code(self) -> int | None:
        """The daemon's exit code once it has exited: the watchdog ends the instance then."""
        return self.daemon.poll()

    @property
    def reader_exit_code(self) -> int | None:
        """parec's exit code once it has exited (None while it runs or before start): the
        watchdog ends the instance then, as a killed reader would silence it for good."""
        return self._parec.returncode if self._parec is not None else None

    @property
    def env(self) -> dict[str, str]:
        return {"PULSE_SERVER": self.server, "PULSE_SINK": self.name}

    async def start(self, on_frame: Callable[[int, bytes], None],
                    on_exit: Callable[[], object] = lambda: None) -> None:
        """Reads the monitor and calls `on_frame(pts_us, pcm)` every 10 ms of audio, and
        `on_exit()` if the reader exits before `stop_reading` (the watchdog's event)."""
        self._parec = parec = await asyncio.create_subprocess_exec(
            "parec", "-d", f"{self.name}.monitor", "--format=s16le", f"--rate={RATE}",
            f"--channels={CHANNELS}", "--raw", "--latency-msec=10",
            env=allowed_env({"PULSE_SERVER": self.server}),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL)
        self._task = asyncio.get_running_loop().create_task(
            self._read(on_frame, parec, on_exit), name="audio-reader")

    async def _read(self, on_frame: Callable[[int, bytes], None],
                    parec: asyncio.subprocess.Process, on_exit: Callable[[], object]) -> None:
        assert parec.stdout is not None
        samples = 0
        while True:
            try:
                pcm = await parec.stdout.readexactly(FRAME_BYTES)
            except asyncio.IncompleteReadError:
                logger.warning("parec stopped; audio ends")
                await parec.wait()  # its exit code is what the watchdog reports
                if self._parec is parec:  # not stopped by us
                    on_exit()
                return
            on_frame(samples * 1_000_000 // RATE, pcm)
            samples += FRAME_SAMPLES

    @property
    def reading(self) -> bool:
        return self._parec is not None

    async def stop_reading(self) -> None:
        """Stops the reader `start` began (no one listens any more); `start` may follow."""
        task, parec, self._task, self._parec = self._task, self._parec, None, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if parec is not None and parec.returncode is None:
            try:
                parec.kill()
            except ProcessLookupError:
                pass
            await parec.wait()

    def unload(self) -> None:
        """Ends the reader and the daemon (the sink goes with it). Synchronous so the crash
        and signal paths can call it too; idempotent."""
        for proc in (self._parec, self.daemon):
            if proc is not None and proc.returncode is None:
                try:
                    proc.kill()
                except ProcessLookupError:
                    pass
        try:
            self.daemon.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except BaseException:
                pass
        self.unload()
        if self._parec is not None:
            try:
                await asyncio.wait_for(self._parec.wait(), 2)
            except (TimeoutError, ProcessLookupError):
                pass
