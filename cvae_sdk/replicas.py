"""``cvae-sdk serve --workers N``: N server processes answering on one port.

One server process runs its HTTP handling on one event loop under one GIL, so on a small machine
that loop, not the model, caps the requests per second. Each worker here is a whole server
(:func:`cvae_sdk.server.create_app` on uvicorn) in a spawned process, with its own model,
micro-batcher and metrics, listening on its own socket bound to the same port with
``SO_REUSEPORT``: the kernel spreads new connections over the workers. A response holds the same
bytes whichever worker answers (sampling is a function of the request), so the workers are
replicas on one machine; ``/metrics`` and ``/readyz`` describe the worker that answered.

The supervisor (the process that ran ``serve``) binds the sockets, so ``--port 0`` picks one port
for all, and prints the URL once every worker has loaded its model, so that no connection meets a
worker that is not ready. SIGTERM or SIGINT reaches each worker
once, as SIGTERM, and each finishes the requests it accepted, as a single server does. Workers run
in process groups of their own (a terminal's Ctrl-C reaches them only through the supervisor, so
never twice, which uvicorn would take as "exit now"), stop if the supervisor disappears, and if one
exits unexpectedly the supervisor stops the others and reports it.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cvae_sdk.server import ServeSettings, announce_line, uvicorn_server

START_TIMEOUT_S = 300.0  # for every worker to load its model


def serve_workers(model: str | Path | None, settings: ServeSettings, *, workers: int, host: str, port: int,
                  threads: int | None, providers: Any, announce: Callable[[str], None]) -> None:
    """Run ``workers`` server processes on ``host:port`` until SIGINT/SIGTERM (see the module docstring)."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise ValueError("--workers above 1 needs SO_REUSEPORT (Linux, macOS, BSD); on this system run one "
                         "server per port behind a load balancer instead")
    if threads is None:
        threads = worker_threads(workers)
    sockets, port = _bind(host, port, workers)
    context = multiprocessing.get_context("spawn")
    ready = [context.Event() for _ in sockets]
    processes = [context.Process(target=_worker, name=f"cvae-sdk-worker-{i}",
                                 args=(sock, model, settings, threads, providers, event, os.getpid()))
                 for i, (sock, event) in enumerate(zip(sockets, ready, strict=True))]
    stopping = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stopping.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for process in processes:
            process.start()
        for sock in sockets:  # each worker holds its own copy now
            sock.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not all(event.is_set() for event in ready):
            if stopping.is_set() or not all(p.is_alive() for p in processes):
                break
            if time.monotonic() > deadline:
                raise ChildProcessError(f"the workers did not load the model within {START_TIMEOUT_S:g} s")
            time.sleep(0.01)
        else:
            announce(announce_line(host, port))
        while not stopping.is_set() and all(p.is_alive() for p in processes):
            stopping.wait(0.2)
    finally:
        for process in processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        for process in processes:
            process.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not stopping.is_set():
        codes = {p.name: p.exitcode for p in processes}
        raise ChildProcessError(f"a worker stopped on its own (exit codes {codes}), so every worker was "
                                "stopped; its own error, if it printed one, is above")


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
    stops on SIGTERM, on losing its supervisor, or (exit status 2) when its model does not load."""
    os.setpgrp()
    failed: list[str] = []

    def settled(error: str | None) -> None:
        if error is None:
            ready.set()
        else:
            failed.append(error)
            server.should_exit = True

    server = uvicorn_server(model, settings, threads=threads, providers=providers, on_settled=settled)

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
