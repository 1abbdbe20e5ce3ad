"""One server process: the app on uvicorn until SIGINT/SIGTERM, or until it can no longer serve."""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn

from cvae_sdk.checks import positive_int
from cvae_sdk.exits import StoppedServing
from cvae_sdk.serving.app import create_app
from cvae_sdk.serving.settings import ServeSettings

MAX_PORT = 65535
DRAIN_S = 60  # SIGTERM: accepted requests get this long to finish


def freeze_heap() -> None:
    """Move every object alive now out of the collected generations (run once the model is loaded)."""
    gc.collect()
    gc.freeze()


def uvicorn_server(model: str | Path | None, settings: ServeSettings, *, host: str = "127.0.0.1", port: int = 8000,
                   threads: int | None = None, providers: Any = "auto",
                   on_settled: Callable[[str | None], None] | None = None) -> tuple[uvicorn.Server, list[str]]:
    """A uvicorn server over :func:`create_app`, for a process that serves and does nothing else
    (``on_settled`` as in :func:`create_app`), and the list that holds why it stopped serving, if it
    did: the server exits then, so that a supervisor can restart it."""
    # This process is the server's own, so it tunes its garbage collector: young collections run less
    # often, and once the model is loaded every long-lived object (modules, app, sessions) leaves the
    # collected generations, so full collections stop walking them (their pauses were much of the p99
    # under load: benchmarks/serve_load.py).
    gc.set_threshold(10_000, 50, 100)
    died: list[str] = []

    def stop(reason: str) -> None:
        died.append(reason)
        server.should_exit = True

    app = create_app(model, settings, threads=threads, providers=providers, on_loaded=freeze_heap,
                     on_settled=on_settled, on_died=stop)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=settings.access_log,
                            timeout_graceful_shutdown=DRAIN_S)
    if settings.access_log:  # uvicorn's other messages stay at warning
        logging.getLogger("uvicorn.access").setLevel(logging.INFO)
    server = uvicorn.Server(config)
    return server, died


def announce_line(host: str, port: int) -> str:
    """The one line ``serve`` prints once it listens: its URL last."""
    shown = f"[{host}]" if ":" in host else host
    return f"cvae-sdk serving on http://{shown}:{port}"


def serve(model: str | Path | None, settings: ServeSettings, *, host: str = "127.0.0.1", port: int = 8000,
          threads: int | None = None, providers: Any = "auto", announce: Callable[[str], None] = print,
          workers: int = 1) -> None:
    """Run the server until SIGINT/SIGTERM (accepted requests finish first); announce its URL once bound.

    ``workers`` above 1 runs that many server processes on the port (:mod:`cvae_sdk.serving.replicas`).
    Raises :class:`StoppedServing` if the server stopped because it could no longer answer.
    """
    positive_int(workers, "workers")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= MAX_PORT:
        raise ValueError(f"port must be an int in 0-{MAX_PORT} (0 picks a free one), got {port!r}")
    if workers > 1:
        from cvae_sdk.serving.replicas import serve_workers

        serve_workers(model, settings, workers=workers, host=host, port=port, threads=threads,
                      providers=providers, announce=announce)
        return
    server, died = uvicorn_server(model, settings, host=host, port=port, threads=threads, providers=providers)

    def announce_when_bound() -> None:
        while not server.started:
            if server.should_exit:
                return
            time.sleep(0.01)
        bound = server.servers[0].sockets[0].getsockname()
        announce(announce_line(bound[0], bound[1]))

    threading.Thread(target=announce_when_bound, name="cvae-sdk-announce", daemon=True).start()
    server.run()
    if died:
        raise StoppedServing(f"the server stopped: {died[0]}; restart it")
