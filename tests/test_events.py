"""EventEmitter: listeners by id or callback, and the first/last-listener hook."""

from __future__ import annotations

from lkpool.events import EventEmitter


class Watched(EventEmitter[str]):
    def __init__(self) -> None:
        super().__init__()
        self.switches: list[tuple[str, bool]] = []

    def _listening(self, event: str, on: bool) -> None:
        self.switches.append((event, on))


def test_listening_hook_fires_on_first_and_last_listener_only():
    """The hook hears an event's first listener and the loss of its last, by every way of
    removing one (id, callback, temporary after emit, remove_all), and nothing between."""
    em = Watched()
    cb = lambda: None  # noqa: E731
    a = em.on("audio", cb)
    em.on("audio", lambda: None, temporary=True)
    assert em.switches == [("audio", True)]
    em.emit("audio")  # drops the temporary one: one left
    em.off(a)
    assert em.switches == [("audio", True), ("audio", False)]
    em.on("audio", cb)
    em.off("audio", cb)
    em.once("paint", cb)
    em.emit("paint")
    em.on("x", cb)
    em.remove_all()
    em.remove_all()
    assert em.switches[2:] == [("audio", True), ("audio", False), ("paint", True),
                               ("paint", False), ("x", True), ("x", False)]
