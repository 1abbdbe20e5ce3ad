"""``cvae-sdk serve``: an HTTP API (FastAPI on uvicorn) over one Generator and its micro-batcher.

Concurrent ``/v1/generate`` requests share session runs through :meth:`Generator.batcher`, so
each response holds exactly what ``Generator.generate(labels, n, rng=seed, temperature=...)``
returns, bit for bit, on any replica. Admission is bounded: past ``max_queue`` requests or
``max_queued_samples`` samples in flight the server answers 503 with ``Retry-After`` instead of
growing a queue; every request has a timeout (504). Errors are JSON ``{"error": "..."}``: a
library ``ValueError``/``TypeError`` is a 400, an unknown field or a wrong type a 422, a body or a
request too large a 413. Requests carry only numbers and names: nothing a client sends reaches a
file path.

One file per job: ``settings`` (the limits), ``bodies`` (what a request carries and gets back),
``errors`` (how a refusal is answered), ``metrics`` (``/metrics``), ``app`` (the model behind the
routes, and the FastAPI app), ``front`` (the plain ASGI layer in front of it), ``run`` (one server
process on uvicorn) and ``replicas`` (``--workers``: several processes on one port).
"""

from __future__ import annotations

try:  # every module of this package needs the serve extra: say which, once
    import fastapi  # noqa: F401
    import prometheus_client  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as err:  # pragma: no cover - the [serve] extra is missing
    raise ImportError(f"cvae-sdk serve needs the serve extra ({err.name} is missing): "
                      "pip install 'cvae-sdk[serve]'") from err
