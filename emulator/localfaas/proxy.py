"""Forwarding ``/function/`` calls to a function's process.

This is the gateway's hot path, so it keeps one persistent upstream
connection per worker thread and replica, does no per-request work that can
be done once, and streams the response instead of buffering it. What the
function and the client see follows the OpenFaaS gateway (gateway-contract.md
§9): the path after the name and the raw query, ``X-Call-Id`` (kept when the
client sent one), ``X-Start-Time`` in nanoseconds, ``X-Forwarded-Host`` and
``X-Forwarded-For`` (``ip:port``) when absent, hop-by-hop headers removed,
redirects passed back rather than followed.
"""

from __future__ import annotations

import http.client
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .metrics import GatewayMetrics

log = logging.getLogger("localfaas.proxy")

Environ = dict[str, Any]
StartResponse = Callable[..., Any]

# RFC 9110 §7.6.1, plus the legacy names Go's reverse proxy also strips.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "proxy-connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Bodies up to this size are held so a call on a stale keep-alive
# connection can be sent again; larger ones stream through once.
_REPLAYABLE = 1024 * 1024
_CHUNK = 64 * 1024


class UnknownFunction(Exception):
    """No function of that name is deployed."""


class Unreachable(Exception):
    """The function is deployed but none of its processes answers."""


Resolver = Callable[[str], tuple[str, int]]


@dataclass(frozen=True)
class Target:
    """Where a ``/function/`` path points: function, namespace, rest."""

    name: str
    namespace: str
    path: str

    @property
    def qualified(self) -> str:
        return f"{self.name}.{self.namespace}"


def split_target(segment: str, rest: str, default_namespace: str) -> Target:
    """``figlet.openfaas-fn`` + ``/a/b`` -> figlet, openfaas-fn, /a/b.

    The namespace is after the LAST dot (§9.1): ``dev.figlet.ns`` is the
    function ``dev.figlet`` in ``ns``.
    """
    name, dot, namespace = segment.rpartition(".")
    if not dot:
        name, namespace = segment, default_namespace
    return Target(name=name, namespace=namespace, path=rest or "/")


class Proxy:
    """Sends one call to a replica and streams the answer back."""

    def __init__(
        self,
        resolve: Resolver,
        metrics: GatewayMetrics,
        *,
        timeout: float,
        served_by: str,
    ) -> None:
        self.resolve = resolve
        self.metrics = metrics
        self.timeout = timeout
        self.served_by = served_by
        self._local = threading.local()

    def __call__(
        self, environ: Environ, start_response: StartResponse, target: Target
    ) -> Any:
        started = time.time_ns()
        try:
            host, port = self.resolve(target.name)
        except UnknownFunction:
            return _not_found(start_response, target)

        call_id, generated = _call_id(environ)
        ours = [("X-Start-Time", str(started)), ("X-Served-By", self.served_by)]
        if generated:
            ours.insert(0, ("X-Call-Id", call_id))
        self.metrics.started(target.qualified)

        headers = _upstream_headers(environ, call_id, started, host, port)
        try:
            response, connection = self._send(environ, target, host, port, headers)
        except Unreachable:
            return self._unreachable(start_response, target, started)
        except (OSError, http.client.HTTPException) as exc:
            log.warning("function %s failed: %s", target.qualified, exc)
            self._record(target, 502, started)
            return _answer(start_response, 502, b"", [*ours, ("Content-Length", "0")])

        reply = _merge(ours, response, environ)
        start_response(f"{response.status} {response.reason}", reply)
        return _Body(self, response, connection, target, started)

    def _send(
        self,
        environ: Environ,
        target: Target,
        host: str,
        port: int,
        headers: list[tuple[str, str]],
    ) -> tuple[http.client.HTTPResponse, http.client.HTTPConnection]:
        url = target.path
        if environ.get("QUERY_STRING"):
            url = f"{url}?{environ['QUERY_STRING']}"
        method = environ["REQUEST_METHOD"]
        body = _body(environ)

        for attempt in range(2):
            connection, reused = self._connection(host, port)
            try:
                _write_request(connection, method, url, headers, body)
                return connection.getresponse(), connection
            except ConnectionRefusedError as exc:
                self._discard(host, port)
                raise Unreachable(target.name) from exc
            except (
                http.client.RemoteDisconnected,
                BrokenPipeError,
                ConnectionResetError,
            ):
                # A keep-alive connection the function closed while idle:
                # send again on a fresh one, if the body can be sent again.
                self._discard(host, port)
                if attempt or not reused or not isinstance(body, bytes):
                    raise
            except BaseException:
                self._discard(host, port)
                raise
        raise AssertionError("unreachable")

    def _connection(
        self, host: str, port: int
    ) -> tuple[http.client.HTTPConnection, bool]:
        pool: dict[tuple[str, int], http.client.HTTPConnection]
        pool = self._local.__dict__.setdefault("pool", {})
        connection = pool.get((host, port))
        if connection is not None:
            return connection, True
        connection = http.client.HTTPConnection(host, port, timeout=self.timeout)
        connection.connect()
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pool[(host, port)] = connection
        return connection, False

    def _discard(self, host: str, port: int) -> None:
        pool = self._local.__dict__.get("pool", {})
        connection = pool.pop((host, port), None)
        if connection is not None:
            connection.close()

    def _unreachable(
        self, start_response: StartResponse, target: Target, started: int
    ) -> list[bytes]:
        self._record(target, 500, started)
        body = f"Can't reach service for: {target.name}.\n".encode()
        return _answer(
            start_response,
            500,
            body,
            [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("X-Content-Type-Options", "nosniff"),
                ("X-Openfaas-Internal", "proxy"),
                ("Content-Length", str(len(body))),
            ],
        )

    def _record(self, target: Target, code: int, started: int) -> None:
        seconds = (time.time_ns() - started) / 1e9
        self.metrics.finished(target.qualified, code, seconds)


class _Body:
    """The function's answer, streamed; closing it frees the connection."""

    def __init__(
        self,
        proxy: Proxy,
        response: http.client.HTTPResponse,
        connection: http.client.HTTPConnection,
        target: Target,
        started: int,
    ) -> None:
        self.proxy = proxy
        self.response = response
        self.connection = connection
        self.target = target
        self.started = started
        self.complete = False

    def __iter__(self) -> Iterator[bytes]:
        read = self.response.read1
        while chunk := read(_CHUNK):
            yield chunk
        self.complete = True

    def close(self) -> None:
        self.proxy._record(self.target, self.response.status, self.started)
        if not self.complete or self.response.will_close:
            # Unread bytes would corrupt the next call on this connection.
            host, port = self.connection.host, self.connection.port
            self.proxy._discard(host, port)
        self.response.close()


def _call_id(environ: Environ) -> tuple[str, bool]:
    given = environ.get("HTTP_X_CALL_ID")
    if given:
        return given, False
    return str(uuid.uuid4()), True


def _upstream_headers(
    environ: Environ, call_id: str, started: int, host: str, port: int
) -> list[tuple[str, str]]:
    headers = [("Host", f"{host}:{port}")]
    for key, value in environ.items():
        if not key.startswith("HTTP_"):
            continue
        name = key[5:].replace("_", "-").title()
        if name.lower() in HOP_BY_HOP or name == "Host":
            continue
        headers.append((name, value))
    if environ.get("CONTENT_TYPE"):
        headers.append(("Content-Type", environ["CONTENT_TYPE"]))

    present = {name.lower() for name, _ in headers}
    if "x-call-id" not in present:
        headers.append(("X-Call-Id", call_id))
    headers.append(("X-Start-Time", str(started)))
    if "x-forwarded-host" not in present and environ.get("HTTP_HOST"):
        headers.append(("X-Forwarded-Host", environ["HTTP_HOST"]))
    if "x-forwarded-for" not in present:
        client = f"{environ.get('REMOTE_ADDR', '')}:{environ.get('REMOTE_PORT', '')}"
        headers.append(("X-Forwarded-For", client))
    if "user-agent" not in present:
        headers.append(("User-Agent", "localfaas-gateway"))
    return headers


def _body(environ: Environ) -> bytes | Any:
    length = environ.get("CONTENT_LENGTH")
    stream = environ["wsgi.input"]
    if length and int(length) <= _REPLAYABLE:
        return stream.read(int(length))
    if length:
        return _Sized(stream, int(length))
    # waitress has already de-chunked the body; read what there is.
    return stream.read()


class _Sized:
    """A request body too large to hold: streamed once, Content-Length kept."""

    def __init__(self, stream: Any, length: int) -> None:
        self.stream, self.length = stream, length


def _write_request(
    connection: http.client.HTTPConnection,
    method: str,
    url: str,
    headers: list[tuple[str, str]],
    body: bytes | _Sized,
) -> None:
    connection.putrequest(method, url, skip_host=True, skip_accept_encoding=True)
    for name, value in headers:
        connection.putheader(name, value)
    size = body.length if isinstance(body, _Sized) else len(body)
    if size or method in ("POST", "PUT", "PATCH"):
        connection.putheader("Content-Length", str(size))
    if isinstance(body, bytes):
        connection.endheaders(body or None)
        return

    connection.endheaders()
    left = body.length
    while left > 0:
        chunk = body.stream.read(min(_CHUNK, left))
        if not chunk:
            raise ConnectionAbortedError("client body ended early")
        connection.send(chunk)
        left -= len(chunk)


def _merge(
    ours: list[tuple[str, str]],
    response: http.client.HTTPResponse,
    environ: Environ,
) -> list[tuple[str, str]]:
    # The gateway's headers first; the function's override the same names.
    theirs = [
        (name, value)
        for name, value in response.getheaders()
        if name.lower() not in HOP_BY_HOP
    ]
    names = {name.lower() for name, _ in theirs}
    merged = [(n, v) for n, v in ours if n.lower() not in names] + theirs
    if "content-type" not in names:
        merged.append(("Content-Type", environ.get("CONTENT_TYPE") or "text/plain"))
    return merged


def _not_found(start_response: StartResponse, target: Target) -> list[bytes]:
    # The scale-from-zero pre-check's answer (§9.4): no call-id headers,
    # no metrics, no trailing newline.
    body = (
        f"error finding function {target.qualified}: server returned non-200 "
        f"status code (404) for function, {target.name}, body: "
    ).encode()
    return _answer(
        start_response,
        404,
        body,
        [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(body))),
        ],
    )


def _answer(
    start_response: StartResponse,
    code: int,
    body: bytes,
    headers: list[tuple[str, str]],
) -> list[bytes]:
    start_response(f"{code} {http.client.responses.get(code, '')}", headers)
    return [body]
