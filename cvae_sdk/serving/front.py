"""The plain ASGI layer in front of the FastAPI app: body limits, the request count, and a fast path.

It refuses oversized bodies (413), counts every response for ``/metrics``, and answers the routes
in ``direct`` (``POST /v1/generate``) itself: FastAPI's routing, its exception and telemetry
middlewares and its request parsing cost several times the work of a one-image request
(``benchmarks/serve_load.py``). A direct route's JSON body is validated by its pydantic model (422
on unknown fields or wrong types, as FastAPI would answer) and handed to the same coroutine the
app's route calls; library errors become 400s as in the app's exception handlers. (Starlette's
``@app.middleware("http")`` wraps each request in extra tasks and streams; this adds no work
beyond reading the headers.)
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi.responses import Response
from pydantic import BaseModel, ValidationError

from cvae_sdk.serving.errors import Rejected, error, problems, refusal
from cvae_sdk.serving.metrics import Metrics

Answer = Callable[[Any], Awaitable[Response]]


class Front:
    """The ASGI app a server runs: ``app`` behind the checks above."""

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
            status = await _send(error(413, f"request body over {self.max_body} bytes"), scope, receive, send)
        elif direct is not None:
            status = await _send(await self._answer(*direct, receive), scope, receive, send)
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
                return error(413, f"request body over {self.max_body} bytes")
            if not message.get("more_body", False):
                break
        try:
            return await answer(model.model_validate_json(body))
        except ValidationError as err:  # before ValueError, which it subclasses
            return error(422, problems(err.errors(), skip=0))
        except (Rejected, ValueError, TypeError) as err:
            return refusal(err)


async def _send(response: Response, scope: dict[str, Any], receive: Any, send: Any) -> int:
    await response(scope, receive, send)
    return response.status_code
