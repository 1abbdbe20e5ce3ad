"""The model behind the routes (:class:`Service`) and the FastAPI app that exposes it (:func:`create_app`)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from cvae_sdk.batcher import BatcherStopped, MicroBatcher
from cvae_sdk.generator import Generator
from cvae_sdk.labels import text_label
from cvae_sdk.serving.bodies import GenerateRequest, InterpolateRequest, output_type, render
from cvae_sdk.serving.errors import Rejected, error, problems, refusal
from cvae_sdk.serving.front import Front
from cvae_sdk.serving.metrics import Metrics
from cvae_sdk.serving.settings import ServeSettings

MAX_GRID_PER_LABEL, MAX_GRID_SCALE = 64, 8
GRID_SCALE = 2  # the default enlargement of /v1/grid.png cells, as `cvae-sdk sample --out x.png` draws them
INLINE_SAMPLES = 16  # a lone request this small is decoded on the event loop (about a millisecond at most)


class Service:
    """One model, loaded in the background, and what each route does with it.

    Work is admitted while the server has room, counted twice: requests in flight (``max_queue``)
    and the samples they asked for (``max_queued_samples``), so a few huge requests cannot queue
    minutes of work. A request alone in the server is always admitted; one that times out leaves
    the batcher's queue cancelled, and the batcher never decodes it.
    """

    def __init__(self, model: str | Path | None, settings: ServeSettings, metrics: Metrics, *,
                 threads: int | None, providers: Any) -> None:
        self.model, self.settings, self.metrics = model, settings, metrics
        self.threads, self.providers = threads, providers
        self.gen: Generator | None = None
        self.batcher: MicroBatcher | None = None
        self.error: str | None = None
        self.in_flight = self.samples_in_flight = 0

    def load(self, on_loaded: Callable[[], None] | None, on_died: Callable[[str], None] | None) -> None:
        """Load the model and start its batcher (``error`` says why not); ``on_loaded`` runs before it
        is ready, ``on_died`` if the batcher's worker ever stops."""
        def died(err: BaseException) -> None:
            if on_died is not None:
                on_died(f"the micro-batcher's worker stopped ({type(err).__name__}: {err})")

        try:
            gen = Generator.from_pretrained(self.model, providers=self.providers, threads=self.threads)
            self.batcher = gen.batcher(self.settings.max_batch, self.settings.max_delay_ms, on_batch=self.metrics.batch,
                                       max_gap_ms=self.settings.max_gap_ms, on_died=died)
            if on_loaded is not None:
                on_loaded()
            self.metrics.heap_frozen()
            self.gen = gen
        except Exception as err:  # reported by /readyz and every model route
            self.error = str(err)

    def generator(self) -> tuple[Generator, MicroBatcher]:
        """The loaded model and its batcher, or a 503 that says why there is none."""
        if self.error is not None:
            raise Rejected(503, f"the model failed to load: {self.error}")
        if self.gen is None or self.batcher is None:
            raise Rejected(503, "the model is still loading; retry shortly", {"Retry-After": "1"})
        return self.gen, self.batcher

    def ready(self) -> Response:
        """``/readyz``: 200 once requests are served, else 503 with the reason."""
        if self.gen is None or self.batcher is None:
            return error(503, self.error or "loading", {"Retry-After": "1"})
        if not self.batcher.alive:
            return error(503, "the micro-batcher's worker stopped; restart the server")
        return JSONResponse({"status": "ready"})

    async def admitted(self, work: Callable[[], Awaitable[Response]], samples: int) -> Response:
        """Run ``work`` (``samples`` images) if the server has room, within the request timeout."""
        busy, limits = self.samples_in_flight, self.settings
        if self.in_flight >= limits.max_queue or (busy and busy + samples > limits.max_queued_samples):
            raise Rejected(503, f"the server is at capacity ({self.in_flight} requests, {busy} samples in "
                                f"flight; limits {limits.max_queue} and {limits.max_queued_samples}); retry",
                           {"Retry-After": "1"})
        self.in_flight += 1
        self.samples_in_flight += samples
        try:
            async with asyncio.timeout(limits.timeout_s):  # a timed-out request leaves its batch alone
                return await work()
        except TimeoutError:
            raise Rejected(504, f"the request took longer than {limits.timeout_s:g} s") from None
        except BatcherStopped as err:  # the process is stopping, for a supervisor to restart it
            raise Rejected(503, f"{err}; this server is stopping") from None
        finally:
            self.in_flight -= 1
            self.samples_in_flight -= samples

    def check_size(self, n: int) -> None:
        if n > self.settings.max_samples_per_request:
            raise Rejected(413, f"{n} samples requested; this server returns at most "
                                f"{self.settings.max_samples_per_request} per request (--max-samples-per-request)")

    async def generate(self, body: GenerateRequest) -> Response:
        """``POST /v1/generate``: decoded inline when alone and small, else through the batcher."""
        gen, batcher = self.generator()
        n = len(body.labels) * max(1, body.num_samples_per_label)
        self.check_size(n)

        async def work() -> Response:
            kind = output_type(body.output, body.dtype)
            inline = n <= INLINE_SAMPLES and self.settings.max_delay_ms == 0
            if inline:  # one turn of the loop first, so requests that arrived with this one count in in_flight
                await asyncio.sleep(0)
            if inline and self.in_flight == 1:
                # alone in the server, and the batcher would not wait for company (delay 0): decode here,
                # without two thread hand-offs (the same samples: the batcher reproduces generate)
                out = gen.generate(body.labels, body.num_samples_per_label, rng=body.seed,
                                   temperature=body.temperature, output_type=kind)
                self.metrics.batch(n)  # one session run of n rows, as the batcher reports its runs
            else:
                out = await asyncio.wrap_future(batcher.submit(body.labels, body.num_samples_per_label, rng=body.seed,
                                                               temperature=body.temperature, output_type=kind))
            self.metrics.served(len(out.labels))
            return render(gen.config.class_names, out, body.output, columns=body.num_samples_per_label)

        return await self.admitted(work, n)

    async def grid(self, label: list[str], n: int, seed: int | None, temperature: float | None,
                   scale: int) -> Response:
        """``GET /v1/grid.png``: one row per label, ``n`` samples each, enlarged ``scale`` times."""
        gen, batcher = self.generator()
        if not 1 <= n <= MAX_GRID_PER_LABEL:
            raise Rejected(400, f"n must lie in 1..{MAX_GRID_PER_LABEL} for a grid, got {n}")
        if not 1 <= scale <= MAX_GRID_SCALE:
            raise Rejected(400, f"scale must lie in 1..{MAX_GRID_SCALE}, got {scale}")
        self.check_size(len(label) * n)
        labels = [text_label(x, gen.config.class_names) for x in label]

        async def work() -> Response:
            future = batcher.submit(labels, n, rng=seed, temperature=temperature, output_type="uint8")
            out = await asyncio.wrap_future(future)
            self.metrics.served(len(out.labels))
            return render(gen.config.class_names, out, "png", columns=n, scale=scale)

        return await self.admitted(work, len(labels) * n)

    async def interpolate(self, body: InterpolateRequest) -> Response:
        """``POST /v1/interpolate``: one row of ``steps`` images from one label to another."""
        gen, _ = self.generator()
        self.check_size(body.steps)

        async def work() -> Response:
            kind = output_type(body.output, body.dtype)
            out = await asyncio.to_thread(gen.interpolate, body.start, body.end, body.steps, rng=body.seed,
                                          temperature=body.temperature, output_type=kind)
            self.metrics.served(len(out.labels))
            return render(gen.config.class_names, out, body.output, columns=body.steps, one_row=True)

        return await self.admitted(work, body.steps)

    def model_info(self) -> dict[str, Any]:
        """``GET /v1/model``: the artifact's configuration and the providers in use."""
        gen, _ = self.generator()
        c = gen.config
        return {"class_names": list(c.class_names), "latent_dim": c.latent_dim, "sample_shape": list(c.sample_shape),
                "default_temperature": c.default_temperature,
                "class_temperatures": None if c.class_temperatures is None else list(c.class_temperatures),
                "providers": gen.providers, "weights_sha256": c.weights_sha256, "format_version": c.format_version,
                "max_samples_per_request": self.settings.max_samples_per_request}


def create_app(model: str | Path | None = None, settings: ServeSettings | None = None, *,
               threads: int | None = None, providers: Any = "auto",
               on_loaded: Callable[[], None] | None = None,
               on_settled: Callable[[str | None], None] | None = None,
               on_died: Callable[[str], None] | None = None) -> Front:
    """The ASGI app (FastAPI behind :class:`Front`); the model loads in the background once the app
    starts (``/readyz`` says when). ``on_loaded`` runs after it loads, before it is ready;
    ``on_settled`` once it is ready (with None) or has failed to load (with the error); ``on_died``
    (with the reason) if it stops serving later: the batcher's worker stopped."""
    settings = settings or ServeSettings()
    metrics = Metrics()
    service = Service(model, settings, metrics, threads=threads, providers=providers)

    def load() -> None:
        try:
            service.load(on_loaded, on_died)
        finally:
            if on_settled is not None:
                on_settled(service.error)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        threading.Thread(target=load, name="cvae-sdk-load", daemon=True).start()
        yield
        if service.batcher is not None:
            await asyncio.to_thread(service.batcher.close)  # accepted requests finish first

    app = FastAPI(title="cvae-sdk", version="1", lifespan=lifespan,
                  description="Label-conditioned sampling from a cvae-sdk artifact.")
    _errors(app)
    _routes(app, service, metrics)
    # The front layer answers POST /v1/generate itself, with the same coroutine as the route (which
    # stays for the OpenAPI schema).
    return Front(app, metrics, settings.max_body_bytes,
                 direct={("POST", "/v1/generate"): (GenerateRequest, service.generate)})


def _errors(app: FastAPI) -> None:
    """Every error in the ``{"error": ...}`` shape: 404/405, 422 for a bad body, refusals and library errors."""
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> Response:
        return error(err.status_code, str(err.detail), dict(err.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> Response:
        return error(422, problems(err.errors(), skip=1))  # FastAPI's locations start with "body"

    @app.exception_handler(Rejected)
    @app.exception_handler(ValueError)
    @app.exception_handler(TypeError)
    async def refused(request: Request, err: Exception) -> Response:
        return refusal(err)


def _routes(app: FastAPI, service: Service, metrics: Metrics) -> None:
    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> Response:
        """The model is loaded and requests are served."""
        return service.ready()

    @app.get("/metrics")
    async def prometheus() -> Response:
        """Prometheus metrics (every worker's, summed, under ``--workers``)."""
        return Response(metrics.exposition(), media_type=metrics.content_type)

    @app.get("/v1/model")
    async def model_info() -> dict[str, Any]:
        """The artifact's configuration and the providers in use."""
        return service.model_info()

    @app.post("/v1/generate")
    async def generate(body: GenerateRequest) -> Response:
        """Samples for labels: .npy (float32 or uint8), a PNG grid, or JSON with base64 PNGs."""
        return await service.generate(body)

    @app.get("/v1/grid.png")
    async def grid(label: list[str] = Query(...), n: int = 8, seed: int | None = None,  # noqa: B008
                   temperature: float | None = None, scale: int = GRID_SCALE) -> Response:
        """A PNG grid for an ``<img>`` tag: one row per label, ``n`` samples each, enlarged ``scale`` times."""
        return await service.grid(label, n, seed, temperature, scale)

    @app.post("/v1/interpolate")
    async def interpolate(body: InterpolateRequest) -> Response:
        """Morph one label into another (one row of ``steps`` images)."""
        return await service.interpolate(body)

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        """The web page: pick labels and see a grid; morph one label into another."""
        return (resources.files("cvae_sdk") / "web" / "index.html").read_text()
