"""A small typed client for the gateway's HTTP API, speaking as faas-cli does.

Each call sends the request faas-cli sends (clients.md §1): the same paths
and methods, JSON bodies with the namespace in the body (and in the query
on GET), and the same accepted statuses. Failures become the errors of
:mod:`localfaas.errors`:

- no HTTP answer (refused, timed out, TLS not trusted): ``GatewayUnreachable``;
- 401 on ``/system/``: ``Unauthorized``;
- any other status the call does not accept: ``RequestFailed``.

Admin credentials go to ``/system/`` only; an invocation never carries them,
as with faas-cli, because the function would receive them
(gateway-contract.md §5: the gateway passes ``Authorization`` through).

One connection per call, closed afterwards: the CLI makes one or two calls
per run, so a pool would only add state.
"""

from __future__ import annotations

import base64
import http.client
import json
import platform
import ssl
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import SplitResult, quote, urlencode, urlsplit

from localfaas import __version__
from localfaas.errors import (
    ConfigurationError,
    GatewayUnreachable,
    RequestFailed,
    Unauthorized,
)

__all__ = ["DEFAULT_NAMESPACE", "Gateway", "Response"]

DEFAULT_NAMESPACE = "openfaas-fn"

# Go's http client and faas-cli accept these for mutations (clients.md §1);
# a secret delete answered 204 is an error to faas-cli, so it is here too.
_CREATED = (200, 201, 202)
_UPDATED = (200, 202)

_USER_AGENT = f"localfaas/{__version__}"
# faas-cli's invoke User-Agent names the platform the same way.
_INVOKE_AGENT = (
    f"{_USER_AGENT} (openfaas; {platform.system().lower()};"
    f" {platform.machine().lower()})"
)


@dataclass(frozen=True)
class Response:
    """A whole HTTP answer: status, reason, headers in order, and body."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (any case), or None."""
        wanted = name.lower()
        return next((v for k, v in self.headers if k.lower() == wanted), None)


class Gateway:
    """The gateway at ``url``, called with ``auth`` (user, password) or a token.

    ``tls_verify``: True checks an https gateway against the system's CAs,
    a string names a CA file trusted in addition to them (the local CA that
    ``localfaas up --tls`` made), False checks nothing. ``timeout`` bounds
    connecting and each wait for data, except while following logs.
    """

    def __init__(
        self,
        url: str,
        auth: tuple[str, str] | None = None,
        tls_verify: bool | str = True,
        *,
        token: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.url = url.rstrip("/")
        self._target = _parse_url(self.url)
        self._authorization = _authorization(auth, token)
        self._context = (
            _tls_context(tls_verify) if self._target.scheme == "https" else None
        )
        self.timeout = timeout

    # --- functions ---------------------------------------------------------

    def functions(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """GET ``/system/functions``: the deployed functions' statuses."""
        path = _with_query("/system/functions", {"namespace": namespace})
        return _json_list(self._system("GET", path, accept=(200,)), path)

    def invoke(
        self,
        name: str,
        body: bytes = b"",
        *,
        namespace: str = DEFAULT_NAMESPACE,
        method: str = "POST",
        content_type: str = "text/plain",
        query: Iterable[tuple[str, str]] = (),
        headers: Iterable[tuple[str, str]] = (),
        asynchronous: bool = False,
    ) -> Response:
        """Call the function ``name.namespace``; return whatever it answered.

        The namespace is always in the path, as faas-cli puts it there.
        ``headers`` come after ``Content-Type`` and replace a header of the
        same name. No admin credentials are sent.
        """
        route = "async-function" if asynchronous else "function"
        path = f"/{route}/{quote(name, safe='')}.{quote(namespace, safe='')}"
        pairs = list(query)
        if pairs:
            path += "?" + urlencode(pairs)

        sent = {"User-Agent": _INVOKE_AGENT, "Content-Type": content_type}
        for key, value in headers:
            _set_header(sent, key, value)
        return self._call(method, path, body, sent, self.timeout)

    # --- secrets -------------------------------------------------------------

    def secrets(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """GET ``/system/secrets``: names and namespaces, never values."""
        path = _with_query("/system/secrets", {"namespace": namespace})
        return _json_list(self._system("GET", path, accept=_UPDATED), path)

    def create_secret(
        self,
        name: str,
        value: str | None = None,
        *,
        raw: bytes | None = None,
        namespace: str | None = None,
    ) -> Response:
        """POST ``/system/secrets``; a duplicate raises ``RequestFailed`` 409."""
        body = _secret(name, namespace, value, raw)
        return self._system("POST", "/system/secrets", body, accept=_CREATED)

    def update_secret(
        self,
        name: str,
        value: str | None = None,
        *,
        raw: bytes | None = None,
        namespace: str | None = None,
    ) -> Response:
        """PUT ``/system/secrets``; an unknown name raises ``RequestFailed`` 404."""
        body = _secret(name, namespace, value, raw)
        return self._system("PUT", "/system/secrets", body, accept=_UPDATED)

    def remove_secret(self, name: str, namespace: str | None = None) -> Response:
        """DELETE ``/system/secrets`` with ``{"name", "namespace"}``."""
        body = _secret(name, namespace, None, None)
        return self._system("DELETE", "/system/secrets", body, accept=_UPDATED)

    # --- logs ----------------------------------------------------------------

    def logs(
        self,
        name: str,
        *,
        namespace: str | None = None,
        since: datetime | None = None,
        tail: int = -1,
        follow: bool = False,
    ) -> Iterator[dict[str, Any]]:
        """GET ``/system/logs``; yield each NDJSON message as it arrives.

        The request is sent before this returns, so a refusal raises here.
        While following, the wait for the next line has no time limit.
        """
        stamp = None if since is None else _rfc3339(since)
        # Go's url.Values.Encode sorts the keys; so does faas-cli's query.
        fields = {
            "follow": "true" if follow else "false",
            "name": name,
            "namespace": namespace,
            "since": stamp,
            "tail": str(tail),
        }
        path = _with_query("/system/logs", fields)
        timeout = None if follow else self.timeout
        connection, response = self._open(
            "GET", path, None, self._admin_headers(), timeout
        )
        if response.status != 200:
            answer = self._finish(connection, response)
            self._refuse(answer, accept=(200,))
        return self._lines(connection, response, path)

    # --- plumbing ------------------------------------------------------------

    def _system(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        accept: tuple[int, ...],
    ) -> Response:
        """A ``/system/`` call with credentials; refuse unaccepted statuses."""
        headers = self._admin_headers()
        payload = None
        if body is not None:
            # Compact, as Go's encoder writes it.
            payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
            headers["Content-Type"] = "application/json"

        data = None if payload is None else payload.encode("utf-8")
        answer = self._call(method, path, data, headers, self.timeout)
        self._refuse(answer, accept)
        return answer

    def _admin_headers(self) -> dict[str, str]:
        headers = {"User-Agent": _USER_AGENT}
        if self._authorization:
            headers["Authorization"] = self._authorization
        return headers

    def _refuse(self, answer: Response, accept: tuple[int, ...]) -> None:
        if answer.status in accept:
            return
        if answer.status == 401:
            raise Unauthorized(self.url, answer.body)
        raise RequestFailed(answer.status, answer.body)

    def _call(
        self,
        method: str,
        path: str,
        body: bytes | None,
        headers: dict[str, str],
        timeout: float | None,
    ) -> Response:
        connection, response = self._open(method, path, body, headers, timeout)
        return self._finish(connection, response)

    def _open(
        self,
        method: str,
        path: str,
        body: bytes | None,
        headers: dict[str, str],
        timeout: float | None,
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """Send one request; return the connection and the response head."""
        connection = self._connect(timeout)
        try:
            connection.request(method, self._target.path + path, body, headers)
            return connection, connection.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            raise self._unreachable(exc, timeout) from exc

    def _finish(
        self,
        connection: http.client.HTTPConnection,
        response: http.client.HTTPResponse,
    ) -> Response:
        """Read the whole body and close the connection."""
        try:
            body = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise self._unreachable(exc, self.timeout) from exc
        finally:
            connection.close()
        return Response(response.status, response.reason, response.getheaders(), body)

    def _lines(
        self,
        connection: http.client.HTTPConnection,
        response: http.client.HTTPResponse,
        path: str,
    ) -> Iterator[dict[str, Any]]:
        """Yield one JSON object per non-empty line; close at the end."""
        try:
            while line := response.readline():
                if line.strip():
                    yield _log_message(line, path)
        except (OSError, http.client.HTTPException) as exc:
            raise self._unreachable(exc, None) from exc
        finally:
            connection.close()

    def _connect(self, timeout: float | None) -> http.client.HTTPConnection:
        host, port = self._target.hostname or "", self._target.port
        if self._context is not None:
            return http.client.HTTPSConnection(
                host, port, timeout=timeout, context=self._context
            )
        return http.client.HTTPConnection(host, port, timeout=timeout)

    def _unreachable(
        self, error: Exception, timeout: float | None
    ) -> GatewayUnreachable:
        """Name why no answer came, with a hint that fits the reason."""
        if isinstance(error, ssl.SSLCertVerificationError):
            reason = f"its TLS certificate is not trusted ({error.verify_message})"
            hint = (
                "trust the CA that signed it (localfaas trusts its own local"
                " CA), or pass --tls-no-verify for a one-off test"
            )
            return GatewayUnreachable(self.url, reason, hint=hint)

        if isinstance(error, TimeoutError):
            reason = f"no answer within {timeout:g}s"
        else:
            reason = getattr(error, "strerror", None) or str(error)
            reason = reason or type(error).__name__
        return GatewayUnreachable(self.url, reason)


def _parse_url(url: str) -> SplitResult:
    """The parts of a gateway URL; refuse what http.client cannot call."""
    try:
        target = urlsplit(url)
        _ = target.port  # a port that is not a number raises ValueError
    except ValueError as exc:
        raise ConfigurationError(
            f"gateway URL {url!r} does not parse ({exc})",
            hint="give a URL such as http://127.0.0.1:8080",
        ) from exc

    if target.scheme not in ("http", "https") or not target.hostname:
        raise ConfigurationError(
            f"gateway URL {url!r} is not an http:// or https:// URL with a host",
            hint="give a URL such as http://127.0.0.1:8080",
        )
    return target


def _authorization(auth: tuple[str, str] | None, token: str | None) -> str | None:
    """The Authorization value for ``/system/``; Basic wins, as in faas-cli."""
    if auth is not None:
        pair = f"{auth[0]}:{auth[1]}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")
    if token:
        return f"Bearer {token}"
    return None


def _tls_context(verify: bool | str) -> ssl.SSLContext:
    """A client TLS context: system CAs, plus a CA file, or no checks."""
    context = ssl.create_default_context()
    if verify is False:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context

    if isinstance(verify, str):
        try:
            context.load_verify_locations(cafile=verify)
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise ConfigurationError(
                f"cannot use {verify!r} as a CA file ({reason})",
                hint="name a PEM file of CA certificates",
            ) from exc
    return context


def _with_query(path: str, fields: Mapping[str, str | None]) -> str:
    """``path`` with the fields that have a value, URL-encoded, in order."""
    present = [(key, value) for key, value in fields.items() if value is not None]
    return f"{path}?{urlencode(present)}" if present else path


def _set_header(headers: dict[str, str], name: str, value: str) -> None:
    """Set ``name``, replacing a header that differs only in case."""
    for existing in [key for key in headers if key.lower() == name.lower()]:
        del headers[existing]
    headers[name] = value


def _secret(
    name: str, namespace: str | None, value: str | None, raw: bytes | None
) -> dict[str, Any]:
    """A Secret body in faas-cli's key order; empty fields left out."""
    body: dict[str, Any] = {"name": name}
    if namespace:
        body["namespace"] = namespace
    if value is not None:
        body["value"] = value
    if raw is not None:
        body["rawValue"] = base64.b64encode(raw).decode("ascii")
    return body


def _json_list(answer: Response, path: str) -> list[dict[str, Any]]:
    """The answer's body as a JSON list of objects, or ``RequestFailed``."""
    try:
        value = json.loads(answer.body or b"[]")
    except ValueError:
        value = None
    if isinstance(value, list) and all(isinstance(item, dict) for item in value):
        return value

    text = answer.body[:200].decode("utf-8", errors="replace")
    raise RequestFailed(
        answer.status,
        answer.body,
        f"the gateway answered GET {path} with something that is not a JSON"
        f" list of objects: {text!r}",
        hint="check that the URL points at an OpenFaaS gateway",
    )


def _log_message(line: bytes, path: str) -> dict[str, Any]:
    try:
        message = json.loads(line)
    except ValueError:
        message = None
    if isinstance(message, dict):
        return message

    text = line[:200].decode("utf-8", errors="replace").rstrip()
    raise RequestFailed(
        200,
        line,
        f"the gateway's log stream at {path} has a line that is not a JSON"
        f" object: {text!r}",
    )


def _rfc3339(moment: datetime) -> str:
    """``2024-05-01T12:00:00Z``; a naive time is taken as local time."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
