"""The few WSGI shapes the runtime passes around."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any, TypeAlias

Environ: TypeAlias = dict[str, Any]
StartResponse: TypeAlias = Callable[..., Any]
WSGIApp: TypeAlias = Callable[[Environ, StartResponse], Iterable[bytes]]


# Built once: every response needs one, and the enum lookup is not free.
_STATUS_LINES = {
    status.value: f"{status.value} {status.phrase}" for status in HTTPStatus
}


def status_line(code: int) -> str:
    """``200`` -> ``"200 OK"``."""
    return _STATUS_LINES.get(code) or f"{code} Unknown"


def simple_response(
    start_response: StartResponse,
    code: int,
    body: bytes,
    headers: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    """Answer with a fixed body; text/plain unless ``headers`` say otherwise."""
    headers = list(headers or [])
    if body and not any(k.lower() == "content-type" for k, _ in headers):
        headers.append(("Content-Type", "text/plain; charset=utf-8"))
    headers.append(("Content-Length", str(len(body))))
    start_response(status_line(code), headers)
    return [body]
