"""Prometheus metrics, one `CollectorRegistry` per application (two apps in one process,
as in tests, never share counters).

Event-driven figures (acquire waits, launches, crashes, restarts) are fed by the pool's
events; figures the pool already knows (instances by state, leases, frames, drops) are read at
scrape time by a collector, so nothing is counted twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from ..pool import Pool, PoolEvent

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
LAUNCH_BUCKETS = (0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60)


class _PoolCollector(Collector):
    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    def collect(self) -> Iterator[Metric]:
        counts = self.pool.counts()
        instances = GaugeMetricFamily("lkpool_instances", "instances by state",
                                      labels=["state"])
        for state, n in counts["instances"].items():
            instances.add_metric([state], n)
        yield instances
        yield GaugeMetricFamily("lkpool_leases", "active leases", value=counts["leases"])
        yield GaugeMetricFamily("lkpool_waiting", "acquires waiting for an instance",
                                value=counts["waiting"])
        yield GaugeMetricFamily("lkpool_degraded", "1 when instances fail to start",
                                value=int(counts["degraded"]))
        frames, dropped = self.pool.frame_totals()
        yield CounterMetricFamily("lkpool_frames", "frames delivered by instances",
                                  value=frames)
        yield CounterMetricFamily("lkpool_frame_drops", "frames dropped by instances",
                                  value=dropped)


class Metrics:
    """The registry of one app and the metrics other modules update."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.acquire_wait = Histogram("lkpool_acquire_wait_seconds",
                                      "time an allocation waited for an instance",
                                      buckets=WAIT_BUCKETS, registry=r)
        self.launch = Histogram("lkpool_launch_seconds", "time an instance took to start",
                                buckets=LAUNCH_BUCKETS, registry=r)
        self.crashes = Counter("lkpool_crashes", "instances that died unasked", registry=r)
        self.restarts = Counter("lkpool_restarts", "instances started to replace a dead one",
                                registry=r)
        self.leases_ended = Counter("lkpool_leases_ended", "leases ended, by reason",
                                    ["reason"], registry=r)
        self.proxied_messages = Counter("lkpool_proxied_messages",
                                        "WebSocket messages piped by the DevTools proxy",
                                        ["direction"], registry=r)
        self.to_instance = self.proxied_messages.labels("to_instance")
        self.to_client = self.proxied_messages.labels("to_client")
        self.proxied_requests = Counter("lkpool_proxied_requests",
                                        "HTTP requests forwarded by the DevTools proxy",
                                        registry=r)
        self._pool_collector: _PoolCollector | None = None
        self._listeners: list[tuple[Pool, int]] = []

    def watch(self, pool: Pool) -> None:
        """Feeds the metrics from `pool`'s events and reads its counts at scrape time."""
        self._pool_collector = _PoolCollector(pool)
        self.registry.register(self._pool_collector)
        handlers: dict[PoolEvent, Any] = {
            "acquired": lambda lease, wait: self.acquire_wait.observe(wait),
            "launched": self.launch.observe,
            "crashed": lambda slot_id, why: self.crashes.inc(),
            "restarted": self.restarts.inc,
            "lease_ended": lambda lease: self.leases_ended.labels(lease.end_reason).inc(),
        }
        for event, handler in handlers.items():
            self._listeners.append((pool, pool.on(event, handler)))

    def unwatch(self) -> None:
        for pool, listener in self._listeners:
            pool.off(listener)
        self._listeners.clear()
        if self._pool_collector is not None:
            self.registry.unregister(self._pool_collector)
            self._pool_collector = None

    def render(self) -> bytes:
        return generate_latest(self.registry)
