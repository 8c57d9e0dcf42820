"""The gateway on uvicorn: function calls on the event loop, the rest in threads.

waitress costs about 200 µs of CPU per request, as much as the function
behind the gateway, on machines where the gateway, the function and the
client share two cores (shared/reference/performance.md). So the gateway
is served by uvicorn, with uvloop and httptools, and ``/function/`` calls
are proxied on its event loop without a thread hop. Everything else the
gateway answers (``/system/``, ``/async-function/``, ``/healthz``,
``/metrics``, redirects, the router's 404s) stays the WSGI
:class:`~localfaas.gateway.Gateway`, run in a thread pool by a2wsgi, so
there is one router and a blocking admin call never stalls the loop.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from typing import Any, cast

import uvicorn
from a2wsgi import WSGIMiddleware
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .errors import ConfigurationError
from .gateway import Gateway, canonical
from .proxy import PREFIX, Receive, Scope, Send, target_of
from .tls import TlsFiles

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is not built for Windows
    uvloop = None  # type: ignore[assignment]

_BACKLOG = 2048


class FastPath:
    """The gateway as one ASGI app: calls proxied here, the rest by WSGI."""

    def __init__(self, gateway: Gateway, *, threads: int) -> None:
        self.gateway = gateway
        self.proxy = gateway.proxy
        self.router = WSGIMiddleware(cast(Any, gateway), workers=threads)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request: a well-formed call natively, else the router."""
        path = scope["path"]
        if scope["type"] == "http" and path.startswith(PREFIX):
            target = target_of(path) if canonical(path) == path else None
            if target is not None:
                await self.proxy.forward(
                    scope, receive, send, target, server_dates=True
                )
                return
        await self.router(cast(Any, scope), cast(Any, receive), cast(Any, send))

    async def aclose(self) -> None:
        """Close the proxy's connections of this loop, before it ends."""
        self.proxy.close_pool()


class GatewayServer:
    """uvicorn serving an ASGI app on a socket bound when it is made.

    Binding up front makes a busy port a ConfigurationError before the
    banner, where uvicorn would exit the process. :meth:`run` blocks until
    :meth:`stop`, Ctrl-C or SIGTERM; after a signal it raises it again
    for the caller's handler, so ``KeyboardInterrupt`` ends a Ctrl-C.
    Calls under way then get ``drain`` seconds to finish before they are
    cut (streams such as followed logs would otherwise hold it open).
    """

    def __init__(
        self,
        app: FastPath,
        host: str,
        port: int,
        *,
        tls: TlsFiles | None = None,
        idle_timeout: float = 60.0,
        drain: float = 5.0,
    ) -> None:
        self.socket = _listen(host, port)
        self.app = app
        config = uvicorn.Config(
            app,
            host=host,
            port=self.port,
            loop="asyncio" if uvloop is None else "uvloop",
            http=_OneSendPerStep,
            ws="none",
            lifespan="off",
            interface="asgi3",
            access_log=False,
            log_level="warning",
            # Handlers are the entry point's business (STYLE.md §7).
            log_config=None,
            # X-Forwarded-* from clients are passed to functions, never
            # taken as the client's address.
            proxy_headers=False,
            server_header=False,
            timeout_keep_alive=max(1, round(idle_timeout)),
            # Typed int by uvicorn, used as asyncio.timeout()'s seconds.
            timeout_graceful_shutdown=drain,  # type: ignore[arg-type]
            backlog=_BACKLOG,
            ssl_certfile=tls.cert if tls else None,
            ssl_keyfile=tls.key if tls else None,
        )
        _load(config, tls)
        self.server = uvicorn.Server(config)

    @property
    def port(self) -> int:
        """The port listened on (the one picked, if 0 was asked for)."""
        return int(self.socket.getsockname()[1])

    def run(self) -> None:
        """Serve until stopped."""
        try:
            with asyncio.Runner(loop_factory=_loop_factory()) as runner:
                runner.run(self._serve())
        finally:
            self.socket.close()

    def stop(self) -> None:
        """Ask :meth:`run` to return after a short drain; any thread."""
        self.server.should_exit = True

    async def _serve(self) -> None:
        # uvicorn's own run(), plus closing the proxy's connections while
        # their loop still runs.
        try:
            await self.server.serve(sockets=[self.socket])
        finally:
            await self.app.aclose()


class _OneSendPerStep(HttpToolsProtocol):
    """uvicorn's httptools protocol, sending an answer's head and body as one.

    uvicorn writes the status line and headers, then the body, in two
    send() calls: two TCP segments, and two wake-ups of the client for
    each answer, which on two shared cores cost the function CPU time.
    Writes made in one step of the loop are joined and sent together.
    """

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        joined = _JoinedWrites(cast(asyncio.Transport, transport), self.loop)
        super().connection_made(cast(asyncio.Transport, joined))


class _JoinedWrites:
    """A transport whose writes go out once per loop step, joined."""

    def __init__(
        self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if pending and not self._transport.is_closing():
            self._transport.write(b"".join(pending))


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    return None if uvloop is None else uvloop.new_event_loop


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=_BACKLOG)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot listen on {host}:{port}: {exc.strerror}",
            hint="choose another port with --port, or stop what uses it",
        ) from exc


def _load(config: uvicorn.Config, tls: TlsFiles | None) -> None:
    # Loading makes the TLS context; broken files fail here, in one line.
    try:
        config.load()
    except (OSError, ssl.SSLError) as exc:
        if tls is None:
            raise
        raise ConfigurationError(
            f"cannot load the TLS certificate {str(tls.cert)!r} and key"
            f" {str(tls.key)!r} ({exc})",
            hint="remove them; localfaas makes new ones on the next start",
        ) from exc
