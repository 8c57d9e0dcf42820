"""Authentication in front of the handler, configured from the environment.

``auth_scheme`` names one scheme, or several separated by commas (any one of
them admits the request), or ``none``. Unset is a configuration error: an
auth template that silently let everything through would be the open door
it exists to close. Any configuration or secret problem answers 500 and logs
why; no request reaches the handler unless a verifier returned an identity.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from . import _schemes
from ._errors import AuthError, ConfigError, Unauthorized
from ._types import AuthRequest, Headers, Identity, Verifier
from ._wsgi import Environ, StartResponse, WSGIApp, simple_response

log = logging.getLogger("faas_runtime.auth")

ENVIRON_KEY = "faas_runtime.identity"
_BODY_KEY = "faas_runtime.body"
MISCONFIGURED = b"Function auth is misconfigured; see the function's logs.\n"

current: ContextVar[Identity | None] = ContextVar("faas_identity", default=None)


def verifiers_from_env(env: Mapping[str, str], secrets_path: Path) -> list[Verifier]:
    """The verifiers ``auth_scheme`` asks for; empty for ``none``."""
    raw = env.get("auth_scheme", "").strip().lower()
    if not raw:
        raise ConfigError(
            "auth_scheme is not set; set it in the function's environment to "
            f"one of {', '.join(sorted(_schemes.DEFAULT_SECRETS))}, or to none "
            "to serve without auth"
        )
    if raw == "none":
        return []

    schemes = [name.strip() for name in raw.split(",") if name.strip()]
    options = {
        key[len("auth_") :]: value
        for key, value in env.items()
        if key.startswith("auth_") and key != "auth_scheme"
    }
    if "secret" in options and len(schemes) > 1:
        raise ConfigError(
            "auth_secret names one secret but auth_scheme lists several "
            f"schemes ({raw}); drop auth_secret so each scheme reads its "
            "default secret"
        )
    return [_schemes.build(name, options, secrets_path) for name in schemes]


def read_body(environ: Environ) -> bytes:
    """Read the whole request body and leave a rewound copy for the app."""
    cached: bytes | None = environ.get(_BODY_KEY)
    if cached is not None:
        return cached

    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH")
    if length == "0":
        environ[_BODY_KEY] = b""
        return b""
    body: bytes = stream.read(int(length)) if length else stream.read()
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    environ[_BODY_KEY] = body
    return body


def request_from_environ(environ: Environ, body: bytes = b"") -> AuthRequest:
    """The parts of a WSGI request a verifier may look at."""
    return AuthRequest(
        environ.get("REQUEST_METHOD", "GET"),
        environ.get("PATH_INFO", "/"),
        environ.get("QUERY_STRING", ""),
        Headers.from_environ(environ),
        body,
    )


def check(verifiers: list[Verifier], request: AuthRequest) -> Identity:
    """The identity from the first verifier that accepts ``request``.

    When every scheme refuses, a 400 or 403 (credentials were sent but are
    malformed or not allowed) says more than a 401 and wins; otherwise the
    401 carries every scheme's challenge, as RFC 9110 §11.6.1 allows.
    """
    if len(verifiers) == 1:
        # The usual case, and the hot path: one scheme's own refusal is
        # already the answer.
        return verifiers[0].verify(request)

    refusals: list[AuthError] = []
    for verifier in verifiers:
        try:
            return verifier.verify(request)
        except AuthError as exc:
            refusals.append(exc)

    for refusal in refusals:
        if refusal.status != 401:
            raise refusal
    challenges = [h for refusal in refusals for h in refusal.headers]
    reasons = "; ".join(refusal.reason for refusal in refusals)
    raise Unauthorized(reasons, headers=challenges)


def refusal_response(
    exc: AuthError | ConfigError, environ: Environ, start_response: StartResponse
) -> list[bytes]:
    """Log why, and answer without saying why."""
    call_id = environ.get("HTTP_X_CALL_ID", "-")
    if isinstance(exc, ConfigError):
        log.error("auth misconfigured: %s call_id=%s", exc, call_id)
        return simple_response(start_response, 500, MISCONFIGURED)
    log.warning(
        "auth refused status=%d reason=%s path=%s call_id=%s",
        exc.status,
        exc.reason,
        environ.get("PATH_INFO"),
        call_id,
    )
    return simple_response(start_response, exc.status, exc.body, exc.headers)


class AuthMiddleware:
    """WSGI middleware: only authenticated requests reach ``app``."""

    def __init__(
        self,
        app: WSGIApp,
        verifiers: list[Verifier] | None,
        *,
        error: ConfigError | None = None,
    ) -> None:
        self.app = app
        self.verifiers = verifiers or []
        self.error = error
        self.needs_body = any(v.needs_body for v in self.verifiers)

    @classmethod
    def from_env(
        cls, app: WSGIApp, env: Mapping[str, str], secrets_path: Path
    ) -> AuthMiddleware:
        """Configure from ``auth_*`` variables; a bad setting fails closed."""
        try:
            verifiers = verifiers_from_env(env, secrets_path)
        except ConfigError as exc:
            log.error("auth misconfigured, every request gets 500: %s", exc)
            return cls(app, None, error=exc)

        names = ", ".join(v.scheme for v in verifiers) or "none"
        log.info("auth schemes: %s", names)
        return cls(app, verifiers)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Any:
        if self.error is not None:
            return refusal_response(self.error, environ, start_response)
        if not self.verifiers:
            return self.app(environ, start_response)

        body = read_body(environ) if self.needs_body else b""
        try:
            identity = check(self.verifiers, request_from_environ(environ, body))
        except (AuthError, ConfigError) as exc:
            return refusal_response(exc, environ, start_response)

        environ[ENVIRON_KEY] = identity
        token = current.set(identity)
        try:
            return self.app(environ, start_response)
        finally:
            current.reset(token)
