"""How the server answers a request it refuses: JSON ``{"error": ...}`` with the status that says why."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse


class Rejected(Exception):
    """A refusal with its own HTTP status (and headers, e.g. ``Retry-After``)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.headers = status, headers or {}


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The one shape of every error the server sends."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def refusal(err: Exception) -> JSONResponse:
    """The answer to a refused request: a Rejected's own status, else 400 for a library error."""
    if isinstance(err, Rejected):
        return error(err.status, str(err), err.headers)
    return error(400, str(err))


def problems(errors: Any, skip: int) -> str:
    """One line for a 422: each problem's location (less ``skip`` leading parts) and message."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'][skip:]) or 'body'}: {e['msg']}" for e in errors)
