"""``cvae-sdk serve``: an HTTP API (FastAPI on uvicorn) over one Generator and its micro-batcher.

Concurrent ``/v1/generate`` requests share session runs through :meth:`Generator.batcher`, so
each response holds exactly what ``Generator.generate(labels, n, rng=seed, temperature=...)``
returns, bit for bit, on any replica. Admission is bounded: past ``max_queue`` requests in
flight the server answers 503 with ``Retry-After`` instead of growing a queue; every request
has a timeout (504). Errors are JSON ``{"error": "..."}``: a library ``ValueError``/``TypeError``
is a 400, an unknown field or a wrong type a 422, a body or a request too large a 413.

Requests carry only numbers and names: nothing a client sends reaches a file path.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import io
import logging
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np

from cvae_sdk.checks import positive_int
from cvae_sdk.generator import Generator
from cvae_sdk.images import encode_png, make_image_grid
from cvae_sdk.request import GenerationOutput

try:
    from fastapi import FastAPI, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from pydantic import BaseModel, ConfigDict, Field, ValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException
except ImportError as err:  # pragma: no cover - the [serve] extra is missing
    raise ImportError("cvae-sdk serve needs the serve extra: pip install 'cvae-sdk[serve]'") from err

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
MAX_GRID_PER_LABEL, MAX_GRID_SCALE = 64, 8
GRID_SCALE = 2  # the default enlargement of /v1/grid.png cells, as `cvae-sdk sample --out x.png` draws them
INLINE_SAMPLES = 16  # a lone request this small is decoded on the event loop (about a millisecond at most)
MAX_PORT = 65535


@dataclass(frozen=True)
class ServeSettings:
    """Limits of one server process; the CLI's options."""

    max_batch: int = 256
    max_delay_ms: float = 0.0
    max_gap_ms: float = 0.2       # a run also starts once no request has arrived for this long
    max_samples_per_request: int = 4096
    max_queue: int = 256          # requests in flight before new ones get 503
    max_queued_samples: int = 16_384  # samples in flight (the work admitted) before new requests get 503
    timeout_s: float = 30.0       # per request, from admission to the last byte computed
    max_body_bytes: int = 65_536
    access_log: bool = False      # one line per request on stdout (uvicorn's access log)

    def __post_init__(self) -> None:
        for name in ("max_batch", "max_samples_per_request", "max_queue", "max_queued_samples", "max_body_bytes"):
            positive_int(getattr(self, name), name)
        if not (self.max_delay_ms >= 0 and self.max_gap_ms >= 0 and self.timeout_s > 0):
            raise ValueError("max_delay_ms and max_gap_ms must be >= 0 and timeout_s > 0")


class GenerateRequest(BaseModel):
    """Body of ``POST /v1/generate``."""

    model_config = ConfigDict(extra="forbid", strict=True)
    labels: list[int | str] = Field(min_length=1)
    num_samples_per_label: int = 1
    seed: int | None = None
    temperature: float | None = None
    output: Literal["npy", "png", "json"] = "npy"
    dtype: Literal["float32", "uint8"] = "float32"


class InterpolateRequest(BaseModel):
    """Body of ``POST /v1/interpolate``: morph ``start`` into ``end`` in ``steps`` images."""

    model_config = ConfigDict(extra="forbid", strict=True)
    start: int | str
    end: int | str
    steps: int = 8
    seed: int | None = None
    temperature: float | None = None
    output: Literal["npy", "png", "json"] = "png"
    dtype: Literal["float32", "uint8"] = "float32"


class Metrics:
    """Prometheus text-format counters and histograms, by hand (no client library needed)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, int]] = Counter()
        self.latency = _Histogram(LATENCY_BUCKETS)
        self.batches = _Histogram(BATCH_BUCKETS)
        self.samples = 0

    def observe(self, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(route, status)] += 1
            self.latency.add(seconds)

    def batch(self, size: int) -> None:
        with self._lock:
            self.batches.add(size)

    def served(self, n: int) -> None:
        with self._lock:
            self.samples += n

    def text(self) -> str:
        with self._lock:
            lines = ["# HELP cvae_requests_total HTTP requests by route and status.",
                     "# TYPE cvae_requests_total counter"]
            lines += [f'cvae_requests_total{{route="{route}",status="{status}"}} {count}'
                      for (route, status), count in sorted(self.requests.items())]
            lines += self.latency.lines("cvae_request_seconds", "Request latency in seconds.")
            lines += self.batches.lines("cvae_batch_size", "Rows per shared session run of the micro-batcher.")
            lines += ["# HELP cvae_samples_served_total Samples returned to clients.",
                      "# TYPE cvae_samples_served_total counter", f"cvae_samples_served_total {self.samples}",
                      "# HELP cvae_gc_frozen_objects Objects moved out of the garbage collector's generations.",
                      "# TYPE cvae_gc_frozen_objects gauge", f"cvae_gc_frozen_objects {gc.get_freeze_count()}"]
        return "\n".join(lines) + "\n"


class _Histogram:
    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds, self.counts, self.total, self.n = bounds, [0] * len(bounds), 0.0, 0

    def add(self, value: float) -> None:
        self.n, self.total = self.n + 1, self.total + value
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1

    def lines(self, name: str, help_text: str) -> list[str]:
        out = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
        out += [f'{name}_bucket{{le="{b:g}"}} {c}' for b, c in zip(self.bounds, self.counts, strict=True)]
        return [*out, f'{name}_bucket{{le="+Inf"}} {self.n}', f"{name}_sum {self.total:.6f}", f"{name}_count {self.n}"]


class _Rejected(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.headers = status, headers or {}


def create_app(model: str | Path | None = None, settings: ServeSettings | None = None, *,
               threads: int | None = None, providers: Any = "auto",
               on_loaded: Callable[[], None] | None = None,
               on_settled: Callable[[str | None], None] | None = None) -> _Front:
    """The ASGI app (FastAPI behind a plain front layer); the model loads in the background once the
    app starts (``/readyz`` says when). ``on_loaded`` runs after it loads, before it is ready;
    ``on_settled`` once it is ready (with None) or has failed to load (with the error)."""
    settings = settings or ServeSettings()
    metrics = Metrics()
    state: dict[str, Any] = {"gen": None, "batcher": None, "error": None, "in_flight": 0, "samples_in_flight": 0}
    loaded = threading.Event()

    def load() -> None:
        try:
            gen = Generator.from_pretrained(model, providers=providers, threads=threads)
            state["batcher"] = gen.batcher(settings.max_batch, settings.max_delay_ms, on_batch=metrics.batch,
                                            max_gap_ms=settings.max_gap_ms)
            if on_loaded is not None:
                on_loaded()
            state["gen"] = gen
        except Exception as err:  # reported by /readyz and every model route
            state["error"] = str(err)
        finally:
            loaded.set()
            if on_settled is not None:
                on_settled(state["error"])

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        threading.Thread(target=load, name="cvae-sdk-load", daemon=True).start()
        yield
        if state["batcher"] is not None:
            await asyncio.to_thread(state["batcher"].close)  # accepted requests finish first

    app = FastAPI(title="cvae-sdk", version="1", lifespan=lifespan,
                  description="Label-conditioned sampling from a cvae-sdk artifact.")

    def generator() -> Generator:
        if state["error"] is not None:
            raise _Rejected(503, f"the model failed to load: {state['error']}")
        if state["gen"] is None:
            raise _Rejected(503, "the model is still loading; retry shortly", {"Retry-After": "1"})
        gen: Generator = state["gen"]
        return gen

    async def admitted(work: Callable[[], Awaitable[Response]], samples: int) -> Response:
        """Run ``work`` (``samples`` images) if the server has room, within the request timeout.

        Room is counted twice: requests in flight (``max_queue``) and the samples they asked for
        (``max_queued_samples``), so a few huge requests cannot queue minutes of work. A request
        alone in the server is always admitted; one that times out leaves the batcher's queue
        cancelled, and the batcher never decodes it.
        """
        busy = state["samples_in_flight"]
        if state["in_flight"] >= settings.max_queue or (busy and busy + samples > settings.max_queued_samples):
            raise _Rejected(503, f"the server is at capacity ({state['in_flight']} requests, {busy} samples in "
                                 f"flight; limits {settings.max_queue} and {settings.max_queued_samples}); retry",
                            {"Retry-After": "1"})
        state["in_flight"] += 1
        state["samples_in_flight"] += samples
        try:
            async with asyncio.timeout(settings.timeout_s):  # a timed-out request leaves its batch alone
                return await work()
        except TimeoutError:
            raise _Rejected(504, f"the request took longer than {settings.timeout_s:g} s") from None
        finally:
            state["in_flight"] -= 1
            state["samples_in_flight"] -= samples

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> Response:
        return _error(err.status_code, str(err.detail), dict(err.headers or {}))  # 404, 405: the {"error": ...} shape

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> Response:
        return _error(422, _problems(err.errors(), skip=1))  # FastAPI's locations start with "body"

    @app.exception_handler(_Rejected)
    @app.exception_handler(ValueError)
    @app.exception_handler(TypeError)
    async def refused(request: Request, err: Exception) -> Response:
        return _refusal(err)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> Response:
        """The model is loaded and requests are served."""
        if state["gen"] is None:
            return _error(503, state["error"] or "loading", {"Retry-After": "1"})
        if not state["batcher"].alive:
            return _error(503, "the micro-batcher's worker stopped; restart the server")
        return JSONResponse({"status": "ready"})

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.text(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/model")
    async def model_info() -> dict[str, Any]:
        """The artifact's configuration and the providers in use."""
        gen = generator()
        c = gen.config
        return {"class_names": list(c.class_names), "latent_dim": c.latent_dim, "sample_shape": list(c.sample_shape),
                "default_temperature": c.default_temperature,
                "class_temperatures": None if c.class_temperatures is None else list(c.class_temperatures),
                "providers": gen.providers, "weights_sha256": c.weights_sha256, "format_version": c.format_version,
                "max_samples_per_request": settings.max_samples_per_request}

    async def answer_generate(body: GenerateRequest) -> Response:
        gen = generator()
        n = len(body.labels) * max(1, body.num_samples_per_label)
        _check_size(n, settings)

        async def work() -> Response:
            kind = _output_type(body.output, body.dtype)
            inline = n <= INLINE_SAMPLES and settings.max_delay_ms == 0
            if inline:  # one turn of the loop first, so requests that arrived with this one count in in_flight
                await asyncio.sleep(0)
            if inline and state["in_flight"] == 1:
                # alone in the server, and the batcher would not wait for company (delay 0): decode here,
                # without two thread hand-offs (the same samples: the batcher reproduces generate)
                out = gen.generate(body.labels, body.num_samples_per_label, rng=body.seed,
                                   temperature=body.temperature, output_type=kind)
                metrics.batch(n)  # one session run of n rows, as the batcher reports its runs
            else:
                future = state["batcher"].submit(body.labels, body.num_samples_per_label, rng=body.seed,
                                                 temperature=body.temperature, output_type=kind)
                out = await asyncio.wrap_future(future)
            metrics.served(len(out.labels))
            return _render(gen, out, body.output, columns=body.num_samples_per_label)

        return await admitted(work, n)

    @app.post("/v1/generate")
    async def generate(body: GenerateRequest) -> Response:
        """Samples for labels: .npy (float32 or uint8), a PNG grid, or JSON with base64 PNGs."""
        return await answer_generate(body)

    @app.get("/v1/grid.png")
    async def grid(label: list[str] = Query(...), n: int = 8, seed: int | None = None,  # noqa: B008
                   temperature: float | None = None, scale: int = GRID_SCALE) -> Response:
        """A PNG grid for an ``<img>`` tag: one row per label, ``n`` samples each, enlarged ``scale`` times."""
        gen = generator()
        if not 1 <= n <= MAX_GRID_PER_LABEL:
            raise _Rejected(400, f"n must lie in 1..{MAX_GRID_PER_LABEL} for a grid, got {n}")
        if not 1 <= scale <= MAX_GRID_SCALE:
            raise _Rejected(400, f"scale must lie in 1..{MAX_GRID_SCALE}, got {scale}")
        _check_size(len(label) * n, settings)
        labels = [_label(x, gen) for x in label]

        async def work() -> Response:
            future = state["batcher"].submit(labels, n, rng=seed, temperature=temperature, output_type="uint8")
            out = await asyncio.wrap_future(future)
            metrics.served(len(out.labels))
            return _render(gen, out, "png", columns=n, scale=scale)

        return await admitted(work, len(labels) * n)

    @app.post("/v1/interpolate")
    async def interpolate(body: InterpolateRequest) -> Response:
        """Morph one label into another (one row of ``steps`` images)."""
        gen = generator()
        _check_size(body.steps, settings)

        async def work() -> Response:
            out = await asyncio.to_thread(gen.interpolate, body.start, body.end, body.steps, rng=body.seed,
                                          temperature=body.temperature,
                                          output_type=_output_type(body.output, body.dtype))
            metrics.served(len(out.labels))
            return _render(gen, out, body.output, columns=body.steps, one_row=True)

        return await admitted(work, body.steps)

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        """The web page: pick labels and see a grid; morph one label into another."""
        return (resources.files("cvae_sdk") / "web" / "index.html").read_text()

    # The front layer answers POST /v1/generate itself, with the same model and the same coroutine as
    # the route above (which stays for the OpenAPI schema): FastAPI's routing, its exception and
    # telemetry middlewares and its request parsing cost several times the work of a one-image request.
    return _Front(app, metrics, settings.max_body_bytes,
                  direct={("POST", "/v1/generate"): (GenerateRequest, answer_generate)})


Answer = Callable[[Any], Awaitable[Response]]


class _Front:
    """Plain ASGI layer around the FastAPI app: refuse oversized bodies (413), count every response for
    /metrics, and answer the routes in ``direct`` without FastAPI's machinery.

    A direct route's JSON body is validated by its pydantic model (422 on unknown fields or wrong
    types, as FastAPI would answer) and handed to its coroutine; library errors become 400s as in
    the app's exception handlers. (Starlette's ``@app.middleware("http")`` wraps each request in extra
    tasks and streams; this adds no work beyond reading the headers.)
    """

    def __init__(self, app: Any, metrics: Metrics, max_body: int,
                 direct: dict[tuple[str, str], tuple[type[BaseModel], Answer]]) -> None:
        self.app, self.metrics, self.max_body, self.direct = app, metrics, max_body, direct

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":  # lifespan events reach the app
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500
        length = dict(scope["headers"]).get(b"content-length")
        direct = self.direct.get((scope["method"], scope["path"]))
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            status = await self._send(_error(413, f"request body over {self.max_body} bytes"), scope, receive, send)
        elif direct is not None:
            status = await self._send(await self._answer(*direct, receive), scope, receive, send)
        else:
            async def observed(message: dict[str, Any]) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            await self.app(scope, receive, observed)
        route = scope["path"] if direct is not None else getattr(scope.get("route"), "path", "unmatched")
        self.metrics.observe(route, status, time.perf_counter() - started)

    async def _answer(self, model: type[BaseModel], answer: Answer, receive: Any) -> Response:
        body = bytearray()
        while True:  # the body, in as many messages as the client sent it
            message = await receive()
            body += message.get("body", b"")
            if len(body) > self.max_body:
                return _error(413, f"request body over {self.max_body} bytes")
            if not message.get("more_body", False):
                break
        try:
            return await answer(model.model_validate_json(body))
        except ValidationError as err:  # before ValueError, which it subclasses
            return _error(422, _problems(err.errors(), skip=0))
        except (_Rejected, ValueError, TypeError) as err:
            return _refusal(err)

    @staticmethod
    async def _send(response: Response, scope: dict[str, Any], receive: Any, send: Any) -> int:
        await response(scope, receive, send)
        return response.status_code


def _refusal(err: Exception) -> JSONResponse:
    """The answer to a refused request: a _Rejected's own status, else 400 for a library error."""
    if isinstance(err, _Rejected):
        return _error(err.status, str(err), err.headers)
    return _error(400, str(err))


def _problems(errors: Any, skip: int) -> str:
    """One line for a 422: each problem's location (less ``skip`` leading parts) and message."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'][skip:]) or 'body'}: {e['msg']}" for e in errors)


def _output_type(output: str, dtype: str) -> Literal["np", "uint8"]:
    """PNG and JSON bodies are 8-bit images; .npy is float32 unless uint8 was asked for."""
    return "uint8" if output != "npy" or dtype == "uint8" else "np"


def _check_size(n: int, settings: ServeSettings) -> None:
    if n > settings.max_samples_per_request:
        raise _Rejected(413, f"{n} samples requested; this server returns at most "
                             f"{settings.max_samples_per_request} per request (--max-samples-per-request)")


def _label(value: str, gen: Generator) -> int | str:
    """A query-string label: a class name if it is one, else an int id."""
    if value in gen.config.class_names:
        return value
    try:
        return int(value)
    except ValueError:
        raise _Rejected(400, f"unknown label {value!r}; class names are {list(gen.config.class_names)}") from None


def _render(gen: Generator, out: GenerationOutput[Any], output: str, columns: int, one_row: bool = False,
            scale: int = 1) -> Response:
    names = [gen.config.class_names[int(i)] for i in out.labels]
    if output == "npy":
        buffer = io.BytesIO()
        np.save(buffer, out.samples, allow_pickle=False)
        return Response(buffer.getvalue(), media_type="application/octet-stream",
                        headers={"X-Labels": ",".join(str(int(i)) for i in out.labels)})
    if output == "png":
        row_names = [f"{names[0]}>{names[-1]}"] if one_row else names[::columns]
        return Response(encode_png(make_image_grid(out.samples, columns, row_labels=row_names, scale=scale)),
                        media_type="image/png")
    images = [base64.b64encode(encode_png(np.ascontiguousarray(img.transpose(1, 2, 0)))).decode()
              for img in out.samples]
    return JSONResponse({"labels": [int(i) for i in out.labels], "class_names": names, "images": images,
                         "shape": list(out.samples.shape[1:])})


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _freeze_heap() -> None:
    gc.collect()
    gc.freeze()


def uvicorn_server(model: str | Path | None, settings: ServeSettings, *, host: str = "127.0.0.1", port: int = 8000,
                   threads: int | None = None, providers: Any = "auto",
                   on_settled: Callable[[str | None], None] | None = None) -> Any:
    """A uvicorn server over :func:`create_app`, for a process that serves and does nothing else
    (``on_settled`` as in :func:`create_app`)."""
    import uvicorn

    # This process is the server's own, so it tunes its garbage collector: young collections run less
    # often, and once the model is loaded every long-lived object (modules, app, sessions) leaves the
    # collected generations, so full collections stop walking them (their pauses were much of the p99
    # under load: benchmarks/serve_load.py).
    gc.set_threshold(10_000, 50, 100)
    app = create_app(model, settings, threads=threads, providers=providers, on_loaded=_freeze_heap,
                     on_settled=on_settled)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=settings.access_log,
                            timeout_graceful_shutdown=60)
    if settings.access_log:  # uvicorn's other messages stay at warning
        logging.getLogger("uvicorn.access").setLevel(logging.INFO)
    return uvicorn.Server(config)


def announce_line(host: str, port: int) -> str:
    """The one line ``serve`` prints once it listens: its URL last."""
    shown = f"[{host}]" if ":" in host else host
    return f"cvae-sdk serving on http://{shown}:{port}"


def serve(model: str | Path | None, settings: ServeSettings, *, host: str = "127.0.0.1", port: int = 8000,
          threads: int | None = None, providers: Any = "auto", announce: Callable[[str], None] = print,
          workers: int = 1) -> None:
    """Run the server until SIGINT/SIGTERM (accepted requests finish first); announce its URL once bound.

    ``workers`` above 1 runs that many server processes on the port (:mod:`cvae_sdk.replicas`).
    """
    positive_int(workers, "workers")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= MAX_PORT:
        raise ValueError(f"port must be an int in 0-{MAX_PORT} (0 picks a free one), got {port!r}")
    if workers > 1:
        from cvae_sdk.replicas import serve_workers

        serve_workers(model, settings, workers=workers, host=host, port=port, threads=threads,
                      providers=providers, announce=announce)
        return
    server = uvicorn_server(model, settings, host=host, port=port, threads=threads, providers=providers)

    def announce_when_bound() -> None:
        while not server.started:
            if server.should_exit:
                return
            time.sleep(0.01)
        bound = server.servers[0].sockets[0].getsockname()
        announce(announce_line(bound[0], bound[1]))

    threading.Thread(target=announce_when_bound, name="cvae-sdk-announce", daemon=True).start()
    server.run()
