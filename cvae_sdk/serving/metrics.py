"""The server's ``/metrics``: Prometheus counters and histograms kept by ``prometheus_client``.

Each app has a registry of its own (tests run several apps in one process). Under ``--workers``
the supervisor gives every worker one ``PROMETHEUS_MULTIPROC_DIR``, and each worker's
``/metrics`` then reports the sum over all workers (``prometheus_client``'s multi-process mode),
so a scrape that lands on any worker sees the whole server.
"""

from __future__ import annotations

import gc
import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's variable, set by the --workers supervisor


class Metrics:
    """Requests by route and status, their latency, the batcher's run sizes, samples served, and
    the objects frozen out of the garbage collector."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("cvae_requests", "HTTP requests by route and status.", ["route", "status"],
                                registry=self.registry)
        self.latency = Histogram("cvae_request_seconds", "Request latency in seconds.", buckets=LATENCY_BUCKETS,
                                 registry=self.registry)
        self.batches = Histogram("cvae_batch_size", "Rows per shared session run of the micro-batcher.",
                                 buckets=BATCH_BUCKETS, registry=self.registry)
        self.samples = Counter("cvae_samples_served", "Samples returned to clients.", registry=self.registry)
        self.frozen = Gauge("cvae_gc_frozen_objects", "Objects moved out of the garbage collector's generations.",
                            multiprocess_mode="livesum", registry=self.registry)

    def observe(self, route: str, status: int, seconds: float) -> None:
        """One answered request."""
        self.requests.labels(route, str(status)).inc()
        self.latency.observe(seconds)

    def batch(self, size: int) -> None:
        """One session run of ``size`` rows."""
        self.batches.observe(size)

    def served(self, n: int) -> None:
        """``n`` samples returned."""
        self.samples.inc(n)

    def heap_frozen(self) -> None:
        """Record how many objects are frozen out of the collector now (once the model is loaded)."""
        self.frozen.set(gc.get_freeze_count())

    def exposition(self) -> bytes:
        """The text a scrape gets: this process's metrics, or every worker's summed under ``--workers``."""
        if os.environ.get(MULTIPROCESS_DIR):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)
