"""The gateway client against a real recording gateway on waitress.

``FakeGateway`` is a small WSGI app that records every request and answers
from a table; it runs on a real waitress server on a free loopback port.
``tests/test_cli.py`` drives the CLI against the same fake.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from wsgiref.types import StartResponse, WSGIEnvironment

import pytest
import waitress
from servers import serving_https, stop_waitress

from localfaas.client import Gateway
from localfaas.errors import (
    ConfigurationError,
    GatewayUnreachable,
    RequestFailed,
    Unauthorized,
)
from localfaas.tls import TlsFiles, ensure_certificates

# --- the fake gateway --------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One request as the fake gateway received it."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        """A request header by name, any case."""
        return self.headers.get(name.lower())

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


@dataclass
class Answer:
    """What the fake answers on one route."""

    status: int = 200
    body: bytes | Iterable[bytes] = b""
    headers: list[tuple[str, str]] = field(default_factory=list)


class FakeGateway:
    """Records requests; answers in the order queued, else 404 ``not found``."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.answers: dict[tuple[str, str], list[Answer]] = {}
        self.last: dict[tuple[str, str], Answer] = {}
        self.url = ""

    def answer(
        self,
        method: str,
        path: str,
        status: int = 200,
        body: bytes | Iterable[bytes] = b"",
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Queue an answer for ``method path``; the last one used repeats."""
        queue = self.answers.setdefault((method, path), [])
        queue.append(Answer(status, body, list(headers)))

    def answer_json(
        self, method: str, path: str, value: Any, status: int = 200
    ) -> None:
        """Queue a JSON answer."""
        body = json.dumps(value).encode()
        self.answer(method, path, status, body, [("Content-Type", "application/json")])

    def __call__(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        """Record the request, then answer it."""
        self.seen.append(_record(environ))
        route = (environ["REQUEST_METHOD"], environ["PATH_INFO"])
        queue = self.answers.get(route)
        if queue:
            self.last[route] = queue.pop(0)
        answer = self.last.get(route, Answer(404, b"not found"))

        headers = list(answer.headers)
        if isinstance(answer.body, bytes):
            headers.append(("Content-Length", str(len(answer.body))))
            start_response(f"{answer.status} X", headers)
            return [answer.body]
        start_response(f"{answer.status} X", headers)
        return answer.body


def _record(environ: WSGIEnvironment) -> Seen:
    headers = {
        key[5:].replace("_", "-").lower(): value
        for key, value in environ.items()
        if key.startswith("HTTP_")
    }
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = environ["CONTENT_TYPE"]
    length = int(environ.get("CONTENT_LENGTH") or 0)
    return Seen(
        method=environ["REQUEST_METHOD"],
        path=environ["PATH_INFO"],
        query=environ.get("QUERY_STRING", ""),
        headers=headers,
        body=environ["wsgi.input"].read(length),
    )


@contextmanager
def running(fake: FakeGateway) -> Iterator[FakeGateway]:
    """Serve ``fake`` with waitress on a free loopback port."""
    server = waitress.create_server(
        fake, host="127.0.0.1", port=0, threads=4, asyncore_loop_timeout=0.05
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.effective_port}"
    try:
        yield fake
    finally:
        stop_waitress(server, thread)


@pytest.fixture
def gateway() -> Iterator[FakeGateway]:
    """A recording fake gateway on a free port."""
    with running(FakeGateway()) as fake:
        yield fake


def closed_port() -> int:
    """A loopback port with nothing listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# admin:secret, as clients.md shows it.
BASIC = "Basic YWRtaW46c2VjcmV0"


# --- /system/functions -------------------------------------------------------


class TestFunctions:
    """GET /system/functions, auth and failures."""

    def test_lists_with_basic_auth(self, gateway: FakeGateway) -> None:
        """GET /system/functions with faas-cli's Basic header; JSON back."""
        gateway.answer_json("GET", "/system/functions", [{"name": "echo"}])

        found = Gateway(gateway.url, ("admin", "secret")).functions()

        assert found == [{"name": "echo"}]
        (seen,) = gateway.seen
        assert (seen.method, seen.path, seen.query) == ("GET", "/system/functions", "")
        assert seen.header("Authorization") == BASIC

    def test_namespace_goes_in_the_query(self, gateway: FakeGateway) -> None:
        """``?namespace=dev`` only when a namespace is asked for."""
        gateway.answer_json("GET", "/system/functions", [])

        Gateway(gateway.url).functions("dev")

        assert gateway.seen[0].query == "namespace=dev"
        assert gateway.seen[0].header("Authorization") is None

    def test_token_is_sent_as_bearer_and_basic_wins(self, gateway: FakeGateway) -> None:
        """A token alone is Bearer; with a Basic login, Basic is sent."""
        gateway.answer_json("GET", "/system/functions", [])

        Gateway(gateway.url, token="t0k").functions()
        Gateway(gateway.url, ("admin", "secret"), token="t0k").functions()

        assert [s.header("Authorization") for s in gateway.seen] == [
            "Bearer t0k",
            BASIC,
        ]

    def test_401_is_unauthorized_naming_the_gateway(self, gateway: FakeGateway) -> None:
        """The refusal says where, and how to log in."""
        gateway.answer("GET", "/system/functions", 401, b"invalid credentials")

        with pytest.raises(Unauthorized) as error:
            Gateway(gateway.url, ("admin", "wrong")).functions()

        assert error.value.status == 401
        assert str(error.value) == (
            f'unauthorized at {gateway.url}: run "faas-cli login" or pass'
            " --user/--password"
        )

    def test_other_statuses_fail_with_faas_cli_wording(
        self, gateway: FakeGateway
    ) -> None:
        """``server returned unexpected status code: 500 - boom``."""
        gateway.answer("GET", "/system/functions", 500, b"boom\n")

        with pytest.raises(RequestFailed) as error:
            Gateway(gateway.url).functions()

        assert str(error.value) == "server returned unexpected status code: 500 - boom"
        assert error.value.body == b"boom\n"

    def test_a_body_that_is_not_a_json_list_is_refused(
        self, gateway: FakeGateway
    ) -> None:
        """An HTML page at the URL is reported, not parsed into nonsense."""
        gateway.answer("GET", "/system/functions", 200, b"<html>hi</html>")

        with pytest.raises(RequestFailed, match="not a JSON list"):
            Gateway(gateway.url).functions()

    def test_a_path_prefix_in_the_url_is_kept(self, gateway: FakeGateway) -> None:
        """A gateway behind ``/openfaas`` is called under that prefix."""
        gateway.answer_json("GET", "/openfaas/system/functions", [])

        Gateway(gateway.url + "/openfaas/").functions()

        assert gateway.seen[0].path == "/openfaas/system/functions"


# --- invoke -----------------------------------------------------------------


class TestInvoke:
    """Invocations: path, headers, no admin credentials."""

    def test_posts_the_body_to_name_dot_namespace(self, gateway: FakeGateway) -> None:
        """POST /function/echo.openfaas-fn, text/plain, body as given."""
        gateway.answer("POST", "/function/echo.openfaas-fn", 200, b"hi back")

        answer = Gateway(gateway.url).invoke("echo", b"hi")

        assert (answer.status, answer.body) == (200, b"hi back")
        (seen,) = gateway.seen
        assert seen.body == b"hi"
        assert seen.header("Content-Type") == "text/plain"
        assert (seen.header("User-Agent") or "").startswith("localfaas/")

    def test_method_query_headers_and_namespace(self, gateway: FakeGateway) -> None:
        """GET with a query, extra headers and a namespace still sends the body."""
        gateway.answer("GET", "/function/echo.dev", 200, b"")

        Gateway(gateway.url).invoke(
            "echo",
            b"payload",
            namespace="dev",
            method="GET",
            query=[("a", "1"), ("b", "2 3")],
            headers=[("X-Test", "1"), ("content-type", "application/json")],
        )

        (seen,) = gateway.seen
        assert (seen.method, seen.query) == ("GET", "a=1&b=2+3")
        assert seen.body == b"payload"
        assert seen.header("X-Test") == "1"
        assert seen.header("Content-Type") == "application/json"

    def test_admin_credentials_never_reach_a_function(
        self, gateway: FakeGateway
    ) -> None:
        """The function would see them: no Authorization on /function/."""
        gateway.answer("POST", "/function/echo.openfaas-fn", 200, b"")

        Gateway(gateway.url, ("admin", "secret"), token="t").invoke("echo", b"x")

        assert gateway.seen[0].header("Authorization") is None

    def test_async_goes_to_async_function(self, gateway: FakeGateway) -> None:
        """``/async-function/NAME.NS``; the 202 and its call id come back."""
        gateway.answer(
            "POST", "/async-function/echo.openfaas-fn", 202, b"", [("X-Call-Id", "c1")]
        )

        answer = Gateway(gateway.url).invoke("echo", b"x", asynchronous=True)

        assert answer.status == 202
        assert answer.header("x-call-id") == "c1"

    def test_error_statuses_are_returned_not_raised(self, gateway: FakeGateway) -> None:
        """A function's 401 is its answer, not a gateway login problem."""
        gateway.answer("POST", "/function/guarded.openfaas-fn", 401, b"no")

        answer = Gateway(gateway.url).invoke("guarded")

        assert (answer.status, answer.body) == (401, b"no")


# --- secrets ------------------------------------------------------------------


class TestSecrets:
    """Secret bodies and accepted statuses as faas-cli has them."""

    def test_create_sends_faas_cli_json(self, gateway: FakeGateway) -> None:
        """POST ``{"name":"api-key","value":"s3cr3t"}`` as application/json."""
        gateway.answer("POST", "/system/secrets", 202)

        answer = Gateway(gateway.url, ("admin", "secret")).create_secret(
            "api-key", "s3cr3t"
        )

        assert answer.status == 202
        (seen,) = gateway.seen
        assert seen.body == b'{"name":"api-key","value":"s3cr3t"}'
        assert seen.header("Content-Type") == "application/json"
        assert seen.header("Authorization") == BASIC

    def test_raw_value_is_base64_beside_value(self, gateway: FakeGateway) -> None:
        """``--from-file`` shape: namespace, value and rawValue."""
        gateway.answer("POST", "/system/secrets", 202)
        raw = b"file-secret-\x00\x01bytes"

        Gateway(gateway.url).create_secret(
            "bin-key", raw.decode(), raw=raw, namespace="dev"
        )

        assert gateway.seen[0].json() == {
            "name": "bin-key",
            "namespace": "dev",
            "value": "file-secret-\x00\x01bytes",
            "rawValue": "ZmlsZS1zZWNyZXQtAAFieXRlcw==",
        }

    def test_duplicate_is_a_409_request_failure(self, gateway: FakeGateway) -> None:
        """The caller can tell a duplicate from other failures."""
        gateway.answer("POST", "/system/secrets", 409)

        with pytest.raises(RequestFailed) as error:
            Gateway(gateway.url).create_secret("api-key", "v")
        assert error.value.status == 409

    def test_update_puts_and_remove_deletes(self, gateway: FakeGateway) -> None:
        """PUT with the value; DELETE with the name and namespace only."""
        gateway.answer("PUT", "/system/secrets", 202)
        gateway.answer("DELETE", "/system/secrets", 202)
        client = Gateway(gateway.url)

        client.update_secret("api-key", "n3w")
        client.remove_secret("api-key", "dev")

        put, delete = gateway.seen
        assert (put.method, put.json()) == ("PUT", {"name": "api-key", "value": "n3w"})
        assert (delete.method, delete.json()) == (
            "DELETE",
            {"name": "api-key", "namespace": "dev"},
        )

    def test_delete_answered_204_is_an_error_as_in_faas_cli(
        self, gateway: FakeGateway
    ) -> None:
        """Only 200 and 202 count as removed."""
        gateway.answer("DELETE", "/system/secrets", 204)

        with pytest.raises(RequestFailed) as error:
            Gateway(gateway.url).remove_secret("api-key")
        assert error.value.status == 204

    def test_list_reads_names(self, gateway: FakeGateway) -> None:
        """GET /system/secrets?namespace=dev."""
        listed = [{"name": "a", "namespace": "dev"}]
        gateway.answer_json("GET", "/system/secrets", listed)

        assert Gateway(gateway.url).secrets("dev") == listed
        assert gateway.seen[0].query == "namespace=dev"


# --- logs ---------------------------------------------------------------------


class TestLogs:
    """The logs query and the NDJSON stream."""

    def test_query_matches_faas_cli_and_lines_stream(
        self, gateway: FakeGateway
    ) -> None:
        """follow, name, since (RFC 3339), tail in Go's sorted order."""
        lines = [
            b'{"name":"fn","namespace":"openfaas-fn","instance":"i1",',
            b'"timestamp":"2024-05-01T12:00:00Z","text":"one"}\n\n',
            b'{"name":"fn","instance":"i1","text":"two"}\n',
        ]
        gateway.answer("GET", "/system/logs", 200, iter(lines))
        since = datetime(2024, 5, 1, 11, 0, tzinfo=UTC)

        messages = list(Gateway(gateway.url).logs("fn", since=since))

        assert [m["text"] for m in messages] == ["one", "two"]
        assert gateway.seen[0].query == (
            "follow=false&name=fn&since=2024-05-01T11%3A00%3A00Z&tail=-1"
        )

    def test_follow_and_namespace_and_tail(self, gateway: FakeGateway) -> None:
        """``follow=true``, a namespace and a line count go in the query."""
        gateway.answer("GET", "/system/logs", 200, iter([]))

        list(Gateway(gateway.url).logs("fn", namespace="dev", tail=5, follow=True))

        assert gateway.seen[0].query == "follow=true&name=fn&namespace=dev&tail=5"

    def test_a_refusal_raises_before_iterating(self, gateway: FakeGateway) -> None:
        """The 401 surfaces from logs() itself."""
        gateway.answer("GET", "/system/logs", 401)

        with pytest.raises(Unauthorized):
            Gateway(gateway.url).logs("fn")

    def test_a_line_that_is_not_json_is_reported(self, gateway: FakeGateway) -> None:
        """The error quotes the line."""
        gateway.answer("GET", "/system/logs", 200, iter([b"oops\n"]))

        with pytest.raises(RequestFailed, match="'oops'"):
            list(Gateway(gateway.url).logs("fn"))


# --- connections and TLS --------------------------------------------------------


class TestConnection:
    """No answer, bad URLs, bad CA files."""

    def test_nothing_listening_is_unreachable_with_a_hint(self) -> None:
        """The error names the URL and the reason; the hint says how to start."""
        url = f"http://127.0.0.1:{closed_port()}"

        with pytest.raises(GatewayUnreachable) as error:
            Gateway(url).functions()

        assert (
            str(error.value) == f"cannot reach the gateway at {url}: Connection refused"
        )
        assert error.value.hint == "start it with: localfaas up"

    def test_a_silent_gateway_times_out(self) -> None:
        """A server that accepts and never answers ends in a timeout error."""
        with socket.create_server(("127.0.0.1", 0)) as silent:
            url = f"http://127.0.0.1:{silent.getsockname()[1]}"
            with pytest.raises(GatewayUnreachable, match=r"no answer within 0\.2s"):
                Gateway(url, timeout=0.2).functions()

    @pytest.mark.parametrize("url", ["ftp://host", "127.0.0.1:8080", "http://h:x"])
    def test_a_url_it_cannot_call_is_a_configuration_error(self, url: str) -> None:
        """The error repeats the URL."""
        with pytest.raises(ConfigurationError, match=re.escape(repr(url))):
            Gateway(url)

    def test_a_missing_ca_file_is_a_configuration_error(self, tmp_path: Path) -> None:
        """The error names the file."""
        missing = str(tmp_path / "none.pem")
        with pytest.raises(ConfigurationError, match=r"none\.pem"):
            Gateway("https://localhost:1", tls_verify=missing)


@pytest.fixture
def tls_gateway(tmp_path: Path) -> Iterator[tuple[FakeGateway, TlsFiles, int]]:
    """The fake gateway over HTTPS with its local CA, as ``up --tls`` serves."""
    files = ensure_certificates(tmp_path / "tls", [])
    fake = FakeGateway()
    with serving_https(fake, files) as port:
        yield fake, files, port


class TestHttps:
    """https against a server with the local CA's certificate."""

    def test_the_local_ca_file_makes_https_work(
        self, tls_gateway: tuple[FakeGateway, TlsFiles, int]
    ) -> None:
        """A verified call by name, with the hostname checked."""
        fake, files, port = tls_gateway
        fake.answer_json("GET", "/system/functions", [{"name": "echo"}])

        client = Gateway(f"https://localhost:{port}", tls_verify=str(files.ca))

        assert client.functions() == [{"name": "echo"}]

    def test_an_untrusted_certificate_is_named_with_a_fitting_hint(
        self, tls_gateway: tuple[FakeGateway, TlsFiles, int]
    ) -> None:
        """Without the CA the call fails on trust, not as 'not started'."""
        _, _, port = tls_gateway

        with pytest.raises(GatewayUnreachable) as error:
            Gateway(f"https://localhost:{port}").functions()

        assert "TLS certificate is not trusted" in str(error.value)
        assert error.value.hint is not None
        assert "--tls-no-verify" in error.value.hint

    def test_tls_verify_false_skips_the_checks(
        self, tls_gateway: tuple[FakeGateway, TlsFiles, int]
    ) -> None:
        """For a one-off test against a gateway whose CA is elsewhere."""
        fake, _, port = tls_gateway
        fake.answer_json("GET", "/system/functions", [])

        assert Gateway(f"https://localhost:{port}", tls_verify=False).functions() == []
