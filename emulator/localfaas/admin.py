"""Who may call the emulator's admin API under ``/system/``.

The gateway wraps its ``/system/`` app in the middleware that
:func:`admin_middleware` picks:

``basic``
    HTTP Basic against the files ``basic-auth-user`` and
    ``basic-auth-password``, refused exactly as the OpenFaaS gateway refuses
    (gateway-contract.md §5), so ``faas-cli login`` and its behaviour after
    ``logout`` are unchanged.
``plugin``
    Delegation to an external auth plugin at ``auth_proxy_url`` (§6): a
    ``GET`` to exactly that URL with the client's headers; exactly 200 lets
    the request through, any other answer goes back to the client as it is.
``none``
    No check at all; refused unless the emulator listens on loopback only.

Passing the body to a plugin (``auth_pass_body``) never worked upstream
(openfaas/faas#1641), so localfaas defines it: the plugin still gets a
``GET`` to the configured URL with the client's headers, and the client's
request body becomes that GET's body, with the client's ``Content-Type`` and
a ``Content-Length`` of its size (an empty body is not sent). The body is
read once, held in memory, and handed to the wrapped app unchanged, so the
app reads the very bytes the plugin judged.

Every middleware here decides before the wrapped app runs, so a client that
is refused never has its body parsed. Refusals are logged on the
``localfaas.admin`` logger, one line each, without credentials or query
strings (a query can carry a token).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import http.client
import io
import ipaddress
import logging
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from pathlib import Path
from urllib.parse import SplitResult, urlsplit
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = [
    "DEFAULT_USER",
    "PASSWORD_FILE",
    "USER_FILE",
    "AdminConfigError",
    "AdminCredentials",
    "BasicAdminAuth",
    "PluginAdminAuth",
    "admin_middleware",
    "is_loopback",
]

logger = logging.getLogger("localfaas.admin")

USER_FILE = "basic-auth-user"
PASSWORD_FILE = "basic-auth-password"  # noqa: S105 - a file name
DEFAULT_USER = "admin"

# The gateway's Basic refusal, byte for byte (openfaas/faas-provider
# auth/basic_auth.go): no trailing newline, so Go sniffs text/plain and
# sends no nosniff header.
BASIC_CHALLENGE = 'Basic realm="Restricted"'
BASIC_REFUSAL = b"invalid credentials"

# RFC 9110 §7.6.1 plus the legacy names Go's reverse proxy also strips.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


class AdminConfigError(ValueError):
    """The admin auth settings or credential files are unusable."""


@dataclass(frozen=True)
class AdminCredentials:
    """The admin user and password, and the folder that holds them."""

    user: str
    password: str = field(repr=False)
    folder: Path
    created: bool = False

    @classmethod
    def load(
        cls,
        folder: Path,
        *,
        user_file: str = USER_FILE,
        password_file: str = PASSWORD_FILE,
    ) -> AdminCredentials:
        """Read both files, trimmed; raise ``AdminConfigError`` if unusable."""
        user = _read_credential(folder / user_file, "user name")
        password = _read_credential(folder / password_file, "password")
        return cls(user, password, folder)

    @classmethod
    def load_or_create(cls, folder: Path) -> AdminCredentials:
        """Read the credentials in ``folder``, first writing any missing file.

        A new folder is made 0700 and new files 0600; the password is random.
        ``created`` tells the caller to print where the files are.
        """
        _make_private_folder(folder)

        new_user = _create_private_file(folder / USER_FILE, DEFAULT_USER)
        password = secrets.token_urlsafe(24)
        new_password = _create_private_file(folder / PASSWORD_FILE, password)

        credentials = cls.load(folder)
        return replace(credentials, created=new_user or new_password)


def _make_private_folder(folder: Path) -> None:
    """Create ``folder`` readable by its owner only, unless it exists."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise AdminConfigError(
            f"cannot create the credentials folder {str(folder)!r} "
            f"({exc.strerror}); create it or choose another secret_mount_path"
        ) from exc


def _create_private_file(path: Path, content: str) -> bool:
    """Write ``content`` to a new 0600 file; False if the file exists."""
    # O_EXCL: never overwrite a user's file, and never write through a
    # symlink planted where the file should be.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        descriptor = os.open(path, flags, 0o600)
    except FileExistsError:
        return False
    except OSError as exc:
        raise AdminConfigError(
            f"cannot create the credential file {str(path)!r} "
            f"({exc.strerror}); check the folder's permissions"
        ) from exc

    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(content)
    return True


def _read_credential(path: Path, what: str) -> str:
    """One credential file's content with surrounding whitespace trimmed."""
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise AdminConfigError(_unreadable(path, what, exc.strerror)) from exc
    except UnicodeDecodeError as exc:
        reason = "not UTF-8 text"
        raise AdminConfigError(_unreadable(path, what, reason)) from exc

    if not value:
        raise AdminConfigError(
            f"the admin {what} file {str(path)!r} is empty; write the "
            f"{what} into it, or delete it and let localfaas generate one"
        )
    return value


def _unreadable(path: Path, what: str, reason: str | None) -> str:
    return (
        f"cannot read the admin {what} from {str(path)!r} ({reason}); "
        f"write the {what} into that file as UTF-8 text"
    )


class BasicAdminAuth:
    """WSGI middleware admitting only requests with the admin's Basic login."""

    logger = logger

    def __init__(
        self,
        app: WSGIApplication,
        credentials: AdminCredentials,
    ) -> None:
        self.app = app
        self._user = _digest(credentials.user.encode("utf-8"))
        self._password = _digest(credentials.password.encode("utf-8"))

    def __call__(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        """Run the wrapped app if the credentials match, else refuse (401)."""
        reason = self._refusal(environ.get("HTTP_AUTHORIZATION", ""))
        if reason is None:
            return self.app(environ, start_response)

        _log_refusal(self.logger, environ, reason)
        return _basic_refusal(start_response)

    def _refusal(self, authorization: str) -> str | None:
        """Why an ``Authorization`` value is refused, or None if it is not."""
        scheme, _, value = authorization.strip().partition(" ")
        if not scheme:
            return "no credentials"

        # The scheme name is case-insensitive (RFC 9110 §11.1). Anything
        # else, faas-cli's "Bearer " after logout included, gets the same
        # refusal (gateway-contract.md §5). The scheme is not logged: a
        # client that sends a bare token would have it logged.
        if scheme.lower() != "basic":
            return "not Basic credentials"

        pair = _decode_basic(value.strip())
        if pair is None:
            return "malformed Basic credentials"

        # Both compared, then combined, so the timing does not tell which of
        # the two was wrong; digests make the lengths equal (RFC 7617 has
        # no such rule; see webhooks-and-auth.md §3).
        user_ok = hmac.compare_digest(_digest(pair[0]), self._user)
        password_ok = hmac.compare_digest(_digest(pair[1]), self._password)
        return None if user_ok & password_ok else "wrong user or password"


def _basic_refusal(start_response: StartResponse) -> list[bytes]:
    """Answer as the OpenFaaS gateway does to bad admin credentials."""
    start_response(
        "401 Unauthorized",
        [
            ("WWW-Authenticate", BASIC_CHALLENGE),
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(BASIC_REFUSAL))),
        ],
    )
    return [BASIC_REFUSAL]


def _decode_basic(token: str) -> tuple[bytes, bytes] | None:
    """The user and password in a Basic token, or None if it is malformed."""
    try:
        decoded = base64.b64decode(token, validate=True)
    except (binascii.Error, ValueError):
        return None

    # The user cannot contain a colon, the password can (RFC 7617 §2).
    user, colon, password = decoded.partition(b":")
    return (user, password) if colon else None


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


@dataclass(frozen=True)
class _PluginAnswer:
    """The plugin's response, read in full."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes


class PluginAdminAuth:
    """WSGI middleware asking an external auth plugin about each request.

    ``timeout`` bounds connecting to the plugin and each wait for its data.
    Redirects are not followed: a plugin's 3xx is a refusal like any other
    status but 200.
    """

    logger = logger

    def __init__(
        self,
        app: WSGIApplication,
        url: str,
        *,
        pass_body: bool,
        timeout: float,
    ) -> None:
        if timeout <= 0:
            raise AdminConfigError(
                f"auth plugin timeout {timeout!r} must be a positive number "
                "of seconds, such as 5"
            )

        self.app = app
        self.url = url
        self.pass_body = pass_body
        self.timeout = timeout
        self._target = _plugin_target(url)
        self._path = _path_and_query(self._target)

    def __call__(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        """Run the wrapped app if the plugin answers 200, else relay it."""
        body = _buffer_body(environ) if self.pass_body else b""
        try:
            answer = self._ask(_plugin_headers(environ), body)
        except (OSError, http.client.HTTPException) as exc:
            return self._unavailable(exc, start_response)

        # Exactly 200: the historical gateway denied 202 and 204 as well
        # (gateway-contract.md §6), and a plugin written for it expects that.
        if answer.status == 200:
            return self.app(environ, start_response)

        if answer.status not in _KNOWN_STATUSES:
            # No server can send a status it does not know (uvicorn drops
            # the connection): fail closed with a 500 that says why.
            error = http.client.HTTPException(
                f"auth plugin answered an unknown status {answer.status}"
            )
            return self._unavailable(error, start_response)

        reason = f"auth plugin answered {answer.status}"
        _log_refusal(self.logger, environ, reason)
        return _relay(answer, start_response)

    def _ask(self, headers: dict[str, str], body: bytes) -> _PluginAnswer:
        """Send the plugin its GET and read the whole answer."""
        connection = self._connect()
        try:
            connection.request("GET", self._path, body or None, headers)
            response = connection.getresponse()
            content = response.read()
        finally:
            connection.close()

        return _PluginAnswer(
            response.status, response.reason, response.getheaders(), content
        )

    def _connect(self) -> http.client.HTTPConnection:
        host, port = self._target.hostname or "", self._target.port
        if self._target.scheme == "https":
            return http.client.HTTPSConnection(host, port, timeout=self.timeout)
        return http.client.HTTPConnection(host, port, timeout=self.timeout)

    def _unavailable(
        self, error: Exception, start_response: StartResponse
    ) -> list[bytes]:
        """Fail closed: 500 and the error text, as Go's ``http.Error``."""
        if isinstance(error, TimeoutError):
            reason = f"no answer within {self.timeout:g}s"
        else:
            reason = getattr(error, "strerror", None) or str(error)
            reason = reason or type(error).__name__

        # Shaped like the Go client error the historical gateway returned.
        text = f'Get "{self.url}": {reason}'
        self.logger.error("auth plugin unavailable: %s", text)

        body = f"{text}\n".encode()
        start_response(
            "500 Internal Server Error",
            [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("X-Content-Type-Options", "nosniff"),
                ("Content-Length", str(len(body))),
            ],
        )
        return [body]


def _plugin_target(url: str) -> SplitResult:
    """The parts of the plugin URL; raise ``AdminConfigError`` if unusable."""
    try:
        target = urlsplit(url)
        _ = target.port  # a port that is not a number raises ValueError
    except ValueError as exc:
        raise AdminConfigError(
            f"auth plugin URL {url!r} does not parse ({exc}); give a URL such "
            "as http://127.0.0.1:8081/validate"
        ) from exc

    if target.scheme not in ("http", "https") or not target.hostname:
        raise AdminConfigError(
            f"auth plugin URL {url!r} must be an http:// or https:// URL with "
            "a host, such as http://127.0.0.1:8081/validate"
        )

    if target.username is not None or target.password is not None:
        raise AdminConfigError(
            f"auth plugin URL for host {target.hostname!r} carries a user or "
            "password; the client's own Authorization header is what reaches "
            "the plugin, so remove them from the URL"
        )
    return target


def _path_and_query(target: SplitResult) -> str:
    path = target.path or "/"
    return f"{path}?{target.query}" if target.query else path


def _plugin_headers(environ: WSGIEnvironment) -> dict[str, str]:
    """The client's request headers, minus those that belong to one hop.

    Host is left to the HTTP client, which names the plugin's host, as Go's
    does; so is Content-Length, set for the body actually sent, if any.
    """
    listed = environ.get("HTTP_CONNECTION", "").split(",")
    named_in_connection = {name.strip().lower() for name in listed}
    dropped = HOP_BY_HOP | named_in_connection | {"host"}

    headers: dict[str, str] = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            name = key[5:]
        elif key == "CONTENT_TYPE" and value:
            name = key
        else:
            continue

        # Go's canonical form (X-Call-Id), which the historical gateway sent.
        canonical = "-".join(part.capitalize() for part in name.split("_"))
        if canonical.lower() not in dropped:
            headers[canonical] = value
    return headers


def _buffer_body(environ: WSGIEnvironment) -> bytes:
    """Read the whole request body and put it back for the wrapped app.

    waitress has already received the body (bounded by its
    ``max_request_body_size``) before the app runs, so holding one copy in
    memory adds no new exposure.
    """
    stream = environ["wsgi.input"]
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0

    body: bytes
    if length > 0:
        body = stream.read(length)
    elif environ.get("wsgi.input_terminated"):
        body = stream.read()
    else:
        body = b""

    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    return body


_KNOWN_STATUSES = frozenset(int(status) for status in HTTPStatus)


def _relay(answer: _PluginAnswer, start_response: StartResponse) -> list[bytes]:
    """Pass the plugin's refusal back: its headers, status and body."""
    headers = [
        (name, value)
        for name, value in answer.headers
        if name.lower() not in HOP_BY_HOP and name.lower() != "content-length"
    ]

    # The body was read in full, so its length is known; 204 and 304 must
    # not carry one (RFC 9110 §8.6).
    if answer.status not in (204, 304):
        headers.append(("Content-Length", str(len(answer.body))))

    start_response(f"{answer.status} {_phrase(answer)}", headers)
    return [answer.body]


def _phrase(answer: _PluginAnswer) -> str:
    if answer.reason:
        return answer.reason
    try:
        return HTTPStatus(answer.status).phrase
    except ValueError:
        return "Unknown"


def _log_refusal(
    log: logging.Logger,
    environ: WSGIEnvironment,
    reason: str,
) -> None:
    """One line per refused admin request, with nothing secret in it."""
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    log.info(
        "admin request refused method=%s path=%s client=%s reason=%s",
        environ.get("REQUEST_METHOD", "?"),
        path,
        environ.get("REMOTE_ADDR", "?"),
        reason,
    )


def is_loopback(host: str) -> bool:
    """Whether a bind address ``host`` is reachable from this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def admin_middleware(
    app: WSGIApplication,
    *,
    mode: str,
    credentials: AdminCredentials | None = None,
    plugin_url: str | None = None,
    pass_body: bool = False,
    timeout: float = 60.0,
    loopback: bool = False,
) -> WSGIApplication:
    """Wrap ``app`` in the admin auth ``mode`` names: basic, plugin or none.

    ``timeout`` defaults to the gateway's ``upstream_timeout`` (60 s), which
    bounded plugin calls upstream. ``loopback`` is the caller's word that the
    emulator listens on a loopback address only; ``none`` needs it.
    """
    if mode == "basic":
        if credentials is None:
            raise AdminConfigError(
                "admin auth mode 'basic' needs credentials; load them with "
                "AdminCredentials.load_or_create(secret_mount_path)"
            )
        return BasicAdminAuth(app, credentials)

    if mode == "plugin":
        if not plugin_url:
            raise AdminConfigError(
                "admin auth mode 'plugin' needs the plugin's URL "
                "(auth_proxy_url), such as http://127.0.0.1:8081/validate"
            )
        return PluginAdminAuth(
            app,
            plugin_url,
            pass_body=pass_body,
            timeout=timeout,
        )

    if mode == "none":
        if not loopback:
            raise AdminConfigError(
                "admin auth mode 'none' would let anyone who reaches the port "
                "deploy and delete functions; it is allowed only when the "
                "emulator listens on loopback (127.0.0.1 or ::1). Bind there, "
                "or choose mode 'basic' or 'plugin'"
            )
        logger.warning("admin auth is off: /system/ is open on loopback")
        return app

    raise AdminConfigError(
        f"unknown admin auth mode {mode!r}; choose 'basic', 'plugin' or 'none'"
    )
