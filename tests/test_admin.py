"""Admin auth on /system/: credential files, Basic, and external plugins.

Every middleware runs on a real waitress server on a free loopback port, in
front of a small downstream app; plugins are real waitress servers too.
"""

from __future__ import annotations

import base64
import logging
import stat
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

import httpx
import pytest
import waitress
from conftest import free_port, send_raw

from localfaas.admin import (
    AdminConfigError,
    AdminCredentials,
    BasicAdminAuth,
    PluginAdminAuth,
    admin_middleware,
    is_loopback,
)

# --- helpers ---------------------------------------------------------------


@contextmanager
def running(app: WSGIApplication) -> Iterator[str]:
    """Serve ``app`` with waitress on a free loopback port; yield its URL."""
    server = waitress.create_server(app, host="127.0.0.1", port=0, threads=4)
    stop = threading.Event()
    thread = threading.Thread(target=_serve_until, args=(server, stop))
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        # Workers first, while the loop still serves them; then the loop
        # closes its own sockets: closing them from this thread races with
        # its select() (EBADF).
        server.task_dispatcher.shutdown()
        stop.set()
        thread.join(5)


def _serve_until(server: Any, stop: threading.Event) -> None:
    while not stop.is_set():
        server.asyncore.loop(timeout=0.02, map=server._map, count=1)
    for dispatcher in list(server._map.values()):
        dispatcher.close()


def basic(user: str, password: str) -> str:
    """An Authorization value as faas-cli login sends it."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return f"Basic {token}"


def raw_exchange(url: str, request: bytes) -> tuple[list[bytes], bytes]:
    """Send ``request`` as written; return the status, header lines, body.

    Header names come back lower-cased: waitress, like Go, writes them in
    its own canonical case, and clients compare them case-insensitively.
    """
    host, port = url.removeprefix("http://").split(":")
    answer = send_raw(int(port), request, host=host, timeout=5)
    head, _, body = answer.partition(b"\r\n\r\n")
    status, *fields = head.split(b"\r\n")
    lines = [status]
    for line in fields:
        name, _, value = line.partition(b": ")
        lines.append(name.lower() + b": " + value)
    return lines, body


class Downstream:
    """The admin app behind the middleware; records the bodies it read."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def __call__(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        self.bodies.append(body)

        reply = b"downstream read " + body
        start_response("200 OK", [("Content-Length", str(len(reply)))])
        return [reply]


@dataclass
class Seen:
    """One request as the fake plugin received it."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakePlugin:
    """An auth plugin that records each request and answers as told."""

    status: str = "200 OK"
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    hold: threading.Event | None = None
    seen: list[Seen] = field(default_factory=list)

    def __call__(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        headers = {
            key[5:].replace("_", "-").lower(): value
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        if environ.get("CONTENT_LENGTH"):
            headers["content-length"] = environ["CONTENT_LENGTH"]

        length = int(environ.get("CONTENT_LENGTH") or 0)
        self.seen.append(
            Seen(
                environ["REQUEST_METHOD"],
                environ["PATH_INFO"],
                environ.get("QUERY_STRING", ""),
                headers,
                environ["wsgi.input"].read(length),
            )
        )
        if self.hold is not None:
            self.hold.wait(10)

        start_response(self.status, self.headers)
        return [self.body]


@pytest.fixture
def admin(tmp_path: Path) -> AdminCredentials:
    """Known admin credentials in a temporary secret folder."""
    (tmp_path / "basic-auth-user").write_text("admin\n")
    (tmp_path / "basic-auth-password").write_text("s3cret-Pa55\n")
    return AdminCredentials.load(tmp_path)


@pytest.fixture
def downstream() -> Downstream:
    """A fresh downstream admin app."""
    return Downstream()


@pytest.fixture
def basic_gateway(admin: AdminCredentials, downstream: Downstream) -> Iterator[str]:
    """The downstream app behind BasicAdminAuth, served; yields its URL."""
    with running(BasicAdminAuth(downstream, admin)) as url:
        yield url


# --- credential files --------------------------------------------------------


class TestCredentials:
    def test_created_private_with_random_password(self, tmp_path: Path) -> None:
        """Missing files are created 0600 in a 0700 folder, password random."""
        first = AdminCredentials.load_or_create(tmp_path / "a" / "secrets")
        second = AdminCredentials.load_or_create(tmp_path / "b")

        folder = tmp_path / "a" / "secrets"
        assert first.created
        assert first.folder == folder
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        for name in ("basic-auth-user", "basic-auth-password"):
            assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600

        assert first.user == "admin"
        assert (folder / "basic-auth-password").read_text() == first.password
        assert len(first.password) >= 32
        assert first.password != second.password

    def test_existing_files_reused_and_trimmed(self, tmp_path: Path) -> None:
        """Existing files are read, whitespace-trimmed, and left untouched."""
        (tmp_path / "basic-auth-user").write_text("  alice\n")
        (tmp_path / "basic-auth-password").write_text("\tpw with space \n")

        credentials = AdminCredentials.load_or_create(tmp_path)

        assert not credentials.created
        assert credentials.user == "alice"
        assert credentials.password == "pw with space"
        assert (tmp_path / "basic-auth-user").read_text() == "  alice\n"

    def test_only_missing_file_created(self, tmp_path: Path) -> None:
        """A missing password is generated beside an existing user file."""
        (tmp_path / "basic-auth-user").write_text("bob")

        credentials = AdminCredentials.load_or_create(tmp_path)

        assert credentials.created
        assert credentials.user == "bob"
        assert credentials.password

    def test_second_load_reuses_generated_files(self, tmp_path: Path) -> None:
        """Starting again reads the password generated the first time."""
        first = AdminCredentials.load_or_create(tmp_path)
        again = AdminCredentials.load_or_create(tmp_path)

        assert not again.created
        assert again.password == first.password

    @pytest.mark.parametrize("content", ["", " \n\t"])
    def test_empty_file_refused(self, tmp_path: Path, content: str) -> None:
        """An empty password file is an error naming the file."""
        (tmp_path / "basic-auth-user").write_text("admin")
        (tmp_path / "basic-auth-password").write_text(content)

        with pytest.raises(AdminConfigError, match=r"basic-auth-password.*empty"):
            AdminCredentials.load_or_create(tmp_path)

    def test_missing_file_refused_by_load(self, tmp_path: Path) -> None:
        """``load`` never creates files; a missing one is named."""
        with pytest.raises(AdminConfigError, match="basic-auth-user"):
            AdminCredentials.load(tmp_path)

    def test_password_not_in_repr(self, admin: AdminCredentials) -> None:
        """The password never shows up when credentials are printed."""
        assert "s3cret" not in repr(admin)


# --- Basic ---------------------------------------------------------------------


class TestBasic:
    def test_right_credentials_reach_app(
        self, basic_gateway: str, downstream: Downstream
    ) -> None:
        """faas-cli login's request with the right credentials is admitted."""
        response = httpx.post(
            f"{basic_gateway}/system/functions",
            headers={"Authorization": basic("admin", "s3cret-Pa55")},
            content=b'{"service":"echo"}',
        )

        assert response.status_code == 200
        assert response.content == b'downstream read {"service":"echo"}'
        assert downstream.bodies == [b'{"service":"echo"}']

    def test_scheme_is_case_insensitive(self, basic_gateway: str) -> None:
        """``basic`` and ``BASIC`` work like ``Basic`` (RFC 9110 §11.1)."""
        token = basic("admin", "s3cret-Pa55").split()[1]
        for scheme in ("basic", "BASIC"):
            response = httpx.get(
                f"{basic_gateway}/system/info",
                headers={"Authorization": f"{scheme} {token}"},
            )
            assert response.status_code == 200

    def test_exact_failure_bytes(self, basic_gateway: str) -> None:
        """The refusal is the gateway's, byte for byte, on the wire."""
        lines, body = raw_exchange(
            basic_gateway,
            b"GET /system/functions HTTP/1.1\r\n"
            b"Host: gw\r\n"
            b"Authorization: Basic YWRtaW46d3Jvbmc=\r\n"
            b"Connection: close\r\n\r\n",
        )

        assert lines[0] == b"HTTP/1.1 401 Unauthorized"
        assert b'www-authenticate: Basic realm="Restricted"' in lines
        assert b"content-type: text/plain; charset=utf-8" in lines
        assert b"content-length: 19" in lines
        assert not any(line.startswith(b"x-content-type") for line in lines)
        assert body == b"invalid credentials"

    def test_faas_cli_logout_bearer_refused(
        self, basic_gateway: str, downstream: Downstream
    ) -> None:
        """faas-cli's ``Bearer `` with an empty token after logout gets 401."""
        lines, body = raw_exchange(
            basic_gateway,
            b"GET /system/functions HTTP/1.1\r\n"
            b"Host: gw\r\n"
            b"Authorization: Bearer \r\n"
            b"Connection: close\r\n\r\n",
        )

        assert lines[0] == b"HTTP/1.1 401 Unauthorized"
        assert b'www-authenticate: Basic realm="Restricted"' in lines
        assert body == b"invalid credentials"
        assert downstream.bodies == []

    @pytest.mark.parametrize(
        "authorization",
        [
            None,
            "",
            "Bearer some.jwt.token",
            basic("admin", "wrong"),
            basic("root", "s3cret-Pa55"),
            basic("admin", "s3cret-Pa55x"),
            basic("admin", ""),
            "Basic !!!not-base64!!!",
            "Basic " + base64.b64encode(b"admins3cret-Pa55").decode(),
            "Basic",
            "s3cret-Pa55",
        ],
    )
    def test_bad_credentials_refused_before_body(
        self,
        basic_gateway: str,
        downstream: Downstream,
        authorization: str | None,
    ) -> None:
        """Wrong, missing or malformed credentials get the same 401."""
        headers = {} if authorization is None else {"Authorization": authorization}
        response = httpx.post(
            f"{basic_gateway}/system/functions",
            headers=headers,
            content=b"{not json",
        )

        assert response.status_code == 401
        assert response.headers["www-authenticate"] == 'Basic realm="Restricted"'
        assert response.content == b"invalid credentials"
        assert downstream.bodies == []

    def test_password_with_colon(self, tmp_path: Path) -> None:
        """A password may contain colons; only the first one splits."""
        (tmp_path / "basic-auth-user").write_text("admin")
        (tmp_path / "basic-auth-password").write_text("a:b:c")
        credentials = AdminCredentials.load(tmp_path)

        with running(BasicAdminAuth(Downstream(), credentials)) as url:
            right = {"Authorization": basic("admin", "a:b:c")}
            cut = {"Authorization": basic("admin", "a:b")}
            good, bad = httpx.get(url, headers=right), httpx.get(url, headers=cut)

        assert (good.status_code, bad.status_code) == (200, 401)

    def test_refusal_logged_without_secrets(
        self, basic_gateway: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        """One log line per refusal, naming the path, not the credentials."""
        caplog.set_level(logging.INFO, logger="localfaas.admin")
        httpx.get(
            f"{basic_gateway}/system/secrets?token=qs-secret",
            headers={"Authorization": basic("admin", "guessed-pw")},
        )

        records = [r for r in caplog.records if r.name == "localfaas.admin"]
        assert len(records) == 1
        message = records[0].getMessage()
        assert "path=/system/secrets" in message
        assert "wrong user or password" in message
        for secret in ("guessed-pw", "qs-secret", "YWRtaW46"):
            assert secret not in message


# --- plugin ------------------------------------------------------------------


@contextmanager
def plugin_gateway(
    plugin: FakePlugin,
    downstream: Downstream,
    *,
    pass_body: bool = False,
    timeout: float = 5.0,
    query: str = "",
) -> Iterator[str]:
    """The downstream app behind PluginAdminAuth and ``plugin``, served."""
    with running(plugin) as plugin_url:
        url = f"{plugin_url}/validate{query}"
        guard = PluginAdminAuth(
            downstream,
            url,
            pass_body=pass_body,
            timeout=timeout,
        )
        with running(guard) as gateway_url:
            yield gateway_url


class TestPlugin:
    def test_allow_sends_get_with_all_headers(self, downstream: Downstream) -> None:
        """A 200 admits; the plugin got a GET to its URL with the headers."""
        plugin = FakePlugin()
        with plugin_gateway(plugin, downstream, query="?realm=x") as url:
            response = httpx.post(
                f"{url}/system/functions?namespace=dev",
                headers={
                    "Authorization": "Bearer tok",
                    "Cookie": "session=abc",
                    "X-Call-Id": "c1",
                    "Content-Type": "application/json",
                },
                content=b'{"service":"echo"}',
            )

        assert response.status_code == 200
        assert response.content == b'downstream read {"service":"echo"}'

        [seen] = plugin.seen
        assert (seen.method, seen.path) == ("GET", "/validate")
        assert seen.query == "realm=x"
        assert seen.headers["authorization"] == "Bearer tok"
        assert seen.headers["cookie"] == "session=abc"
        assert seen.headers["x-call-id"] == "c1"
        assert seen.headers["content-type"] == "application/json"
        assert seen.headers["host"].startswith("127.0.0.1:")
        assert "content-length" not in seen.headers
        assert seen.body == b""

    def test_hop_by_hop_headers_dropped(self, downstream: Downstream) -> None:
        """Connection, the headers it names and Proxy-* stay on this hop."""
        plugin = FakePlugin()
        with plugin_gateway(plugin, downstream) as url:
            response = httpx.get(
                f"{url}/system/info",
                headers={
                    "Connection": "keep-alive, X-Hop",
                    "X-Hop": "1",
                    "X-Kept": "2",
                    "Keep-Alive": "timeout=5",
                    "Proxy-Authorization": "Basic eDp5",
                },
            )

        assert response.status_code == 200
        headers = plugin.seen[0].headers
        assert headers["x-kept"] == "2"
        assert "x-hop" not in headers
        assert "keep-alive" not in headers
        assert "proxy-authorization" not in headers
        assert "keep-alive" not in headers.get("connection", "")

    def test_deny_passed_back_unchanged(self, downstream: Downstream) -> None:
        """A refusal's status, headers and body reach the client as sent."""
        plugin = FakePlugin(
            status="401 Unauthorized",
            headers=[
                ("WWW-Authenticate", 'Bearer realm="sso", error="invalid_token"'),
                ("X-Plugin", "p1"),
                ("Content-Type", "application/json"),
            ],
            body=b'{"error":"expired"}',
        )
        with plugin_gateway(plugin, downstream) as url:
            response = httpx.delete(f"{url}/system/functions")

        assert response.status_code == 401
        assert response.reason_phrase == "Unauthorized"
        assert (
            response.headers["www-authenticate"]
            == 'Bearer realm="sso", error="invalid_token"'
        )
        assert response.headers["x-plugin"] == "p1"
        assert response.headers["content-type"] == "application/json"
        assert response.content == b'{"error":"expired"}'
        assert downstream.bodies == []

    @pytest.mark.parametrize(
        ("status", "headers"),
        [
            ("202 Accepted", []),
            ("204 No Content", []),
            ("403 Forbidden", []),
            ("302 Found", [("Location", "http://127.0.0.1:9/login")]),
        ],
    )
    def test_anything_but_200_refuses(
        self,
        downstream: Downstream,
        status: str,
        headers: list[tuple[str, str]],
    ) -> None:
        """Only exactly 200 admits; redirects are relayed, not followed."""
        plugin = FakePlugin(status=status, headers=headers)
        with plugin_gateway(plugin, downstream) as url:
            response = httpx.get(f"{url}/system/info")

        assert response.status_code == int(status.split()[0])
        assert response.headers.get("location") == dict(headers).get("Location")
        assert downstream.bodies == []
        assert len(plugin.seen) == 1

    def test_plugin_down_fails_closed(self, downstream: Downstream) -> None:
        """An unreachable plugin gives 500 with the error text and a newline."""
        plugin_url = f"http://127.0.0.1:{free_port()}/validate"
        guard = PluginAdminAuth(downstream, plugin_url, pass_body=False, timeout=2)
        with running(guard) as url:
            response = httpx.get(f"{url}/system/functions")

        assert response.status_code == 500
        assert response.text == f'Get "{plugin_url}": Connection refused\n'
        assert response.headers["content-type"] == "text/plain; charset=utf-8"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert downstream.bodies == []

    def test_slow_plugin_times_out(
        self, downstream: Downstream, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A plugin that does not answer in time gives 500, not a hang."""
        hold = threading.Event()
        plugin = FakePlugin(hold=hold)
        with plugin_gateway(plugin, downstream, timeout=0.3) as url:
            try:
                response = httpx.get(f"{url}/system/functions", timeout=10)
            finally:
                hold.set()

        assert response.status_code == 500
        assert response.text.endswith(": no answer within 0.3s\n")
        assert response.headers["x-content-type-options"] == "nosniff"
        assert downstream.bodies == []
        assert any("auth plugin unavailable" in r.message for r in caplog.records)

    def test_pass_body(self, downstream: Downstream) -> None:
        """With pass_body the plugin gets the body; the app still reads it."""
        plugin = FakePlugin()
        body = b'{"name":"api-key","value":"v"}' * 100
        with plugin_gateway(plugin, downstream, pass_body=True) as url:
            response = httpx.post(
                f"{url}/system/secrets",
                headers={"Content-Type": "application/json"},
                content=body,
            )

        assert response.status_code == 200
        [seen] = plugin.seen
        assert seen.method == "GET"
        assert seen.body == body
        assert seen.headers["content-type"] == "application/json"
        assert seen.headers["content-length"] == str(len(body))
        assert downstream.bodies == [body]

    def test_pass_body_chunked(self, downstream: Downstream) -> None:
        """A chunked request body is passed whole, with its length."""
        plugin = FakePlugin()
        parts = [b"part-one;", b"part-two;", b"part-three"]
        with plugin_gateway(plugin, downstream, pass_body=True) as url:
            response = httpx.put(f"{url}/system/functions", content=iter(parts))

        assert response.status_code == 200
        assert plugin.seen[0].body == b"".join(parts)
        assert plugin.seen[0].headers["content-length"] == "28"
        assert downstream.bodies == [b"".join(parts)]

    def test_body_not_passed_by_default(self, downstream: Downstream) -> None:
        """Without pass_body the plugin gets no body, as upstream sent none."""
        plugin = FakePlugin()
        with plugin_gateway(plugin, downstream) as url:
            httpx.post(f"{url}/system/functions", content=b"payload")

        assert plugin.seen[0].body == b""
        assert "content-length" not in plugin.seen[0].headers
        assert downstream.bodies == [b"payload"]

    def test_refusal_logged(
        self, downstream: Downstream, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A plugin refusal is logged once, with its status."""
        caplog.set_level(logging.INFO, logger="localfaas.admin")
        plugin = FakePlugin(status="403 Forbidden")
        with plugin_gateway(plugin, downstream) as url:
            httpx.get(f"{url}/system/info", headers={"Authorization": "Bearer t0k"})

        messages = [r.getMessage() for r in caplog.records]
        assert [m for m in messages if "refused" in m] == [
            "admin request refused method=GET path=/system/info "
            "client=127.0.0.1 reason=auth plugin answered 403"
        ]
        assert not any("t0k" in m for m in messages)

    @pytest.mark.parametrize(
        ("url", "match"),
        [
            ("ftp://127.0.0.1/validate", "http:// or https://"),
            ("http:///validate", "http:// or https://"),
            ("127.0.0.1:8081/validate", "http:// or https://"),
            ("http://127.0.0.1:port/validate", "does not parse"),
            ("http://u:p@127.0.0.1/validate", "user or password"),
        ],
    )
    def test_unusable_url_refused(self, url: str, match: str) -> None:
        """A plugin URL that cannot work is refused when configured."""
        with pytest.raises(AdminConfigError, match=match):
            PluginAdminAuth(Downstream(), url, pass_body=False, timeout=1)

    def test_timeout_must_be_positive(self) -> None:
        """A zero timeout is refused when configured."""
        with pytest.raises(AdminConfigError, match="positive"):
            PluginAdminAuth(
                Downstream(), "http://127.0.0.1/v", pass_body=False, timeout=0
            )


# --- factory -----------------------------------------------------------------


class TestFactory:
    def test_basic(self, admin: AdminCredentials, downstream: Downstream) -> None:
        """Mode basic guards the app with the given credentials."""
        app = admin_middleware(downstream, mode="basic", credentials=admin)

        with running(app) as url:
            assert httpx.get(url).status_code == 401

    def test_plugin(self, downstream: Downstream) -> None:
        """Mode plugin asks the plugin at ``plugin_url``."""
        plugin = FakePlugin(status="418 I'm a teapot")
        with running(plugin) as plugin_url:
            app = admin_middleware(
                downstream,
                mode="plugin",
                plugin_url=f"{plugin_url}/validate",
                pass_body=True,
                timeout=2,
            )
            with running(app) as url:
                response = httpx.post(url, content=b"b")

        assert response.status_code == 418
        assert plugin.seen[0].body == b"b"

    def test_none_on_loopback(self, downstream: Downstream) -> None:
        """Mode none on loopback leaves the app unwrapped."""
        app = admin_middleware(downstream, mode="none", loopback=True)
        assert app is downstream

    def test_none_elsewhere_refused(self, downstream: Downstream) -> None:
        """Mode none is refused unless the caller says it binds loopback."""
        with pytest.raises(ValueError, match="only when the emulator listens"):
            admin_middleware(downstream, mode="none")

    @pytest.mark.parametrize(
        ("mode", "match"),
        [("basic", "needs credentials"), ("plugin", "needs the plugin's URL")],
    )
    def test_missing_setting_refused(
        self, downstream: Downstream, mode: str, match: str
    ) -> None:
        """A mode without its setting is refused with what to give."""
        with pytest.raises(AdminConfigError, match=match):
            admin_middleware(downstream, mode=mode)

    def test_unknown_mode_refused(self, downstream: Downstream) -> None:
        """An unknown mode is refused, naming the value and the choices."""
        with pytest.raises(AdminConfigError, match=r"'oauth'.*'basic', 'plugin'"):
            admin_middleware(downstream, mode="oauth")


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("127.8.9.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.20", False),
        ("example.com", False),
    ],
)
def test_is_loopback(host: str, expected: bool) -> None:
    """Only loopback addresses count as loopback."""
    assert is_loopback(host) is expected
