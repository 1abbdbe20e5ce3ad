"""The micro-batcher under cancellation and failure, made deterministic: the worker is held inside a
batch by an event, so requests are cancelled exactly while they queue or while they are decoded."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cvae_sdk import Generator
from cvae_sdk import batcher as batcher_module
from cvae_sdk.batcher import MicroBatcher


@pytest.fixture()
def gen(tiny_model: Path) -> Iterator[Generator]:
    with Generator.from_pretrained(tiny_model, providers=["CPUExecutionProvider"], threads=1) as generator:
        yield generator


class HeldRender:
    """Wraps ``gen._render`` so the worker waits inside a batch until ``release`` is set."""

    def __init__(self, gen: Generator) -> None:
        self.real, self.entered, self.release = gen._render, threading.Event(), threading.Event()
        self.rows: list[int] = []

    def __call__(self, z: np.ndarray, ids: np.ndarray, output_type: str = "np") -> Any:
        self.rows.append(int(ids.shape[0]))
        self.entered.set()
        assert self.release.wait(30), "the test never released the worker"
        return self.real(z, ids, output_type)


def test_cancelled_requests_are_dropped_before_decoding_and_running_ones_cannot_be_cancelled(
        gen: Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    held = HeldRender(gen)
    monkeypatch.setattr(gen, "_render", held)
    with gen.batcher(max_batch=4, max_delay_ms=0, max_gap_ms=0) as batcher:
        first = batcher.submit(0, 1, rng=0)         # taken alone (no delay) and held inside its batch
        assert held.entered.wait(30)
        assert not first.cancel() and first.running()  # being decoded: a late cancel cannot race the result
        queued = [batcher.submit(1, 1, rng=seed) for seed in range(1, 9)]
        for future in queued[::2]:
            assert future.cancel()                   # still waiting: the caller may leave
        held.release.set()
        results = {seed: f.result(30).samples for seed, f in enumerate(queued, start=1) if not f.cancelled()}
        first_samples = first.result(30).samples
    assert [f.cancelled() for f in queued] == [True, False] * 4
    assert sum(held.rows) == 1 + 4  # the four cancelled requests were never decoded
    monkeypatch.undo()
    assert np.array_equal(first_samples, gen.generate(0, 1, rng=0).samples)
    for seed, samples in results.items():
        assert np.array_equal(samples, gen.generate(1, 1, rng=seed).samples)


def test_a_failure_while_finishing_a_batch_reaches_its_caller_and_the_worker_keeps_serving(
        gen: Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    real_package = batcher_module.package

    def package(samples: np.ndarray, ids: np.ndarray, z: np.ndarray, output_type: str, start: int = 0) -> Any:
        if output_type == "pil":  # as when Pillow is missing
            raise ImportError("output_type='pil' needs Pillow")
        return real_package(samples, ids, z, output_type, start)

    monkeypatch.setattr(batcher_module, "package", package)
    with gen.batcher(max_batch=16, max_delay_ms=200, max_gap_ms=200) as batcher:
        good, bad = batcher.submit(0, 2, rng=1), batcher.submit(1, 1, rng=2, output_type="pil")
        with pytest.raises(ImportError, match="Pillow"):
            bad.result(30)
        assert np.array_equal(good.result(30).samples, gen.generate(0, 2, rng=1).samples)
        assert batcher.alive
        later = batcher.submit(2, 3, rng=3).result(30)
        assert np.array_equal(later.samples, gen.generate(2, 3, rng=3).samples)


def test_a_worker_that_dies_says_so(gen: Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: MicroBatcher) -> None:
        raise MemoryError("simulated")

    monkeypatch.setattr(MicroBatcher, "_serve", broken)
    monkeypatch.setattr(threading, "excepthook", lambda args: None)  # the thread's traceback is expected
    batcher = gen.batcher()
    batcher._worker.join(30)
    assert not batcher.alive
    with pytest.raises(RuntimeError, match="worker stopped .*MemoryError"):
        batcher.submit(0, 1, rng=0)
