"""The limits of one server process: ``cvae-sdk serve``'s options, checked once."""

from __future__ import annotations

from dataclasses import dataclass

from cvae_sdk.checks import positive_int


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
