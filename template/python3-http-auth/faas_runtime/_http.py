"""The python3-http handler contract, served without Flask.

``handle(event, context)`` receives the request and returns what OpenFaaS's
python3-http template accepts, so existing handlers move over unchanged:
``None``, a string, a dict with ``statusCode``/``body``/``headers``, a
``(body, status[, headers])`` tuple, a list (sent as JSON), or any WSGI
response object (a Flask or Werkzeug ``Response``). Two deliberate
differences: a ``bytes`` body is sent as is rather than as its ``str()``
(python-flask-template#39), and ``event.auth`` says who was authenticated.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from ._errors import AuthError, ConfigError
from ._middleware import ENVIRON_KEY, read_body, refusal_response
from ._types import Headers, Identity
from ._wsgi import Environ, StartResponse, status_line

log = logging.getLogger("faas_runtime.handler")

Handler = Callable[["Event", "Context"], Any]

# Flask's default for a string response, which python3-http returns.
_HTML = "text/html; charset=utf-8"


class Query(dict[str, str]):
    """Query arguments: ``q["k"]`` is the first value, ``getlist`` all."""

    def __init__(self, query_string: str) -> None:
        self._all: dict[str, list[str]] = {}
        for key, value in parse_qsl(query_string, keep_blank_values=True):
            self._all.setdefault(key, []).append(value)
        super().__init__((key, values[0]) for key, values in self._all.items())

    def getlist(self, key: str) -> list[str]:
        """Every value given for ``key``, in order."""
        return list(self._all.get(key, []))


class Event:
    """One request, as python3-http handlers see it.

    ``headers`` and ``query`` are parsed on first use: a handler that never
    reads them should not pay for them on every call.
    """

    __slots__ = ("_headers", "_query", "auth", "body", "environ", "method", "path")

    def __init__(self, environ: Environ) -> None:
        self.environ = environ
        self.body: bytes = read_body(environ)
        self.method: str = environ["REQUEST_METHOD"]
        self.path: str = environ.get("PATH_INFO") or "/"
        self.auth: Identity | None = environ.get(ENVIRON_KEY)
        self._headers: Headers | None = None
        self._query: Query | None = None

    @property
    def headers(self) -> Headers:
        """The request headers, looked up case-insensitively."""
        if self._headers is None:
            self._headers = Headers.from_environ(self.environ)
        return self._headers

    @property
    def query(self) -> Query:
        """The query arguments; ``getlist`` gives repeated ones."""
        if self._query is None:
            self._query = Query(self.environ.get("QUERY_STRING", ""))
        return self._query


class Context:
    """Where the function runs; ``hostname`` as OpenFaaS sets it."""

    __slots__ = ("hostname",)

    def __init__(self) -> None:
        self.hostname = os.getenv("HOSTNAME") or socket.gethostname() or "localhost"


class HandlerApp:
    """A WSGI app that calls a python3-http ``handle(event, context)``."""

    def __init__(self, handle: Handler) -> None:
        self.handle = handle
        self.context = Context()

    def __call__(self, environ: Environ, start_response: StartResponse) -> Any:
        event = Event(environ)
        try:
            result = self.handle(event, self.context)
        except (AuthError, ConfigError) as exc:
            # A per-path check inside the handler refused the request.
            return refusal_response(exc, environ, start_response)
        except Exception:
            log.exception(
                "handler raised call_id=%s", environ.get("HTTP_X_CALL_ID", "-")
            )
            return _send(start_response, 500, b"Internal Server Error", [], "")

        if callable(result):
            return result(environ, start_response)
        return _reply(result, start_response)


def _reply(result: Any, start_response: StartResponse) -> list[bytes]:
    if result is None:
        return _send(start_response, 200, b"", [], _HTML)
    if isinstance(result, dict):
        return _reply_dict(result, start_response)
    if isinstance(result, tuple):
        return _reply_tuple(result, start_response)
    if isinstance(result, list):
        return _send(start_response, 200, _json(result), [], "application/json")
    return _send(start_response, 200, _bytes(result), [], _HTML)


def _reply_dict(
    result: Mapping[str, Any], start_response: StartResponse
) -> list[bytes]:
    # python3-http reads only these three keys: a dict without "body"
    # answers an empty body, however much else it holds.
    status = int(result.get("statusCode", 200))
    headers = _header_list(result.get("headers"))
    body = result.get("body", "")
    if isinstance(body, dict):
        return _send(start_response, status, _json(body), headers, "application/json")
    if isinstance(body, bytes | bytearray):
        return _send(start_response, status, bytes(body), headers, _HTML)
    return _send(start_response, status, str(body).encode(), headers, _HTML)


def _reply_tuple(result: tuple[Any, ...], start_response: StartResponse) -> list[bytes]:
    # Flask's view-return forms: (body, status), (body, headers),
    # (body, status, headers).
    body, headers = result[0], None
    status: int | str = 200
    if len(result) == 3:
        status, headers = result[1], result[2]
    elif len(result) == 2 and isinstance(result[1], int | str):
        status = result[1]
    elif len(result) == 2:
        headers = result[1]

    if isinstance(body, dict | list):
        payload, default_type = _json(body), "application/json"
    else:
        payload, default_type = _bytes(body), _HTML
    code = int(str(status).split(" ", 1)[0])
    return _send(start_response, code, payload, _header_list(headers), default_type)


def _send(
    start_response: StartResponse,
    status: int,
    body: bytes,
    headers: list[tuple[str, str]],
    default_type: str,
) -> list[bytes]:
    names = {name.lower() for name, _ in headers}
    if default_type and "content-type" not in names:
        headers.append(("Content-Type", default_type))
    if "content-length" not in names:
        headers.append(("Content-Length", str(len(body))))
    start_response(status_line(status), headers)
    return [body]


def _header_list(headers: Any) -> list[tuple[str, str]]:
    if not headers:
        return []
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [(str(name), str(value)) for name, value in items]


def _json(value: Any) -> bytes:
    return json.dumps(value).encode() + b"\n"


def _bytes(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    return str(value).encode()
