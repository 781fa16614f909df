"""Audio of one instance: a PulseAudio null sink that Chromium plays into (PULSE_SINK), whose
monitor `parec` reads as 48 kHz stereo s16le; cut into 10 ms frames with a pts.

The sink is a module loaded into the shared PulseAudio daemon, so only we can unload it: the
child does it on every exit path it controls (`aclose`, also from the watchdog and the
crash path). A sink is named after the child's pid, so a leftover one says whose it was.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import shutil
import subprocess
from collections.abc import Callable

logger = logging.getLogger(__name__)

RATE = 48000
CHANNELS = 2
FRAME_SAMPLES = RATE // 100  # 10 ms
FRAME_BYTES = FRAME_SAMPLES * CHANNELS * 2
_counter = itertools.count()


def _pactl(*args: str, timeout: float = 5.0) -> subprocess.CompletedProcess:
    return subprocess.run(["pactl", *args], capture_output=True, text=True, timeout=timeout,
                          check=False)


def _ensure_daemon() -> None:
    if _pactl("info").returncode == 0:
        return
    subprocess.run(["pulseaudio", "--start", "--exit-idle-time=-1"], capture_output=True,
                   timeout=10, check=False)
    if _pactl("info").returncode != 0:
        raise RuntimeError("PulseAudio is not running and 'pulseaudio --start' failed")


def unload_sink(sink_name: str) -> None:
    """Unloads the null sink called `sink_name` if it is still loaded: what the parent does
    for a child that was killed before it could (sync, idempotent, never raises)."""
    _unload_where(lambda name: name == sink_name)


def unload_sinks_of(pid: int) -> None:
    """Unloads every sink a child with this pid loaded (sinks are named after it): covers a
    child killed before it could tell its parent the sink's name (during start-up)."""
    prefix = f"lkpool_{pid}_"
    _unload_where(lambda name: name.startswith(prefix))


def _unload_where(wanted: Callable[[str], bool]) -> None:
    try:
        listed = _pactl("list", "short", "modules")
    except (OSError, subprocess.TimeoutExpired):
        return
    for line in listed.stdout.splitlines():
        for arg in line.split():
            if arg.startswith("sink_name=") and wanted(arg.removeprefix("sink_name=")):
                try:
                    _pactl("unload-module", line.split()[0])
                except (OSError, subprocess.TimeoutExpired) as exc:
                    logger.warning("could not unload %s: %s", arg, exc)


class AudioSink:
    """A null sink per instance. `open()` returns None (and logs once) when audio cannot
    work here; the instance then runs silent."""

    def __init__(self, name: str, module: int) -> None:
        self.name = name
        self.module = module
        self._parec: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task | None = None

    @classmethod
    def open(cls) -> AudioSink | None:
        if not (shutil.which("pactl") and shutil.which("parec") and shutil.which("pulseaudio")):
            logger.warning("audio off: pactl/parec/pulseaudio not installed "
                           "(apt-get install pulseaudio pulseaudio-utils)")
            return None
        name = f"lkpool_{os.getpid()}_{next(_counter)}"
        try:
            _ensure_daemon()
            res = _pactl("load-module", "module-null-sink", f"sink_name={name}",
                         f"rate={RATE}", f"channels={CHANNELS}",
                         f"sink_properties=device.description={name}")
            if res.returncode != 0:
                raise RuntimeError(res.stderr.strip() or "load-module failed")
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            logger.warning("audio off: %s", exc)
            return None
        return cls(name, int(res.stdout.strip()))

    @property
    def reader_exit_code(self) -> int | None:
        """parec's exit code once it has exited (None while it runs or before start): the
        watchdog ends the instance then, as a killed reader would silence it for good."""
        return self._parec.returncode if self._parec is not None else None

    @property
    def env(self) -> dict[str, str]:
        return {"PULSE_SINK": self.name}

    async def start(self, on_frame: Callable[[int, bytes], None]) -> None:
        """Reads the monitor and calls `on_frame(pts_us, pcm)` every 10 ms of audio."""
        self._parec = await asyncio.create_subprocess_exec(
            "parec", "-d", f"{self.name}.monitor", "--format=s16le", f"--rate={RATE}",
            f"--channels={CHANNELS}", "--raw", "--latency-msec=10",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL)
        self._task = asyncio.get_running_loop().create_task(self._read(on_frame),
                                                            name="audio-reader")

    async def _read(self, on_frame: Callable[[int, bytes], None]) -> None:
        assert self._parec is not None and self._parec.stdout is not None
        samples = 0
        while True:
            try:
                pcm = await self._parec.stdout.readexactly(FRAME_BYTES)
            except asyncio.IncompleteReadError:
                logger.warning("parec stopped; audio ends")
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
        """Synchronous so the crash and signal paths can call it too; idempotent."""
        if self._parec is not None and self._parec.returncode is None:
            try:
                self._parec.kill()
            except ProcessLookupError:
                pass
        if self.module >= 0:
            module, self.module = self.module, -1
            try:
                _pactl("unload-module", str(module))
            except (OSError, subprocess.TimeoutExpired) as exc:
                logger.warning("could not unload sink %s: %s", self.name, exc)

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
