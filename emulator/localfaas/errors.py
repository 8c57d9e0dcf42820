"""What can go wrong in localfaas, as one small tree of exceptions.

::

    LocalfaasError              a failure the user can act on; has .hint
    ├── ConfigurationError      a setting, flag or file that cannot be used
    ├── GatewayUnreachable      no HTTP answer from the gateway at .url
    ├── RequestFailed           the gateway answered with .status and .body
    │   └── Unauthorized        401 on /system/: admin credentials missing
    │                           or wrong
    └── DeployFailed            a function could not be built or started

The message says what happened and repeats the value the user gave; the
``hint``, when there is one, says what to do next. The CLI's single error
boundary (``localfaas.cli``) prints both, ``Error: <message>`` and
``Hint: <hint>``, and exits with status 1. Code that catches a library's
error raises one of these *from* it, so the original stays as the cause.
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "DeployFailed",
    "GatewayUnreachable",
    "LocalfaasError",
    "RequestFailed",
    "Unauthorized",
]


class LocalfaasError(Exception):
    """A failure the user can act on: a message and, maybe, a hint."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class ConfigurationError(LocalfaasError):
    """A setting, flag or file that cannot be used as given."""


class GatewayUnreachable(LocalfaasError):
    """No HTTP answer from the gateway: refused, timed out, TLS failed."""

    def __init__(self, url: str, reason: str, *, hint: str | None = None) -> None:
        super().__init__(
            f"cannot reach the gateway at {url}: {reason}",
            hint=hint or "start it with: localfaas up",
        )
        self.url = url
        self.reason = reason


class RequestFailed(LocalfaasError):
    """The gateway answered, but not with a status the request accepts."""

    def __init__(
        self,
        status: int,
        body: bytes,
        message: str | None = None,
        *,
        hint: str | None = None,
    ) -> None:
        # faas-cli's own wording, so scripts that grep for it keep working.
        text = body.decode("utf-8", errors="replace").rstrip("\n")
        default = f"server returned unexpected status code: {status} - {text}"
        super().__init__(message or default, hint=hint)
        self.status = status
        self.body = body


class Unauthorized(RequestFailed):
    """The gateway refused the admin credentials on ``/system/`` (401)."""

    def __init__(self, url: str, body: bytes = b"") -> None:
        super().__init__(
            401,
            body,
            f'unauthorized at {url}: run "faas-cli login" or pass --user/--password',
        )
        self.url = url


class DeployFailed(LocalfaasError):
    """A function could not be built, started or made healthy."""
