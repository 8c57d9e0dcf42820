"""The localfaas function runtime: a watchdog on waitress with auth built in.

Templates start it from ``index.py`` with ``run_http()`` or ``run_flask()``.
Handler code may check credentials itself, for one path or one function::

    from faas_runtime import authenticate, requires

    @requires("bearer", secret="api-tokens")
    def handle(event, context):
        return {"statusCode": 200, "body": f"hello {event.auth.subject}"}

    def handle(event, context):          # or per path
        if event.path.startswith("/admin"):
            authenticate(event, "basic", secret="admins")
        ...

A refused check raises an ``AuthError`` that the runtime answers with the
scheme's status and challenge.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from . import _schemes
from ._errors import AuthError, BadRequest, ConfigError, Forbidden, Unauthorized
from ._http import Context, Event, HandlerApp, Query
from ._middleware import current, read_body, request_from_environ
from ._server import configure_logging, serve
from ._settings import Settings
from ._types import AuthRequest, Headers, Identity, Verifier

__all__ = [
    "AuthError",
    "AuthRequest",
    "BadRequest",
    "ConfigError",
    "Context",
    "Event",
    "Forbidden",
    "Headers",
    "Identity",
    "Query",
    "Settings",
    "Unauthorized",
    "Verifier",
    "authenticate",
    "current_identity",
    "requires",
    "run_flask",
    "run_http",
]

log = logging.getLogger("faas_runtime")

F = TypeVar("F", bound=Callable[..., Any])

_verifiers: dict[tuple[str, tuple[tuple[str, str], ...], str], Verifier] = {}
_verifiers_lock = threading.Lock()


def current_identity() -> Identity | None:
    """Who the runtime's auth middleware admitted for this request."""
    return current.get()


def authenticate(event: Event | None, scheme: str, **options: Any) -> Identity:
    """Check the request against ``scheme`` now; raise ``AuthError`` if refused.

    ``options`` are the ``auth_*`` settings without the prefix (``secret``,
    ``realm``, ``header``, ``tolerance``...). ``event`` is the python3-http
    event; pass ``None`` inside a python3-flask handler to check Flask's
    current request.
    """
    verifier = _verifier(scheme, {k: _text(v) for k, v in options.items()})
    request = _request_of(event, verifier.needs_body)
    identity = verifier.verify(request)
    if event is not None:
        event.auth = identity
    return identity


def requires(scheme: str, **options: Any) -> Callable[[F], F]:
    """Decorate a handler so it runs only for requests ``scheme`` accepts."""

    def decorate(handle: F) -> F:
        @functools.wraps(handle)
        def checked(*args: Any, **kwargs: Any) -> Any:
            event = args[0] if args and isinstance(args[0], Event) else None
            authenticate(event, scheme, **options)
            return handle(*args, **kwargs)

        return checked  # type: ignore[return-value]

    return decorate


def run_http(module: str = "function.handler") -> None:
    """Serve a python3-http ``handle(event, context)`` from ``module``."""
    settings = _start()
    serve(HandlerApp(_load(module).handle), settings)


def run_flask(module: str = "function.handler") -> None:
    """Serve a python3-flask ``handle(req)`` from ``module``."""
    from ._flask import make_app

    settings = _start()
    serve(make_app(_load(module).handle), settings)


def _start() -> Settings:
    configure_logging()
    try:
        return Settings.from_env(os.environ)
    except ConfigError as exc:
        log.error("cannot start: %s", exc)
        sys.exit(2)


def _load(module: str) -> Any:
    # An import or syntax error in the handler is the user's to fix: show
    # the traceback and exit non-zero, so the emulator keeps the old
    # version serving and OpenFaaS never marks this one ready.
    try:
        return importlib.import_module(module)
    except Exception:
        log.exception("cannot import the handler %r", module)
        sys.exit(1)


def _verifier(scheme: str, options: dict[str, str]) -> Verifier:
    secrets_path = os.getenv("secret_mount_path") or Settings.secret_mount_path
    key = (scheme, tuple(sorted(options.items())), secrets_path)
    with _verifiers_lock:
        if key not in _verifiers:
            _verifiers[key] = _schemes.build(scheme, options, Path(secrets_path))
        return _verifiers[key]


def _request_of(event: Event | None, needs_body: bool) -> AuthRequest:
    if event is not None:
        return AuthRequest(
            method=event.method,
            path=event.path,
            query=event.environ.get("QUERY_STRING", ""),
            headers=event.headers,
            body=event.body,
        )

    from flask import request

    environ = request.environ
    body = read_body(environ) if needs_body else b""
    return request_from_environ(environ, body)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
