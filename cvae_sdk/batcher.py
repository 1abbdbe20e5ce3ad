"""Dynamic micro-batching: many small concurrent requests share one onnxruntime call.

In the spirit of Triton's dynamic batcher: a request waits at most ``max_delay_ms`` for others to
join it, up to ``max_batch`` samples per call, and a batch closes early once no request has
arrived for ``max_gap_ms``: a burst of callers is taken whole without sitting out the rest of the
delay, and a lone request does not wait for company that is not coming
(``benchmarks/batcher_gap.py``; ``max_gap_ms >= max_delay_ms`` waits out the whole delay).

Each caller gets a future whose result is exactly what ``Generator.generate`` returns for the same
arguments. A future cancelled while its request waits (a server's timeout, a client gone) is
dropped before it is decoded; once the worker takes a request it marks the future running, so a
late cancel cannot race the result, and nothing raised while finishing a batch ends the worker.
Requests are validated in the caller's thread, so a bad one fails there, at once; everything else
happens on the worker, vectorised over the batch where it can be (one prior transform and one
session run per batch), so 64 callers do not contend for the GIL with per-request numpy work.

>>> from cvae_sdk import Generator
>>> gen = Generator.from_pretrained()
>>> with gen.batcher(max_batch=256, max_delay_ms=2) as batcher:
...     future = batcher.submit(3, rng=0)
...     image = future.result().samples[0]
>>> bool((image == gen.generate(3, rng=0).samples[0]).all())
True
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from cvae_sdk.checks import positive_int
from cvae_sdk.latents import prior_noise, row_temperatures, transform
from cvae_sdk.request import Request, check_request, package

if TYPE_CHECKING:
    from cvae_sdk.generator import Generator
    from cvae_sdk.labels import LabelInput
    from cvae_sdk.request import GenerationOutput, OutputType


class BatcherStopped(RuntimeError):
    """The batcher cannot take or finish a request: it was closed, or its worker thread died."""


@dataclass
class _Queued:
    request: Request                          # checked by cvae_sdk.request, as generate checks it
    future: Future[GenerationOutput[Any]]


class MicroBatcher:
    """Coalesces ``submit`` calls from many threads into batched session runs on one worker thread."""

    def __init__(self, generator: Generator, max_batch: int = 256, max_delay_ms: float = 2.0,
                 on_batch: Callable[[int], None] | None = None, max_gap_ms: float = 0.2,
                 on_died: Callable[[BaseException], None] | None = None) -> None:
        positive_int(max_batch, "max_batch")
        for name, value in (("max_delay_ms", max_delay_ms), ("max_gap_ms", max_gap_ms)):
            if not value >= 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")
        self._gen, self._max_batch, self._delay = generator, max_batch, max_delay_ms / 1000.0
        self._gap = max_gap_ms / 1000.0
        self._on_batch = on_batch  # told the size of every shared run (a server's metrics)
        self._on_died = on_died    # told if the worker ever stops on an error (a server then exits)
        self._queue: queue.SimpleQueue[_Queued | None] = queue.SimpleQueue()
        self._closed = False
        self._died: BaseException | None = None
        self._taken: list[_Queued] = []  # the batch the worker is finishing
        self._lock = threading.Lock()
        self._worker = threading.Thread(target=self._run, name="cvae-sdk-batcher", daemon=True)
        self._worker.start()

    def submit(self, labels: LabelInput, num_samples_per_label: int = 1, *, rng: Any = None,
               temperature: float | None = None, output_type: OutputType = "np") -> Future[GenerationOutput[Any]]:
        """Queue a request; the future resolves to the same output ``generate`` would give."""
        if output_type == "device":
            raise ValueError("the batcher splits shared runs into host arrays; output_type='device' is for "
                             "Generator.generate and iter_chunks")
        request = check_request(self._gen.config, labels, num_samples_per_label, rng=rng, temperature=temperature,
                                output_type=output_type)
        future: Future[GenerationOutput[Any]] = Future()
        with self._lock:
            if self._closed:
                raise BatcherStopped("this batcher is closed; create a new one with Generator.batcher()")
            if not self.alive:
                raise BatcherStopped(f"this batcher's worker stopped ({self._died!r}); create a new one")
            self._queue.put(_Queued(request, future))
        return future

    def close(self) -> None:
        """Finish the queued requests, then stop the worker."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        self._worker.join()

    def __enter__(self) -> MicroBatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def alive(self) -> bool:
        """Whether the worker still takes requests (False once it died; a server then stops being ready)."""
        return self._worker.is_alive() and self._died is None

    # --- worker ------------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._serve()
        except BaseException as err:  # nothing should get here (_finish catches everything); if it does,
            self._died = err         # say so: its callers would otherwise wait out their timeouts
            self._fail_waiting(BatcherStopped(f"the batcher's worker stopped ({type(err).__name__}: {err})"))
            if self._on_died is not None:
                self._on_died(err)
            raise

    def _serve(self) -> None:
        carry: _Queued | None = None  # a request that did not fit the last batch starts the next
        while True:
            first = carry if carry is not None else self._queue.get()
            carry = None
            if first is None:  # close() was called and everything before it is done
                return
            batch, size = [first], first.request.labels.shape[0]
            self._taken = batch  # failed by _run if the worker dies before it is finished
            deadline = time.perf_counter() + self._delay
            while size < self._max_batch:
                try:  # the next request, unless the delay is over or arrivals have paused
                    wait = min(self._gap, deadline - time.perf_counter())
                    item = self._queue.get(timeout=max(0.0, wait))
                except queue.Empty:
                    break
                if item is None:
                    self._finish(batch)
                    return
                if item.future.cancelled():  # its caller left while it queued: never decoded
                    continue
                if size + item.request.labels.shape[0] > self._max_batch:
                    carry = item
                    break
                batch.append(item)
                size += item.request.labels.shape[0]
            self._finish(batch)

    def _fail_waiting(self, err: BaseException) -> None:
        """Fail the batch being finished and every queued request (the worker died)."""
        for item in self._taken:  # running futures are the worker's alone, and it is gone
            if not item.future.done() and (item.future.running() or item.future.set_running_or_notify_cancel()):
                item.future.set_exception(err)
        while True:
            try:
                queued = self._queue.get_nowait()
            except queue.Empty:
                return
            if queued is not None and queued.future.set_running_or_notify_cancel():
                queued.future.set_exception(err)

    def _finish(self, batch: list[_Queued]) -> None:
        """Decode the requests whose callers still wait, and hand each its result or the error; never raises."""
        # A caller can cancel (a server timeout, a disconnect) until its request is taken here; from then
        # on cancel() returns False, so setting the result below cannot race it.
        live = [q for q in batch if q.future.set_running_or_notify_cancel()]
        if not live:
            return
        requests = [q.request for q in live]
        try:
            labels = np.concatenate([r.labels for r in requests])                    # (B,)
            prior = self._gen.config.prior
            drawn = [prior_noise(prior, r.key, 0, r.labels.shape[0]) for r in requests]
            eps = np.concatenate([e for e, _ in drawn])                              # (B, D)
            u = None if drawn[0][1] is None else np.concatenate([c for _, c in drawn if c is not None])
            temps = np.concatenate([np.broadcast_to(row_temperatures(r.temperature, r.labels), (r.labels.shape[0], 1))
                                    for r in requests])                                # (B, 1)
            z = transform(prior, labels, eps, u, temps)                              # (B, D) float32
            images = self._gen.generate(labels, latents=z).samples                   # (B, C, H, W) float32
            if self._on_batch is not None:
                self._on_batch(int(labels.shape[0]))
        except Exception as err:  # hand the failure to every waiting caller
            for queued in live:
                queued.future.set_exception(err)
            return
        bounds = np.cumsum([0] + [r.labels.shape[0] for r in requests])
        outputs: list[tuple[Any, BaseException | None]] = []
        for r, lo, hi in zip(requests, bounds[:-1], bounds[1:], strict=True):
            try:
                outputs.append((package(images[lo:hi], r.labels, z[lo:hi], r.output_type), None))
            except Exception as err:  # e.g. output_type="pil" without Pillow: this caller's error alone
                outputs.append((None, err))
        for queued, (out, failure) in zip(live, outputs, strict=True):  # wake the callers once all is ready
            if failure is None:
                queued.future.set_result(out)
            else:
                queued.future.set_exception(failure)
