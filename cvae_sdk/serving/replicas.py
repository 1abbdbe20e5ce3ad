"""``cvae-sdk serve --workers N``: N server processes answering on one port.

One server process runs its HTTP handling on one event loop under one GIL, so on a small machine
that loop, not the model, caps the requests per second. Each worker here is a whole server
(:func:`cvae_sdk.serving.app.create_app` on uvicorn) in a spawned process, with its own model and
micro-batcher, listening on its own socket bound to the same port with ``SO_REUSEPORT``: the
kernel spreads new connections over the workers. A response holds the same bytes whichever worker
answers (sampling is a function of the request), so the workers are replicas on one machine.
``/metrics`` sums every worker's counts (``prometheus_client``'s multi-process mode, in a folder the
supervisor makes and removes); ``/readyz`` describes the worker that answered.

The supervisor (the process that ran ``serve``) binds the sockets, so ``--port 0`` picks one port
for all, and prints the URL once every worker has loaded its model, so that no connection meets a
worker that is not ready. SIGTERM or SIGINT reaches each worker once, as SIGTERM, and each
finishes the requests it accepted, as a single server does. Workers run in process groups of their
own (a terminal's Ctrl-C reaches them only through the supervisor, so never twice, which uvicorn
would take as "exit now") and stop if the supervisor disappears. A worker that stops on its own
(killed, or exiting because it could no longer serve) is replaced on the same socket, which the
supervisor keeps open, so connections meant for it wait in its queue instead of being refused;
a replacement that cannot load the model, or more than ``MAX_RESTARTS`` replacements within
``RESTART_WINDOW_S``, stop every worker and the supervisor reports why.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import multiprocess

from cvae_sdk.serving.metrics import MULTIPROCESS_DIR
from cvae_sdk.serving.run import announce_line, uvicorn_server
from cvae_sdk.serving.settings import ServeSettings

START_TIMEOUT_S = 300.0  # for every worker to load its model
MAX_RESTARTS, RESTART_WINDOW_S = 5, 60.0  # more replacements than this within the window: a crash loop


@dataclass
class _Slot:
    """One worker's place: its socket (held by the supervisor too) and the process serving it now."""

    index: int
    sock: socket.socket
    process: Any = None
    ready: Any = None
    restarts: deque[float] = field(default_factory=deque)


class _Workers:
    """The worker processes and what starting one needs."""

    def __init__(self, sockets: list[socket.socket], args: tuple[Any, ...]) -> None:
        self.context = multiprocessing.get_context("spawn")
        self.slots = [_Slot(i, sock) for i, sock in enumerate(sockets)]
        self.args = args  # (model, settings, threads, providers)

    def start(self, slot: _Slot) -> None:
        slot.ready = self.context.Event()
        slot.process = self.context.Process(target=_worker, name=f"cvae-sdk-worker-{slot.index}",
                                            args=(slot.sock, *self.args, slot.ready, os.getpid()))
        slot.process.start()

    def stop(self) -> None:
        """Close the supervisor's sockets (new connections are refused once the workers close theirs),
        then stop every worker; each finishes the requests it accepted."""
        for slot in self.slots:
            slot.sock.close()
        for slot in self.slots:
            if slot.process is not None and slot.process.is_alive() and slot.process.pid is not None:
                os.kill(slot.process.pid, signal.SIGTERM)
        for slot in self.slots:
            if slot.process is not None:
                slot.process.join()

    def replace(self, slot: _Slot, metrics_dir: str) -> None:
        """Start a new worker in a slot whose worker stopped on its own; refuse a crash loop."""
        code, now = slot.process.exitcode, time.monotonic()
        multiprocess.mark_process_dead(slot.process.pid, metrics_dir)  # type: ignore[no-untyped-call]
        while slot.restarts and now - slot.restarts[0] > RESTART_WINDOW_S:
            slot.restarts.popleft()
        if len(slot.restarts) >= MAX_RESTARTS:
            raise ChildProcessError(f"worker {slot.index} stopped {MAX_RESTARTS + 1} times within "
                                    f"{RESTART_WINDOW_S:g} s (last exit code {code}), so every worker was stopped; "
                                    "its own error, if it printed one, is above")
        slot.restarts.append(now)
        print(f"warning: worker {slot.index} stopped on its own (exit code {code}); starting another",
              file=sys.stderr, flush=True)
        self.start(slot)


def serve_workers(model: str | Path | None, settings: ServeSettings, *, workers: int, host: str, port: int,
                  threads: int | None, providers: Any, announce: Callable[[str], None]) -> None:
    """Run ``workers`` server processes on ``host:port`` until SIGINT/SIGTERM (see the module docstring)."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise ValueError("--workers above 1 needs SO_REUSEPORT (Linux, macOS, BSD); on this system run one "
                         "server per port behind a load balancer instead")
    if threads is None:
        threads = worker_threads(workers)
    sockets, port = _bind(host, port, workers)
    pool = _Workers(sockets, (model, settings, threads, providers))
    stopping = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stopping.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with _metrics_folder() as metrics_dir:
            try:
                for slot in pool.slots:
                    pool.start(slot)
                if _all_ready(pool, stopping):
                    announce(announce_line(host, port))
                    _supervise(pool, stopping, metrics_dir)
            finally:
                pool.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not stopping.is_set():
        codes = {slot.process.name: slot.process.exitcode for slot in pool.slots}
        raise ChildProcessError(f"a worker stopped on its own before it was ready (exit codes {codes}), so every "
                                "worker was stopped; its own error, if it printed one, is above")


def _all_ready(pool: _Workers, stopping: threading.Event) -> bool:
    """Wait for every worker to load its model; False if one stopped first or a signal came."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while not all(slot.ready.is_set() for slot in pool.slots):
        if stopping.is_set() or not all(slot.process.is_alive() for slot in pool.slots):
            return False
        if time.monotonic() > deadline:
            raise ChildProcessError(f"the workers did not load the model within {START_TIMEOUT_S:g} s")
        time.sleep(0.01)
    return True


def _supervise(pool: _Workers, stopping: threading.Event, metrics_dir: str) -> None:
    """Until a signal: replace every worker that stops on its own, once the one before it was ready."""
    while not stopping.wait(0.2):
        for slot in pool.slots:
            if slot.process.is_alive():
                continue
            if not slot.ready.is_set():  # a replacement that could not load the model
                raise ChildProcessError(f"worker {slot.index} was replaced but did not load the model (exit code "
                                        f"{slot.process.exitcode}), so every worker was stopped; its error is above")
            pool.replace(slot, metrics_dir)


@contextmanager
def _metrics_folder() -> Iterator[str]:
    """A fresh folder for the workers' shared metrics, named in the environment they inherit."""
    folder, before = tempfile.mkdtemp(prefix="cvae-sdk-metrics-"), os.environ.get(MULTIPROCESS_DIR)
    os.environ[MULTIPROCESS_DIR] = folder
    try:
        yield folder
    finally:
        if before is None:
            os.environ.pop(MULTIPROCESS_DIR, None)
        else:
            os.environ[MULTIPROCESS_DIR] = before
        shutil.rmtree(folder, ignore_errors=True)


def worker_threads(workers: int) -> int:
    """onnxruntime threads per worker when none are given: the cores shared out, so the workers do
    not each spin threads on all of them."""
    return max(1, (os.cpu_count() or 1) // workers)


def _bind(host: str, port: int, count: int) -> tuple[list[socket.socket], int]:
    """``count`` listening sockets on one port, and the port (``port`` 0: the first bind picks it for all)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            port = sock.getsockname()[1]
            sock.listen(2048)
    except OSError as err:
        for sock in sockets:
            sock.close()
        raise ValueError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    return sockets, port


def _worker(sock: socket.socket, model: str | Path | None, settings: ServeSettings, threads: int,
            providers: Any, ready: Any, supervisor: int) -> None:
    """One worker process: a whole server on ``sock``; ``ready`` is set once its model is loaded. It
    stops on SIGTERM, on losing its supervisor, (exit status 2) when its model does not load, or
    (exit status 1) when it can no longer serve."""
    os.setpgrp()
    failed: list[str] = []

    def settled(error: str | None) -> None:
        if error is None:
            ready.set()
        else:
            failed.append(error)
            server.should_exit = True

    server, died = uvicorn_server(model, settings, threads=threads, providers=providers, on_settled=settled)

    def watch() -> None:
        while not server.should_exit:
            if os.getppid() != supervisor:
                server.should_exit = True
            time.sleep(0.1)

    threading.Thread(target=watch, name="cvae-sdk-supervisor-watch", daemon=True).start()
    server.run(sockets=[sock])
    if failed:
        print(f"error: the model failed to load: {failed[0]}", file=sys.stderr)
        raise SystemExit(2)
    if died:
        print(f"error: worker stopped serving: {died[0]}", file=sys.stderr)
        raise SystemExit(1)
