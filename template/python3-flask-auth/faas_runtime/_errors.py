"""Why a request was refused, and how the refusal looks on the wire.

The tree::

    AuthError            the request is not allowed (a 4xx; the reason is logged,
    ├── Unauthorized     never sent): no or bad credentials, a bad signature (401)
    ├── BadRequest       credentials present but malformed, RFC 6750's
    │                    invalid_request (400)
    └── Forbidden        authenticated, but not allowed (403)
    ConfigError          the function is misconfigured: a missing secret, an
                         unknown scheme, a bad setting (500). Fails closed.

Every way a signature or token can be wrong raises the same class with the
same body, so a caller learns nothing from the answer; the ``reason`` goes to
the function's log only and must never contain a secret or the credential
that was presented.
"""

from __future__ import annotations


class AuthError(Exception):
    """The request is not allowed; ``reason`` is for the log only."""

    status = 401
    body = b"Unauthorized"

    def __init__(
        self, reason: str, *, headers: list[tuple[str, str]] | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.headers = headers or []


class Unauthorized(AuthError):
    """No credentials, or credentials that do not verify (401)."""


class BadRequest(AuthError):
    """Credentials sent in a malformed way (400, RFC 6750 invalid_request)."""

    status = 400
    body = b"Bad Request"


class Forbidden(AuthError):
    """Valid credentials that are not allowed here (403)."""

    status = 403
    body = b"Forbidden"


class ConfigError(Exception):
    """The function's auth settings or secrets are unusable (500).

    The message names the setting or secret file and what to do about it;
    it never contains a secret value.
    """
