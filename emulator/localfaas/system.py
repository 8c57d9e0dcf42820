"""The admin API under ``/system/``, answering as OpenFaaS CE does.

Status codes and bodies follow the faas-netes profile of
gateway-contract.md §8, including the ones clients depend on: PUT of an
unknown function is 404 (faas-cli then POSTs), POST of an existing secret is
409 (``secret create --replace`` then PUTs), mutations answer 202, and a
secret delete never answers 204.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import logging
import platform
import queue
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from importlib import resources
from typing import Any, Protocol
from urllib.parse import parse_qs

from . import __version__
from .deployments import (
    DEFAULT_NAMESPACE,
    FunctionRequest,
    RequestError,
    check_namespace,
    parse_deployment,
    parse_json,
)
from .secrets import (
    InvalidSecretName,
    SecretExists,
    SecretNotFound,
    SecretReadOnly,
    SecretStore,
)
from .supervisor import FunctionNotFound, LogLine

log = logging.getLogger("localfaas.system")

Environ = dict[str, Any]
StartResponse = Callable[..., Any]

# A stable 40-character id for this build: clients (and the certifier)
# expect a git-style sha in /system/info.
_SHA = "0" * 32 + "%08x" % (hash(__version__) & 0xFFFFFFFF)


class FunctionManager(Protocol):
    """What the admin API needs from the functions' keeper."""

    def all(self) -> list[FunctionRequest]: ...
    def get(self, name: str) -> FunctionRequest | None: ...
    def deploy(self, request: FunctionRequest, *, update: bool) -> None: ...
    def remove(self, name: str) -> None: ...
    def scale(self, name: str, replicas: int) -> None: ...
    def replicas(self, name: str) -> tuple[int, int]: ...
    def invocations(self, name: str) -> float: ...
    def logs(self, name: str, since: datetime | None, tail: int) -> list[LogLine]: ...
    def follow(
        self, name: str, since: datetime | None, tail: int
    ) -> queue.Queue[LogLine | None] | None: ...
    def unfollow(self, name: str, lines: queue.Queue[LogLine | None]) -> None: ...


class SystemAPI:
    """WSGI app for ``/system/*``; the admin auth wraps it."""

    def __init__(
        self,
        functions: FunctionManager,
        secrets: SecretStore,
        *,
        log_timeout: float = 60.0,
    ) -> None:
        self.functions = functions
        self.secrets = secrets
        self.log_timeout = log_timeout
        self._routes: dict[str, dict[str, Callable[..., Any]]] = {
            "/system/functions": {
                "GET": self.list_functions,
                "POST": self.deploy,
                "PUT": self.update,
                "DELETE": self.delete,
            },
            "/system/info": {"GET": self.info},
            "/system/openapi.yaml": {"GET": self.openapi},
            "/system/secrets": {
                "GET": self.list_secrets,
                "POST": self.create_secret,
                "PUT": self.update_secret,
                "DELETE": self.delete_secret,
            },
            "/system/logs": {"GET": self.logs},
            "/system/namespaces": {"GET": self.namespaces},
        }

    def __call__(self, environ: Environ, start_response: StartResponse) -> Any:
        path = environ.get("PATH_INFO", "")
        method = environ["REQUEST_METHOD"]
        query = _query(environ)
        try:
            handler, args = self._route(path, method)
            return handler(environ, start_response, query, *args)
        except RequestError as exc:
            return _text(start_response, exc.status, exc.body)

    def _route(
        self, path: str, method: str
    ) -> tuple[Callable[..., Any], tuple[str, ...]]:
        methods = self._routes.get(path)
        args: tuple[str, ...] = ()
        for prefix, verbs in (
            ("/system/function/", {"GET": self.status}),
            ("/system/scale-function/", {"POST": self.scale}),
            (
                "/system/namespace/",
                {m: self.namespace for m in ("GET", "POST", "PUT", "DELETE")},
            ),
        ):
            if methods is None and path.startswith(prefix):
                methods, args = verbs, (path[len(prefix) :],)
        if methods is None:
            raise RequestError(404, "404 page not found\n")
        if method not in methods:
            raise RequestError(405, "")
        return methods[method], args

    # -- functions ---------------------------------------------------------

    def list_functions(
        self, environ: Environ, start_response: StartResponse, query: dict[str, str]
    ) -> list[bytes]:
        check_namespace(query.get("namespace"))
        items = [self._status(request) for request in self.functions.all()]
        return _json(start_response, 200, items)

    def status(
        self,
        environ: Environ,
        start_response: StartResponse,
        query: dict[str, str],
        name: str,
    ) -> list[bytes]:
        check_namespace(query.get("namespace"))
        request = self.functions.get(name)
        if request is None:
            return _text(start_response, 404, "")
        return _json(start_response, 200, self._status(request))

    def deploy(
        self, environ: Environ, start_response: StartResponse, query: dict[str, str]
    ) -> list[bytes]:
        request = parse_deployment(_read(environ))
        if self.functions.get(request.service) is not None:
            raise RequestError(
                500,
                "unable create Deployment: deployments.apps "
                f'"{request.service}" already exists\n',
            )
        self._check_secrets(request, "unable to fetch secrets: secrets")
        self.functions.deploy(request, update=False)
        log.info("deploy accepted function=%s image=%s", request.service, request.image)
        return _text(start_response, 202, "")

    def update(
        self, environ: Environ, start_response: StartResponse, query: dict[str, str]
    ) -> list[bytes]:
        request = _reparse(_read(environ), "unable to unmarshal request")
        qualified = f"{request.service}.{DEFAULT_NAMESPACE}"
        if self.functions.get(request.service) is None:
            raise RequestError(
                404,
                f"unable update Deployment: {qualified}, error: deployments.apps "
                f'"{request.service}" not found\n',
            )
        self._check_secrets(
            request, f"unable update Deployment: {qualified}, error: secrets"
        )
        self.functions.deploy(request, update=True)
        log.info("update accepted function=%s image=%s", request.service, request.image)
        return _text(start_response, 202, "")

    def delete(
        self, environ: Environ, start_response: StartResponse, query: dict[str, str]
    ) -> list[bytes]:
        try:
            raw = parse_json(_read(environ))
        except RequestError:
            return _text(start_response, 400, "")
        name = raw.get("functionname")
        if not isinstance(name, str) or not name:
            return _text(start_response, 400, "")
        # faas-netes reads the query, faasd the body: the query wins (§8.4).
        check_namespace(query.get("namespace") or raw.get("namespace"))
        if self.functions.get(name) is None:
            return _text(start_response, 404, f'deployments.apps "{name}" not found')
        self.functions.remove(name)
        log.info("function removed function=%s", name)
        return _text(start_response, 202, "")

    def scale(
        self,
        environ: Environ,
        start_response: StartResponse,
        query: dict[str, str],
        name: str,
    ) -> list[bytes]:
        try:
            raw = parse_json(_read(environ))
        except RequestError:
            return _text(start_response, 400, "Error unmarshalling request body\n")
        replicas = raw.get("replicas", 0)
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            return _text(start_response, 400, "Error unmarshalling request body\n")
        check_namespace(query.get("namespace") or raw.get("namespace"))
        request = self.functions.get(name)
        if request is None:
            return _text(
                start_response, 500, f"Unable to lookup function deployment {name}"
            )
        # The CE gateway clamps to 1..5; the labels narrow that further.
        wanted = max(1, min(replicas, 5))
        wanted = max(request.min_replicas, min(wanted, request.max_replicas))
        try:
            self.functions.scale(name, wanted)
        except FunctionNotFound:
            # Accepted, but not started (yet, or ever): nothing to scale.
            return _text(
                start_response, 500, f"Unable to lookup function deployment {name}"
            )
        return _text(start_response, 202, "")

    def _status(self, request: FunctionRequest) -> dict[str, Any]:
        from .deployments import status_json

        desired, available = self.functions.replicas(request.service)
        return status_json(
            request,
            replicas=desired,
            available=available,
            invocations=self.functions.invocations(request.service),
        )

    def _check_secrets(self, request: FunctionRequest, prefix: str) -> None:
        for name in request.secrets:
            try:
                found = self.secrets.exists(name)
            except InvalidSecretName:
                found = False  # a name no secret can have is not found
            if not found:
                raise RequestError(400, f'{prefix} "{name}" not found\n')

    # -- info, namespaces ----------------------------------------------------

    def info(
        self, environ: Environ, start_response: StartResponse, query: dict[str, str]
    ) -> list[bytes]:
        version = {"sha": _SHA, "release": __version__}
        return _json(
            start_response,
            200,
            {
                "provider": {
                    "provider": "localfaas",
                    "orchestration": "local-processes",
                    "version": version,
                },
                "version": {"commit_message": "localfaas", **version},
                "arch": _arch(),
            },
        )

    def openapi(
        self, environ: Environ, start_response: StartResponse, query: dict[str, str]
    ) -> list[bytes]:
        """This API's OpenAPI document, shipped as package data."""
        document = resources.files("localfaas").joinpath("openapi.yaml")
        body = document.read_bytes()
        # application/yaml is the type RFC 9512 registers for YAML.
        start_response(
            "200 OK",
            [("Content-Type", "application/yaml"), ("Content-Length", str(len(body)))],
        )
        return [body]

    def namespaces(
        self, environ: Environ, start_response: StartResponse, query: dict[str, str]
    ) -> list[bytes]:
        return _json(start_response, 200, [DEFAULT_NAMESPACE])

    def namespace(
        self,
        environ: Environ,
        start_response: StartResponse,
        query: dict[str, str],
        name: str,
    ) -> list[bytes]:
        # One namespace, as OpenFaaS CE on Kubernetes answers (§8.10).
        if environ["REQUEST_METHOD"] != "GET":
            return _text(start_response, 405, "")
        return _text(
            start_response,
            501,
            "Feature not implemented in this version of OpenFaaS\n",
        )

    # -- secrets -------------------------------------------------------------

    def list_secrets(
        self, environ: Environ, start_response: StartResponse, query: dict[str, str]
    ) -> list[bytes]:
        check_namespace(query.get("namespace"))
        names = self.secrets.list()
        items = [{"name": name, "namespace": DEFAULT_NAMESPACE} for name in names]
        return _json(start_response, 200, items)

    def create_secret(
        self, environ: Environ, start_response: StartResponse, query: dict[str, str]
    ) -> list[bytes]:
        name, value = _secret_body(_read(environ))
        change = functools.partial(self.secrets.create, name, value)
        return _secret_change(start_response, name, change, "created")

    def update_secret(
        self, environ: Environ, start_response: StartResponse, query: dict[str, str]
    ) -> list[bytes]:
        name, value = _secret_body(_read(environ))
        change = functools.partial(self.secrets.update, name, value)
        return _secret_change(start_response, name, change, "updated")

    def delete_secret(
        self, environ: Environ, start_response: StartResponse, query: dict[str, str]
    ) -> list[bytes]:
        raw = parse_json(_read(environ))
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            return _text(start_response, 500, "")
        check_namespace(raw.get("namespace"))
        change = functools.partial(self.secrets.delete, name)
        return _secret_change(start_response, name, change, "removed")

    # -- logs ----------------------------------------------------------------

    def logs(
        self, environ: Environ, start_response: StartResponse, query: dict[str, str]
    ) -> Any:
        name = query.get("name", "")
        try:
            tail = int(query.get("tail", "-1") or "-1")
            since = _since(query.get("since"))
        except ValueError:
            return _text(start_response, 500, "unknown log request error (422)\n")
        follow = query.get("follow", "").lower() in ("true", "1")

        start_response("200 OK", [("Content-Type", "application/x-ndjson")])
        if not follow:
            lines = self.functions.logs(name, since, tail)
            return [b"".join(_log_json(line) for line in lines)]
        subscription = self.functions.follow(name, since, tail)
        if subscription is None:
            return [b""]
        return self._follow(name, subscription)

    def _follow(
        self, name: str, subscription: queue.Queue[LogLine | None]
    ) -> Iterator[bytes]:
        deadline = time.monotonic() + self.log_timeout
        try:
            # The stream is cut at write_timeout, as the gateway cuts it.
            while (left := deadline - time.monotonic()) > 0:
                try:
                    line = subscription.get(timeout=min(left, 1.0))
                except queue.Empty:
                    continue
                if line is None:
                    return
                yield _log_json(line)
        finally:
            self.functions.unfollow(name, subscription)


def _secret_change(
    start_response: StartResponse,
    name: str,
    change: Callable[[], None],
    done: str,
) -> list[bytes]:
    """Apply a secret change; the store's errors become OpenFaaS's codes."""
    try:
        change()
    except SecretExists:
        return _text(start_response, 409, "")
    except SecretNotFound:
        return _text(start_response, 404, "")
    except SecretReadOnly as exc:
        # A .secrets/ file: edit the file, not the API's copy.
        return _text(start_response, 409, f"{exc}\n")
    except InvalidSecretName:
        return _text(start_response, 422, "")
    log.info("secret %s name=%s", done, name)
    return _text(start_response, 202, "")


def _reparse(body: bytes, action: str) -> FunctionRequest:
    try:
        return parse_deployment(body)
    except RequestError as exc:
        if exc.body.startswith("failed to unmarshal request"):
            detail = exc.body.removeprefix("failed to unmarshal request")
            raise RequestError(exc.status, f"{action}{detail}") from exc
        raise


def _secret_body(body: bytes) -> tuple[str, bytes]:
    raw = parse_json(body)
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise RequestError(500, "")
    try:
        from .secrets import validate_secret_name

        validate_secret_name(name)
    except InvalidSecretName as exc:
        raise RequestError(422, "") from exc
    check_namespace(raw.get("namespace"))

    # rawValue (base64) wins when non-empty, as in faas-provider.
    encoded = raw.get("rawvalue")
    if isinstance(encoded, str) and encoded:
        try:
            return name, base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise RequestError(400, f"rawValue is not base64: {exc}\n") from exc
    value = raw.get("value")
    if not isinstance(value, str):
        raise RequestError(400, "secret value must be a string\n")
    return name, value.encode()


def _since(raw: str | None) -> datetime | None:
    if not raw:
        return None
    moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        # RFC 3339 requires an offset; a naive time cannot be compared.
        raise ValueError(f"since={raw!r} has no UTC offset")
    return moment


def _log_json(line: LogLine) -> bytes:
    stamp = line.timestamp.isoformat().replace("+00:00", "Z")
    record = {
        "name": line.name,
        "namespace": line.namespace,
        "instance": line.instance,
        "timestamp": stamp,
        "text": line.text,
    }
    return json.dumps(record).encode() + b"\n"


def _query(environ: Environ) -> dict[str, str]:
    # A repeated key: the last value wins, as Go's logs handler reads it.
    parsed = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    return {key: values[-1] for key, values in parsed.items()}


def _read(environ: Environ) -> bytes:
    length = environ.get("CONTENT_LENGTH")
    stream = environ["wsgi.input"]
    return bytes(stream.read(int(length)) if length else stream.read())


def _arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def _json(start_response: StartResponse, code: int, value: Any) -> list[bytes]:
    body = json.dumps(value).encode()
    start_response(
        _status(code),
        [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
    )
    return [body]


def _text(start_response: StartResponse, code: int, text: str) -> list[bytes]:
    # Go's http.Error shape when there is a message; bare when there is not.
    body = text.encode()
    headers = [("Content-Length", str(len(body)))]
    if body:
        headers.insert(0, ("Content-Type", "text/plain; charset=utf-8"))
        headers.append(("X-Content-Type-Options", "nosniff"))
    start_response(_status(code), headers)
    return [body]


def _status(code: int) -> str:
    from http import HTTPStatus

    return f"{code} {HTTPStatus(code).phrase}"
