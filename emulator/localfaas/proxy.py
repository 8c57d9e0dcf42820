"""Forwarding ``/function/`` calls to a function's process, on an event loop.

This is the gateway's hot path, written for ASGI so that it runs on the
server's event loop: it finds a ready replica without leaving the loop,
sends the call over a pool of persistent HTTP/1.1 connections (the head
and a small body in one write, the answer parsed by httptools), and
streams the answer back as it arrives. What the function and the client
see follows the OpenFaaS gateway (gateway-contract.md §9): the path after
the name and the raw query, ``X-Call-Id`` (kept when the client sent one),
``X-Start-Time`` in nanoseconds, ``X-Forwarded-Host`` and
``X-Forwarded-For`` (``ip:port``) when absent, hop-by-hop headers removed
both ways, redirects passed back rather than followed.

The router decides which paths come here (:func:`target_of` is its rule).
WSGI callers, such as the async queue's worker, reach the same code
through ``a2wsgi.ASGIMiddleware``, so there is one proxy, not two.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any, NamedTuple, cast
from urllib.parse import quote

import httptools

from .deployments import DEFAULT_NAMESPACE
from .metrics import GatewayMetrics

log = logging.getLogger("localfaas.proxy")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Header = tuple[bytes, bytes]
Address = tuple[str, int]
Answer = tuple[int, list[Header], bytes]

# A name segment of a route (openfaas/faas:gateway/main.go, §4).
NAME = re.compile(r"[-a-zA-Z_0-9.]+")
PREFIX = "/function/"

# RFC 9110 §7.6.1, plus the legacy names Go's reverse proxy also strips.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"proxy-connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
# The proxy frames the body itself and names the replica as Host (§9.2).
# It sends the body unasked, so the function never answers 100-continue.
_NOT_FORWARDED = HOP_BY_HOP | {b"host", b"content-length", b"expect"}
# Client headers whose values decide what the proxy adds.
_NOTED = frozenset(
    {
        b"host",
        b"content-length",
        b"transfer-encoding",
        b"connection",
        b"content-type",
        b"x-call-id",
        b"x-forwarded-host",
        b"x-forwarded-for",
        b"user-agent",
    }
)
_USER_AGENT = b"localfaas-gateway"
# The methods the provider proxies; others are its 405 (§9.2).
_METHODS = {
    name: name.encode()
    for name in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD")
}
_WITH_BODY = frozenset({b"POST", b"PUT", b"PATCH"})
# The gateway's reply headers are set before the function's are copied,
# so a function header of the same name replaces them (§9.3). Answer
# headers map to a mark when seen, or to _DROP.
_MARKS = {b"x-call-id": 1, b"x-start-time": 2, b"x-served-by": 4}
_CONTENT_TYPE = 8
_DROP = -1
RETURNED = {
    **_MARKS,
    b"content-type": _CONTENT_TYPE,
    **dict.fromkeys(HOP_BY_HOP, _DROP),
}
# Where the server adds its own Date, the function's would be a second one.
RETURNED_DATED = {**RETURNED, b"date": _DROP}
# What Go leaves unescaped in a path: RFC 3986 pchar, and "/".
_PATH_SAFE = "/:@!$&'()*+,;=~"
_PLAIN = (b"content-type", b"text/plain; charset=utf-8")
_INTERNAL = (b"x-openfaas-internal", b"proxy")

# Bodies up to this size are held so a call on a stale keep-alive
# connection can be sent again; larger ones stream through once.
_REPLAYABLE = 1024 * 1024
# Unsent answer bytes held before reading from the function pauses.
_HIGH_WATER = 256 * 1024
# Idle connections kept per replica, as the Go gateway's
# max_idle_conns_per_host (§3).
_IDLE_PER_REPLICA = 1024
# Call ids made from one read of the OS's randomness.
_IDS_PER_READ = 256


class UnknownFunction(Exception):
    """No function of that name is deployed."""


class Unreachable(Exception):
    """The function is deployed but none of its processes answers."""


class _ClientGone(Exception):
    """The client disconnected before its call was over."""


class _Lost(ConnectionError):
    """The function's connection closed before its whole answer arrived."""

    def __init__(self, answered: bool, cause: BaseException | None) -> None:
        self.answered = answered
        super().__init__(f"connection closed ({cause or 'by the function'})")


class _BadAnswer(ConnectionError):
    """The function's answer is not HTTP/1.1 the parser accepts."""


Resolver = Callable[[str], Address]
Locator = Callable[[str], "Address | None"]


class Target(NamedTuple):
    """Where a ``/function/`` path points: function, namespace, rest."""

    name: str
    namespace: str
    path: str
    qualified: str


def split_target(segment: str, rest: str, default_namespace: str) -> Target:
    """``figlet.openfaas-fn`` + ``/a/b`` -> figlet, openfaas-fn, /a/b.

    The namespace is after the LAST dot (§9.1): ``dev.figlet.ns`` is the
    function ``dev.figlet`` in ``ns``.
    """
    name, dot, namespace = segment.rpartition(".")
    if not dot:
        name, namespace = segment, default_namespace
    return Target(name, namespace, rest or "/", f"{name}.{namespace}")


def target_of(path: str) -> Target | None:
    """The call a decoded ``/function/...`` path makes; None if no name."""
    segment, slash, rest = path[len(PREFIX) :].partition("/")
    if not NAME.fullmatch(segment):
        return None
    return split_target(segment, slash + rest, DEFAULT_NAMESPACE)


class Proxy:
    """Sends one call to a replica and streams the answer back.

    ``locate`` answers at once with a ready replica, or None when the
    caller must wait; ``resolve`` may block until one is ready (scale from
    zero), so it runs in the loop's executor. Both raise
    ``UnknownFunction`` and ``Unreachable``. Connections are pooled per
    event loop, so one proxy serves the server's loop and a WSGI bridge's.
    """

    def __init__(
        self,
        resolve: Resolver,
        metrics: GatewayMetrics,
        *,
        timeout: float,
        served_by: str,
        locate: Locator | None = None,
    ) -> None:
        self.resolve = resolve
        self.locate = locate
        self.metrics = metrics
        self.timeout = timeout
        self.served_by = served_by.encode()
        self._pools: dict[asyncio.AbstractEventLoop, _Pool] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry for a path the router has matched as a function call."""
        target = target_of(scope["path"])
        if target is None:
            raise LookupError(f"not a function call: {scope['path']!r}")
        await self.forward(scope, receive, send, target)

    async def forward(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        target: Target,
        *,
        server_dates: bool = False,
    ) -> None:
        """Answer ``scope`` with ``target``'s answer, or the gateway's error.

        ``server_dates``: the server adds ``Date`` to every answer (uvicorn
        does), so the function's is dropped rather than sent twice.
        """
        started = time.time_ns()
        try:
            address = self._ready(target.name) or await self._wait(target.name)
        except UnknownFunction:
            await _reply(send, not_found(target))
            return
        except Unreachable:
            self.metrics.started(target.qualified)
            await self._answer(send, target, started, unreachable(target))
            return

        self.metrics.started(target.qualified)
        pool = self.pool()
        call = _Call(scope, address, started, self.served_by, pool.call_ids)
        method = _METHODS.get(scope["method"])
        if method is None:
            await self._answer(send, target, started, refused_method(call.ours))
            return

        marks = RETURNED_DATED if server_dates else RETURNED
        exchange = _Exchange(pool, call, method, target, marks)
        status = await exchange.run(receive, send)
        self._record(target, status, started)

    def pool(self) -> _Pool:
        """The connections of the running event loop."""
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            pool = self._pools[loop] = _Pool(loop, self.timeout)
        return pool

    def close_pool(self) -> None:
        """Close the running event loop's connections, before the loop ends."""
        pool = self._pools.pop(asyncio.get_running_loop(), None)
        if pool is not None:
            pool.close()

    def _ready(self, name: str) -> Address | None:
        return self.locate(name) if self.locate is not None else None

    async def _wait(self, name: str) -> Address:
        # Only a function scaled to zero, or between replicas, gets here:
        # the wait for a replica blocks, so it runs in a worker thread.
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.resolve, name)

    async def _answer(
        self, send: Send, target: Target, started: int, answer: Answer
    ) -> None:
        await _reply(send, answer)
        self._record(target, answer[0], started)

    def _record(self, target: Target, code: int, started: int) -> None:
        seconds = (time.time_ns() - started) / 1e9
        self.metrics.finished(target.qualified, code, seconds)


class _Call:
    """One client request, as the function is to receive it."""

    __slots__ = (
        "address",
        "chunked",
        "content_type",
        "forwarded",
        "length",
        "ours",
        "path",
    )

    def __init__(
        self,
        scope: Scope,
        address: Address,
        started: int,
        served_by: bytes,
        call_ids: Iterator[bytes],
    ) -> None:
        self.address = address
        self.path = _upstream_path(scope)
        noted = self._copy_headers(scope["headers"])
        self.content_type = noted.get(b"content-type")
        # Transfer-Encoding overrides Content-Length (RFC 9112 §6.3).
        self.chunked = b"transfer-encoding" in noted
        self.length = None if self.chunked else noted.get(b"content-length")

        start = b"%d" % started
        self.ours = [(b"x-start-time", start), (b"x-served-by", served_by)]
        call_id = noted.get(b"x-call-id")
        if not call_id:
            call_id = next(call_ids)
            self.ours.insert(0, (b"x-call-id", call_id))
            self.forwarded += (b"x-call-id: ", call_id, b"\r\n")
        self.forwarded += (b"x-start-time: ", start, b"\r\n")
        self._add_forwarding(noted, scope.get("client"))

    @property
    def has_body(self) -> bool:
        """Whether the client sends a body at all (RFC 9112 §6.3)."""
        return self.chunked or self.length not in (None, b"0")

    def head(self, method: bytes, framing: bytes) -> bytes:
        """The request line and headers, ready to write."""
        host, port = self.address
        line = b"%s %s HTTP/1.1\r\nhost: %s:%d\r\n" % (
            method,
            self.path,
            host.encode(),
            port,
        )
        return b"".join((line, *self.forwarded, framing, b"\r\n"))

    def _copy_headers(self, headers: list[Header]) -> dict[bytes, bytes]:
        self.forwarded: list[bytes] = []
        noted: dict[bytes, bytes] = {}
        for name, value in headers:
            if name in _NOTED:
                noted.setdefault(name, value)
            if name not in _NOT_FORWARDED:
                self.forwarded += (name, b": ", value, b"\r\n")

        # Headers named in Connection belong to this hop too (RFC 9110
        # §7.6.1); an empty X-Call-Id is replaced, not sent twice.
        if b"connection" in noted or noted.get(b"x-call-id") == b"":
            dropped = _named_in(noted.get(b"connection", b""))
            if noted.get(b"x-call-id") == b"":
                dropped.add(b"x-call-id")
            self.forwarded = _without(self.forwarded, dropped)
        return noted

    def _add_forwarding(
        self, noted: dict[bytes, bytes], client: tuple[str, int] | None
    ) -> None:
        added = self.forwarded
        host = noted.get(b"host")
        if host and b"x-forwarded-host" not in noted:
            added += (b"x-forwarded-host: ", host, b"\r\n")
        if b"x-forwarded-for" not in noted:
            ip, port = client or ("", "")
            added += (b"x-forwarded-for: ", f"{ip}:{port}".encode(), b"\r\n")
        if b"user-agent" not in noted:
            added += (b"user-agent: ", _USER_AGENT, b"\r\n")


class _Exchange:
    """One call on the wire: sent (again once, if the connection was
    stale), then its answer relayed to the client as it arrives."""

    def __init__(
        self,
        pool: _Pool,
        call: _Call,
        method: bytes,
        target: Target,
        marks: dict[bytes, int],
    ) -> None:
        self.pool = pool
        self.call = call
        self.method = method
        self.target = target
        self.marks = marks

    async def run(self, receive: Receive, send: Send) -> int:
        """Relay the call; the status the client got, for the metrics."""
        body, more = b"", False
        try:
            if self.call.has_body:
                body, more = await self._read_body(receive)
            connection = await self._send(body, more, receive)
        except _ClientGone:
            return 502
        except ConnectionRefusedError:
            return await _reply_with(send, unreachable(self.target))
        except OSError as exc:
            log.warning("function %s failed: %s", self.target.qualified, exc)
            return await _reply_with(send, failed(self.call.ours))
        try:
            return await self._relay(connection, receive, send)
        finally:
            self.pool.release(connection)

    async def _read_body(self, receive: Receive) -> tuple[bytes, bool]:
        # Read up to the replayable size: the whole body of most calls.
        parts: list[bytes] = []
        size, more = 0, True
        while more and size <= _REPLAYABLE:
            part, more = await _receive_body(receive)
            parts.append(part)
            size += len(part)
        return b"".join(parts), more

    async def _send(self, body: bytes, more: bool, receive: Receive) -> _Connection:
        framing, chunked = self._framing(body, more)
        first = self.call.head(self.method, framing) + _frame(body, chunked, more)
        head_only = self.method == b"HEAD"
        for attempt in range(2):
            connection = self.pool.take(self.call.address)
            reused = connection is not None
            if connection is None:
                connection = await self.pool.connect(self.call.address)
            connection.begin(head_only)
            connection.write(first)
            try:
                if more:
                    await _stream_body(connection, receive, chunked)
                if not connection.headers_done:
                    await connection.response()
            except _Lost as exc:
                self.pool.release(connection)
                # A keep-alive connection the function closed while idle:
                # send again on a fresh one, if the body can be sent again.
                if attempt or not reused or more or exc.answered:
                    raise
                continue
            except BaseException:
                self.pool.release(connection)
                raise
            return connection
        raise AssertionError("unreachable")

    def _framing(self, body: bytes, more: bool) -> tuple[bytes, bool]:
        if more and self.call.length is not None:
            return b"content-length: %s\r\n" % self.call.length, False
        if more:
            return b"transfer-encoding: chunked\r\n", True
        if body or self.method in _WITH_BODY:
            return b"content-length: %d\r\n" % len(body), False
        return b"", False

    async def _relay(
        self, connection: _Connection, receive: Receive, send: Send
    ) -> int:
        headers = reply_headers(
            connection.headers, self.call.ours, self.call.content_type, self.marks
        )
        await send(
            {
                "type": "http.response.start",
                "status": connection.status,
                "headers": headers,
            }
        )
        watch: asyncio.Future[None] | None = None
        try:
            while True:
                data = connection.take() or await connection.read()
                if connection.finished:
                    await send({"type": "http.response.body", "body": data})
                    break
                await send(
                    {"type": "http.response.body", "body": data, "more_body": True}
                )
                watch = watch or _watch(receive, connection)
        except _ClientGone:
            log.info("client left during the answer of %s", self.target.qualified)
        except OSError as exc:
            # The status is sent: closing the client's connection, which
            # the server does, is the only way left to say it broke.
            log.warning("answer of %s cut short: %s", self.target.qualified, exc)
        finally:
            if watch is not None:
                watch.cancel()
        return connection.status


def reply_headers(
    theirs: list[Header],
    ours: list[Header],
    request_type: bytes | None,
    marks: dict[bytes, int],
) -> list[Header]:
    """The client's answer headers: the gateway's, then the function's.

    A function header replaces the gateway's of the same name, and
    Content-Type is always set: the function's, else the request's, else
    ``text/plain`` (§9.3). ``marks`` is RETURNED or RETURNED_DATED.
    """
    copied: list[Header] = []
    seen = 0
    for name, value in theirs:
        name = name.lower()
        mark = marks.get(name, 0)
        if mark == _DROP:
            continue
        seen |= mark
        copied.append((name, value))
    headers = [pair for pair in ours if not seen & _MARKS[pair[0]]]
    headers += copied
    if not seen & _CONTENT_TYPE:
        headers.append((b"content-type", request_type or b"text/plain"))
    return headers


def not_found(target: Target) -> Answer:
    """The scale-from-zero pre-check's 404 (§9.4).

    No call-id headers, no metrics, no trailing newline.
    """
    body = (
        f"error finding function {target.qualified}: server returned non-200 "
        f"status code (404) for function, {target.name}, body: "
    ).encode()
    return 404, [_PLAIN, _length(body)], body


def unreachable(target: Target) -> Answer:
    """The provider's 500 when no process of the function answers (§9.4)."""
    body = f"Can't reach service for: {target.name}.\n".encode()
    nosniff = (b"x-content-type-options", b"nosniff")
    return 500, [_PLAIN, nosniff, _INTERNAL, _length(body)], body


def failed(ours: list[Header]) -> Answer:
    """The gateway's 502 on a timeout or a broken answer: empty, call ids."""
    return 502, [*ours, _length(b"")], b""


def refused_method(ours: list[Header]) -> Answer:
    """The provider's 405 for a method it does not proxy (§9.2)."""
    return 405, [*ours, _INTERNAL, _length(b"")], b""


class _Pool:
    """Idle connections per replica address, for one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.loop = loop
        self.timeout = timeout
        self.idle: dict[Address, list[_Connection]] = {}
        self.busy: set[_Connection] = set()
        self.call_ids = _call_ids()
        # Deadlines are checked a few times per timeout, not timed one by
        # one: a timer per call costs more than the check.
        self._period = min(1.0, max(timeout / 4, 0.01))
        self._sweep: asyncio.TimerHandle | None = None

    def take(self, address: Address) -> _Connection | None:
        """An idle connection to ``address`` that served a call before."""
        idle = self.idle.get(address)
        while idle:
            connection = idle.pop()
            if not connection.closed:
                return connection
        return None

    async def connect(self, address: Address) -> _Connection:
        """A new connection to ``address``."""
        host, port = address
        _, connection = await asyncio.wait_for(
            self.loop.create_connection(lambda: _Connection(self, address), host, port),
            self.timeout,
        )
        return connection

    def started(self, connection: _Connection) -> None:
        """Give ``connection``'s call until the timeout to be answered."""
        connection.deadline = self.loop.time() + self.timeout
        self.busy.add(connection)
        if self._sweep is None:
            self._sweep = self.loop.call_later(self._period, self._expire_late)

    def _expire_late(self) -> None:
        now = self.loop.time()
        for connection in [c for c in self.busy if c.deadline <= now]:
            connection.expire()
        self._sweep = None
        if self.busy:
            self._sweep = self.loop.call_later(self._period, self._expire_late)

    def release(self, connection: _Connection) -> None:
        """Keep ``connection`` for the next call, or close it."""
        if not connection.end():
            return
        idle = self.idle.setdefault(connection.address, [])
        if len(idle) >= _IDLE_PER_REPLICA:
            connection.close()
            return
        idle.append(connection)

    def close(self) -> None:
        """Close every idle connection; busy ones close as their calls end."""
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        idle, self.idle = self.idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close()

    def forget(self, connection: _Connection) -> None:
        """Drop a connection that closed while idle."""
        idle = self.idle.get(connection.address)
        if idle and connection in idle:
            idle.remove(connection)
        if not idle:
            # Replicas come and go on new ports; keep no empty lists.
            self.idle.pop(connection.address, None)


class _Connection(asyncio.Protocol):
    """One persistent HTTP/1.1 connection to a replica; one call at a time.

    httptools parses the answer as bytes arrive; the exchange waits for
    its head, then takes the body in pieces. Reading pauses while more
    than ``_HIGH_WATER`` bytes wait for a slow client.
    """

    # The state of the call under way, reset by each begin().
    head_only: bool
    answered: bool
    status: int
    headers: list[Header]
    headers_done: bool
    interim: bool
    done: bool
    keep_alive: bool
    expired: bool
    error: BaseException | None
    chunks: list[bytes]
    buffered: int
    paused: bool

    def __init__(self, pool: _Pool, address: Address) -> None:
        self.pool = pool
        self.address = address
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.busy = False
        self.generation = 0
        self.deadline = 0.0
        self._waiter: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._start(head_only=False)

    # -- the call, as the exchange drives it --------------------------------

    def begin(self, head_only: bool) -> None:
        """Start a call, to be answered within the pool's timeout."""
        self._start(head_only)
        self.busy = True
        self.generation += 1
        self.pool.started(self)

    def write(self, data: bytes) -> None:
        """Send request bytes; dropped once the connection has closed."""
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    async def drain(self) -> None:
        """Wait while the function reads the request slower than we send."""
        if self._drained is not None:
            await self._drained

    async def response(self) -> None:
        """Wait for the answer's status and headers."""
        while not self.headers_done:
            if self.error is not None:
                raise self.error
            await self._wait()

    async def read(self) -> bytes:
        """The answer's next bytes; b"" with ``finished`` at its end."""
        while not self.chunks and not self.done:
            if self.error is not None:
                raise self.error
            await self._wait()
        return self.take()

    def take(self) -> bytes:
        """The answer bytes already here, without waiting."""
        chunks = self.chunks
        if not chunks:
            return b""
        self.chunks = []
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    @property
    def finished(self) -> bool:
        """The whole answer has been read."""
        return self.done and not self.chunks

    def end(self) -> bool:
        """Close the call; True if the connection can carry another."""
        self.busy = False
        self.pool.busy.discard(self)
        if self.closed:
            return False
        if self.done and self.keep_alive and self.error is None:
            return True
        # Unread answer bytes would corrupt the next call on it.
        self.close()
        return False

    def abandon(self, generation: int) -> None:
        """Drop the call ``generation`` if it still runs (client gone)."""
        if self.busy and generation == self.generation:
            self._fail(_ClientGone())
            self.close()

    def expire(self) -> None:
        """End the call: its deadline has passed."""
        self.expired = True
        self.close()

    def close(self) -> None:
        """Close at once, dropping whatever is buffered."""
        if self.transport is not None:
            self.transport.abort()

    # -- asyncio.Protocol ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports have asyncio.Transport's methods, not its type.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if not self.busy:
            # A function that speaks unasked cannot be trusted with a call.
            self.close()
            return
        self.answered = True
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._fail(_BadAnswer(f"unreadable answer: {exc!r}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        if not self.busy:
            self.pool.forget(self)
        elif not self.done and self.headers_done and self._until_close():
            # No length and not chunked: the close ends the body (RFC 9112
            # §6.3, item 8).
            self.done = True
            self.keep_alive = False
            self._wake()
        elif not self.done:
            if self.expired:
                self._fail(TimeoutError("the function did not answer in time"))
            else:
                self._fail(_Lost(self.answered, exc))

    def pause_writing(self) -> None:
        self._drained = self.pool.loop.create_future()

    def resume_writing(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        self._drained = None

    # -- httptools callbacks ------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:
            # 1xx answers are interim (RFC 9110 §15.2); the final follows.
            self.headers = []
            self.interim = True
            return
        self.status = status
        self.headers_done = True
        if self.head_only:
            # The answer to HEAD has no body whatever its Content-Length
            # says, which the parser cannot know: start a fresh one.
            self.done = True
            self.keep_alive = self.parser.should_keep_alive()
            self.parser = httptools.HttpResponseParser(self)
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self.done:
            return
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > _HIGH_WATER and not self.paused:
            self.paused = True
            if self.transport is not None:
                self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        if self.done:
            return
        self.done = True
        self.keep_alive = self.parser.should_keep_alive()
        self._wake()

    # -- internals ----------------------------------------------------------

    def _start(self, head_only: bool) -> None:
        self.head_only = head_only
        self.answered = False
        self.status = 0
        self.headers = []
        self.headers_done = False
        self.interim = False
        self.done = False
        self.keep_alive = False
        self.expired = False
        self.error = None
        self.chunks = []
        self.buffered = 0
        self.paused = False

    async def _wait(self) -> None:
        waiter = self._waiter = self.pool.loop.create_future()
        await waiter

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _fail(self, error: BaseException) -> None:
        # The first failure is the cause; the close that follows it is not.
        if self.error is None:
            self.error = error
        self._wake()

    def _until_close(self) -> bool:
        names = {name.lower() for name, _ in self.headers}
        return not names & {b"content-length", b"transfer-encoding"}


async def _receive_body(receive: Receive) -> tuple[bytes, bool]:
    message = await receive()
    if message["type"] != "http.request":
        raise _ClientGone
    return message.get("body", b""), message.get("more_body", False)


async def _stream_body(
    connection: _Connection, receive: Receive, chunked: bool
) -> None:
    # The rest of a body too large to hold, sent on as it arrives.
    more = True
    while more:
        part, more = await _receive_body(receive)
        connection.write(_frame(part, chunked, more))
        await connection.drain()


def _frame(part: bytes, chunked: bool, more: bool) -> bytes:
    if not chunked:
        return part
    framed = b"%x\r\n%s\r\n" % (len(part), part) if part else b""
    return framed if more else framed + b"0\r\n\r\n"


def _watch(receive: Receive, connection: _Connection) -> asyncio.Future[None]:
    # While an answer streams, the client's departure shows up only as a
    # pending receive() returning http.disconnect: then stop reading from
    # the function and free its connection.
    generation = connection.generation
    watch = asyncio.ensure_future(_disconnect(receive))

    def left(done: asyncio.Future[None]) -> None:
        if not done.cancelled() and done.exception() is None:
            connection.abandon(generation)

    watch.add_done_callback(left)
    return watch


async def _disconnect(receive: Receive) -> None:
    # The request's own last message may still be waiting to be taken.
    while (await receive())["type"] != "http.disconnect":
        pass


def _call_ids() -> Iterator[bytes]:
    # UUID version 4 (RFC 9562 §5.4), as the gateway's X-Call-Id; one
    # getrandom() call per _IDS_PER_READ ids instead of one per call.
    while True:
        randomness = bytearray(os.urandom(16 * _IDS_PER_READ))
        for start in range(0, len(randomness), 16):
            raw = randomness[start : start + 16]
            raw[6] = raw[6] & 0x0F | 0x40
            raw[8] = raw[8] & 0x3F | 0x80
            text = raw.hex()
            call_id = f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
            yield call_id.encode()


def _upstream_path(scope: Scope) -> bytes:
    # The raw path keeps the client's escaping; a path with escapes is
    # cut from the decoded one and escaped again, as Go does (§9.2).
    raw = scope.get("raw_path")
    if raw and b"%" not in raw:
        slash = raw.find(b"/", len(PREFIX))
        path = raw[slash:] if slash > 0 else b"/"
    else:
        _, slash, rest = scope["path"][len(PREFIX) :].partition("/")
        path = quote(slash + rest or "/", safe=_PATH_SAFE).encode()
    query = scope.get("query_string")
    return path + b"?" + query if query else path


def _named_in(connection: bytes) -> set[bytes]:
    tokens = {token.strip().lower() for token in connection.split(b",")}
    return tokens - {b"", b"close", b"keep-alive"}


def _without(pieces: list[bytes], names: set[bytes]) -> list[bytes]:
    # ``pieces`` holds name, ": ", value, CRLF per header.
    kept: list[bytes] = []
    for index in range(0, len(pieces), 4):
        if pieces[index] not in names:
            kept += pieces[index : index + 4]
    return kept


def _length(body: bytes) -> Header:
    return b"content-length", b"%d" % len(body)


async def _reply(send: Send, answer: Answer) -> None:
    status, headers, body = answer
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _reply_with(send: Send, answer: Answer) -> int:
    await _reply(send, answer)
    return answer[0]
