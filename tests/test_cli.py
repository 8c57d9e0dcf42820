"""The ``localfaas`` CLI: parsing, messages, exit codes, and the requests it sends.

Commands run through click's ``CliRunner``; client commands talk to the
recording ``FakeGateway`` of ``test_client.py`` on a real waitress server,
and every signature header is checked here with ``hmac`` directly. The
last tests start the real gateway and an auth plugin as subprocesses.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from click.testing import CliRunner, Result
from conftest import free_port
from servers import serving_https
from test_client import BASIC, FakeGateway, closed_port, running

from faas_runtime import _webhooks as webhooks
from faas_runtime._secrets import SecretFile
from faas_runtime._types import AuthRequest, Headers
from localfaas import app
from localfaas.cli import (
    Login,
    cli,
    find_login,
    gateway_url,
    plain_http_problem,
    up_options,
)
from localfaas.errors import ConfigurationError
from localfaas.settings import UpOptions
from localfaas.stack import StackError
from localfaas.tls import default_tls_dir, ensure_certificates

# Every variable the CLI reads; each test starts without them.
_ENVIRONMENT = (
    "OPENFAAS_URL",
    "OPENFAAS_USERNAME",
    "OPENFAAS_PASSWORD",
    "OPENFAAS_CONFIG",
    "OPENFAAS_PREFIX",
    "CI",
    "secret_mount_path",
    "auth_proxy_url",
    "auth_pass_body",
    "auth_proxy_pass_body",
    "upstream_timeout",
    "port",
    "issuer",
    "audience",
    "jwks_url",
    "jwks_file",
    "pem_file",
    "user_filename",
    "pass_filename",
)


@pytest.fixture(autouse=True)
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in an empty project folder with a private HOME and no CLI env."""
    for name in _ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))

    folder = tmp_path / "project"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


@pytest.fixture
def gateway() -> Iterator[FakeGateway]:
    """A recording fake gateway on a free port."""
    with running(FakeGateway()) as fake:
        yield fake


def run(*args: str, input: bytes | str | None = None, **env: str) -> Result:
    """Run ``localfaas ARGS`` in-process; keep stdout and stderr apart."""
    return CliRunner().invoke(cli, list(args), input=input, env=env or None)


def failed(result: Result, code: int = 1) -> str:
    """Assert the exit code and no traceback; return stderr."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result.stderr


def write_credentials(folder: Path, user: str, password: str) -> None:
    """The two files ``localfaas up`` writes."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "basic-auth-user").write_text(f"{user}\n")
    (folder / "basic-auth-password").write_text(f"{password}\n")


def basic(user: str, password: str) -> str:
    """An Authorization value for Basic credentials."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def hex_hmac(key: bytes, message: bytes, algorithm: str = "sha256") -> str:
    """Lower-case hex HMAC, computed here independently of the CLI."""
    return hmac.new(key, message, algorithm).hexdigest()


def b64_hmac(key: bytes, message: bytes) -> str:
    """Base64 HMAC-SHA256, computed here independently of the CLI."""
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()


# --- the boundary -------------------------------------------------------------


class TestBoundary:
    """One place turns failures into lines and exit codes."""

    def test_version(self) -> None:
        """``--version`` prints the package version and exits 0."""
        result = run("--version")
        assert result.exit_code == 0
        assert result.stdout == "localfaas, version 0.1.0\n"

    def test_unknown_command_is_a_usage_error(self) -> None:
        """click's usage errors exit 2."""
        assert "No such command" in failed(run("deploy"), 2)

    def test_unreachable_gateway_is_one_error_line_and_a_hint(self) -> None:
        """Exit 1, ``Error:`` with the URL and reason, ``Hint:`` to start it."""
        url = f"http://127.0.0.1:{closed_port()}"

        stderr = failed(run("list", "-g", url))

        assert stderr == (
            f"Error: cannot reach the gateway at {url}: Connection refused\n"
            "Hint: start it with: localfaas up\n"
        )

    def test_ctrl_c_exits_130_quietly(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """An interrupt inside a command prints nothing and exits 130."""

        def interrupted(options: UpOptions) -> None:
            raise KeyboardInterrupt

        monkeypatch.setattr(app, "up", interrupted)
        result = run("up")

        assert result.exit_code == 130
        assert result.output == ""

    @pytest.mark.parametrize(
        ("error", "shown"),
        [
            (StackError("stack.yaml:3: bad"), "Error: stack.yaml:3: bad\n"),
            (
                ConfigurationError("port 1 is taken", hint="use --port"),
                "Error: port 1 is taken\nHint: use --port\n",
            ),
        ],
    )
    def test_project_errors_from_up_become_messages(
        self, monkeypatch: pytest.MonkeyPatch, error: Exception, shown: str
    ) -> None:
        """The gateway's errors reach the user as lines, never tracebacks."""

        def failing(options: UpOptions) -> None:
            raise error

        monkeypatch.setattr(app, "up", failing)
        assert failed(run("up")) == shown

    def test_up_without_a_stack_file_says_where_it_looked(self) -> None:
        """The real gateway's StackError, through the boundary."""
        stderr = failed(run("up", "--port", str(free_port())))
        assert stderr.startswith("Error: no stack file found: looked for ")
        assert stderr.count("\n") == 1


# --- up ---------------------------------------------------------------------


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[UpOptions]:
    """Replace the gateway with a recorder of the options it was given."""
    calls: list[UpOptions] = []
    monkeypatch.setattr(app, "up", calls.append)
    return calls


class TestUp:
    """``up`` flags and environment twins become ``UpOptions``."""

    def test_defaults_are_settings_defaults(self, started: list[UpOptions]) -> None:
        """No flags: exactly ``UpOptions()``."""
        assert run("up").exit_code == 0
        assert started == [UpOptions()]

    def test_every_flag_reaches_the_options(self, started: list[UpOptions]) -> None:
        """Each flag sets its field."""
        result = run(
            "up",
            "-f",
            "other.yml",
            "--port",
            "9090",
            "--host",
            "0.0.0.0",
            "--tls",
            "--state-dir",
            "st",
            "--auth-proxy-url",
            "http://127.0.0.1:8081/validate",
            "--auth-pass-body",
            "--secret-mount-path",
            "creds",
            "--upstream-timeout",
            "1m5s",
            "--no-watch",
            "--docker",
            "--threads",
            "4",
        )

        assert result.exit_code == 0, result.output
        assert started == [
            UpOptions(
                stack_file=Path("other.yml"),
                host="0.0.0.0",
                port=9090,
                tls=True,
                state_dir=Path("st"),
                admin_auth="plugin",
                auth_proxy_url="http://127.0.0.1:8081/validate",
                auth_pass_body=True,
                secret_mount_path=Path("creds"),
                upstream_timeout=65.0,
                watch=False,
                docker=True,
                threads=4,
            )
        ]

    def test_environment_twins(self, started: list[UpOptions]) -> None:
        """OpenFaaS's variable names set the same options."""
        result = run(
            "up",
            auth_proxy_url="http://127.0.0.1:9/validate",
            auth_pass_body="true",
            secret_mount_path="/run/secrets",
            upstream_timeout="30",
        )

        assert result.exit_code == 0, result.output
        (options,) = started
        assert options.admin_auth == "plugin"
        assert options.auth_proxy_url == "http://127.0.0.1:9/validate"
        assert options.auth_pass_body is True
        assert options.secret_mount_path == Path("/run/secrets")
        assert options.upstream_timeout == 30.0

    @pytest.mark.parametrize(
        ("env", "expected"),
        [
            ({"auth_proxy_pass_body": "true"}, True),
            ({"auth_pass_body": "True"}, False),
            ({"auth_pass_body": "1"}, False),
        ],
    )
    def test_pass_body_is_true_only_for_exact_true(
        self, started: list[UpOptions], env: dict[str, str], expected: bool
    ) -> None:
        """The gateway's boolean rule; the historical name is an alias."""
        assert run("up", **env).exit_code == 0
        assert started[0].auth_pass_body is expected

    def test_no_admin_auth_on_loopback(self, started: list[UpOptions]) -> None:
        """``--no-admin-auth`` asks for admin auth mode ``none``."""
        assert run("up", "--no-admin-auth").exit_code == 0
        assert started[0].admin_auth == "none"

    @pytest.mark.parametrize("value", ["soon", "-5s", "0", "nan"])
    def test_a_bad_upstream_timeout_is_a_usage_error(
        self, started: list[UpOptions], value: str
    ) -> None:
        """The value given is repeated; nothing starts."""
        stderr = failed(run("up", "--upstream-timeout", value), 2)
        assert repr(value) in stderr
        assert started == []

    def test_no_admin_auth_and_a_plugin_contradict(
        self, started: list[UpOptions]
    ) -> None:
        """Both at once is refused before anything starts."""
        args = ("up", "--no-admin-auth", "--auth-proxy-url", "http://x/validate")
        assert "contradict" in failed(run(*args), 2)
        assert started == []

    def test_plain_http_on_a_public_address_is_refused(
        self, started: list[UpOptions]
    ) -> None:
        """One error line and a hint; exit 2; the gateway is not started."""
        stderr = failed(run("up", "--host", "0.0.0.0"), 2)

        assert stderr == (
            "Error: refusing to serve plain HTTP on 0.0.0.0: admin credentials"
            " and function traffic would cross the network unencrypted\n"
            "Hint: add --tls (HTTPS with a local CA), or --insecure if this"
            " network is trusted\n"
        )
        assert started == []

    @pytest.mark.parametrize(
        ("host", "tls", "insecure", "admin", "refused"),
        [
            ("127.0.0.1", False, False, "basic", False),
            ("::1", False, False, "none", False),
            ("localhost", False, False, "basic", False),
            ("0.0.0.0", False, False, "basic", True),
            ("192.0.2.5", True, False, "basic", False),
            ("192.0.2.5", False, True, "plugin", False),
            ("0.0.0.0", True, True, "none", True),
        ],
    )
    def test_plain_http_problem(
        self, host: str, tls: bool, insecure: bool, admin: str, refused: bool
    ) -> None:
        """Loopback is free; elsewhere TLS or --insecure; open admin never."""
        options = UpOptions(host=host, tls=tls, insecure=insecure, admin_auth=admin)

        problem = plain_http_problem(options)

        assert (problem is not None) is refused
        if problem is not None:
            assert host in problem[0]

    def test_up_options_is_the_pure_mapping(self) -> None:
        """Callable without click, for tests and embedding."""
        options = up_options(
            stack_file=None,
            port=8080,
            host="127.0.0.1",
            tls=False,
            insecure=False,
            state_dir=None,
            no_admin_auth=False,
            auth_proxy_url="",
            auth_pass_body=False,
            secret_mount_path=None,
            upstream_timeout=60.0,
            no_watch=False,
            docker=False,
            threads=16,
        )
        assert options == UpOptions()


# --- new --------------------------------------------------------------------


class TestNew:
    """``new`` behaves and prints as ``faas-cli new``."""

    def test_prints_faas_cli_lines_and_writes_the_stack(self, project: Path) -> None:
        """Folder, function, stack file, then the template's notes."""
        result = run("new", "hello", "--lang", "python3-http-auth")

        assert result.exit_code == 0, result.output
        lines = result.stdout.splitlines()
        assert lines[:4] == [
            "Folder: hello created.",
            "Function created in folder: hello",
            "Stack file written: stack.yaml",
            "",
        ]
        assert lines[4] == "Notes:"
        assert "python3-http-auth" in lines[5]
        assert (project / "hello" / "handler.py").is_file()
        assert (
            "  hello:\n    lang: python3-http-auth\n"
            in (project / "stack.yaml").read_text()
        )

    def test_gateway_is_normalised_as_faas_cli_does(self, project: Path) -> None:
        """Lower-cased, no trailing slash, http:// added."""
        run("new", "a", "--lang", "python3-http-auth", "-g", "Example.test:8080/")
        assert (
            "gateway: http://example.test:8080\n"
            in (project / "stack.yaml").read_text()
        )

    def test_append_and_quiet_and_prefix(self, project: Path) -> None:
        """``-a`` updates the file; ``-q`` drops the notes; ``-p`` the image."""
        run("new", "first", "--lang", "python3-http-auth", "-q")

        result = run(
            "new",
            "second",
            "--lang",
            "python3-http-auth",
            "-a",
            "stack.yaml",
            "-q",
            OPENFAAS_PREFIX="ghcr.io/me",
        )

        assert result.exit_code == 0, result.output
        assert result.stdout.splitlines()[-1] == "Stack file updated: stack.yaml"
        assert "Notes:" not in result.stdout
        assert "image: ghcr.io/me/second:latest" in (project / "stack.yaml").read_text()

    def test_list_shows_the_templates(self) -> None:
        """faas-cli's heading and one ``- name`` per template."""
        result = run("new", "--list")

        assert result.exit_code == 0
        lines = result.stdout.splitlines()
        assert lines[0] == "Languages available as templates:"
        assert "- python3-http-auth" in lines
        assert "- python3-flask-auth" in lines

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (
                ("new", "hello"),
                "you must supply a function language with the --lang flag",
            ),
            (
                ("new", "--lang", "python3-http-auth"),
                "please provide a name for the function",
            ),
        ],
    )
    def test_missing_lang_or_name_is_a_usage_error(
        self, args: tuple[str, ...], message: str
    ) -> None:
        """faas-cli's messages, exit 2."""
        assert message in failed(run(*args), 2)

    def test_invalid_name_and_existing_folder_fail(self, project: Path) -> None:
        """The template module's refusals come out as one Error line each."""
        stderr = failed(run("new", "Bad_Name", "--lang", "python3-http-auth"))
        assert "function name can only contain a-z, 0-9 and dashes" in stderr

        (project / "taken").mkdir()
        stderr = failed(run("new", "taken", "--lang", "python3-http-auth"))
        assert stderr.startswith("Error: folder: taken already exists")

    def test_unknown_template_names_what_exists(self) -> None:
        """faas-cli's not-found message, then what is available."""
        stderr = failed(run("new", "x", "--lang", "cobol"))
        assert 'template: "cobol" was not found' in stderr
        assert "python3-http-auth" in stderr


# --- invoke -----------------------------------------------------------------


class TestInvoke:
    """``invoke`` sends faas-cli's requests and prints the answer."""

    def test_stdin_bytes_go_to_name_dot_namespace(self, gateway: FakeGateway) -> None:
        """Raw stdin (NUL included) is POSTed; the answer printed raw."""
        gateway.answer("POST", "/function/echo.openfaas-fn", 200, b"\x00back")

        result = run("invoke", "echo", "-g", gateway.url, input=b"\x00\xffhi")

        assert result.exit_code == 0, result.output
        assert result.stdout_bytes == b"\x00back"
        (seen,) = gateway.seen
        assert seen.body == b"\x00\xffhi"
        assert seen.header("Content-Type") == "text/plain"
        assert seen.header("Authorization") is None

    def test_gateway_from_openfaas_url(self, gateway: FakeGateway) -> None:
        """Without ``-g`` the environment names the gateway."""
        gateway.answer("POST", "/function/echo.openfaas-fn", 200, b"ok")

        result = run("invoke", "echo", input=b"", OPENFAAS_URL=gateway.url + "/")

        assert result.exit_code == 0, result.output
        assert result.stdout == "ok"

    def test_method_query_headers_namespace_content_type(
        self, gateway: FakeGateway
    ) -> None:
        """clients.md's 'options' case, request for request."""
        gateway.answer("GET", "/function/echo.dev", 200, b"")

        result = run(
            "invoke",
            "echo",
            "-g",
            gateway.url,
            "--method",
            "get",
            "--query",
            "a=1",
            "--query",
            "b=2",
            "-H",
            "X-Test: 1",
            "-n",
            "dev",
            "--content-type",
            "application/json",
            input=b"{}",
        )

        assert result.exit_code == 0, result.output
        (seen,) = gateway.seen
        assert (seen.method, seen.path, seen.query) == (
            "GET",
            "/function/echo.dev",
            "a=1&b=2",
        )
        assert seen.header("X-Test") == "1"
        assert seen.header("Content-Type") == "application/json"
        assert seen.body == b"{}"

    def test_credentials_are_never_sent_to_functions(
        self, gateway: FakeGateway, project: Path
    ) -> None:
        """Even with a password in the environment and files on disk."""
        gateway.answer("POST", "/function/echo.openfaas-fn", 200, b"")
        write_credentials(project / ".localfaas" / "credentials", "admin", "pw")

        run("invoke", "echo", "-g", gateway.url, input=b"", OPENFAAS_PASSWORD="pw")

        assert gateway.seen[0].header("Authorization") is None

    def test_non_2xx_is_faas_cli_error(self, gateway: FakeGateway) -> None:
        """``server returned unexpected status code: 500 - boom``, exit 1."""
        gateway.answer("POST", "/function/echo.openfaas-fn", 500, b"boom\n")

        stderr = failed(run("invoke", "echo", "-g", gateway.url, input=b""))

        assert stderr == "Error: server returned unexpected status code: 500 - boom\n"

    def test_async_202_says_submitted_and_gives_the_call_id(
        self, gateway: FakeGateway
    ) -> None:
        """Message on stdout, call id on stderr, callback URL as a header."""
        gateway.answer(
            "POST", "/async-function/echo.openfaas-fn", 202, b"", [("X-Call-Id", "c-1")]
        )

        result = run(
            "invoke",
            "echo",
            "-g",
            gateway.url,
            "--async",
            "--callback-url",
            "http://127.0.0.1:9999/cb",
            input=b"x",
        )

        assert result.exit_code == 0, result.output
        assert result.stdout == "Function submitted asynchronously.\n"
        assert result.stderr == "Call ID: c-1\n"
        assert gateway.seen[0].header("X-Callback-Url") == "http://127.0.0.1:9999/cb"

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (("--callback-url", "http://x/"), "--callback-url needs --async"),
            (("-H", "NoColon"), "'NoColon' is not \"Key: Value\""),
            (("--query", "novalue"), "'novalue' is not key=value"),
            (("--sign", "hmac"), "signing requires both --sign"),
            (("--key", "k"), "signing requires both --sign"),
            (("--sign-header", "Hmac"), "--sign-header needs --sign"),
            (("--sign", "github", "--key", "k", "--sign-header", "X"), "fixed header"),
            (
                ("--sign", "X-Hub-Signature", "--key", "k"),
                "'X-Hub-Signature' is not one of",
            ),
        ],
    )
    def test_usage_errors(
        self, gateway: FakeGateway, args: tuple[str, ...], message: str
    ) -> None:
        """Exit 2 with the value named; nothing is sent."""
        stderr = failed(run("invoke", "echo", "-g", gateway.url, *args, input=b""), 2)
        assert message in stderr
        assert gateway.seen == []


# --- signing ----------------------------------------------------------------


@pytest.fixture
def signed(gateway: FakeGateway) -> Any:
    """Invoke with ``--sign`` flags and body; return the request as seen."""
    gateway.answer("POST", "/function/hook.openfaas-fn", 200, b"")

    def send(*args: str, body: bytes = b"hello") -> dict[str, str]:
        result = run("invoke", "hook", "-g", gateway.url, *args, input=body)
        assert result.exit_code == 0, result.output
        return gateway.seen[-1].headers

    return send


WHSEC_RAW = bytes(range(32))
WHSEC = "whsec_" + base64.b64encode(WHSEC_RAW).decode()


class TestSigning:
    """``--sign`` produces each sender's signature headers."""

    def test_hmac_reproduces_faas_cli_sign_hmac(self, signed: Any) -> None:
        """tooling.md's vector: key k, body hello."""
        headers = signed("--sign", "hmac", "--key", "k")
        assert headers["hmac"] == (
            "sha256=406e4b43f87095aa86ca6299d25e875921fefa180f02043bb29bec5681c0c2d0"
        )

    def test_hmac_with_a_named_header(self, signed: Any) -> None:
        """``--sign-header x-hub-signature`` carries the same value."""
        headers = signed(
            "--sign",
            "HMAC",
            "--key",
            "yoursecret",
            "--sign-header",
            "x-hub-signature",
            body=b"OpenFaaS",
        )
        assert headers["x-hub-signature"] == (
            "sha256=8819bb09e21474635b917d20625ed14b5d7d38af622a0e25bf30a83cb2126ccd"
        )

    def test_github(self, signed: Any) -> None:
        """``X-Hub-Signature-256`` and the legacy SHA-1 header, plus a delivery."""
        headers = signed("--sign", "github", "--key", "gh-secret")

        assert headers["x-hub-signature-256"] == "sha256=" + hex_hmac(
            b"gh-secret", b"hello"
        )
        assert headers["x-hub-signature"] == "sha1=" + hex_hmac(
            b"gh-secret", b"hello", "sha1"
        )
        assert headers["x-github-delivery"]

    def test_stripe(self, signed: Any) -> None:
        """``t=<unix>,v1=<hex>`` over ``<t>.<body>``, with a current time."""
        headers = signed("--sign", "stripe", "--key", "whsec_stripe")

        fields = dict(
            part.split("=", 1) for part in headers["stripe-signature"].split(",")
        )
        signed_content = f"{fields['t']}.".encode() + b"hello"
        assert fields["v1"] == hex_hmac(b"whsec_stripe", signed_content)
        assert abs(int(fields["t"]) - time.time()) < 300

    def test_slack(self, signed: Any) -> None:
        """``v0=<hex>`` over ``v0:<ts>:<body>``."""
        headers = signed("--sign", "slack", "--key", "slack-secret")

        stamp = headers["x-slack-request-timestamp"]
        expected = hex_hmac(b"slack-secret", f"v0:{stamp}:".encode() + b"hello")
        assert headers["x-slack-signature"] == "v0=" + expected

    @pytest.mark.parametrize(
        ("args", "prefix"),
        [
            (("--sign", "standard-webhooks"), "webhook"),
            (("--sign", "standard-webhooks", "--sign-header", "svix"), "svix"),
            (("--sign", "svix"), "svix"),
        ],
    )
    def test_standard_webhooks_and_svix(
        self, signed: Any, args: tuple[str, ...], prefix: str
    ) -> None:
        """``v1,<b64>`` over ``<id>.<ts>.<body>`` with the decoded whsec key."""
        headers = signed(*args, "--key", WHSEC)

        name = prefix
        content = f"{headers[f'{name}-id']}.{headers[f'{name}-timestamp']}.".encode()
        assert headers[f"{name}-signature"] == "v1," + b64_hmac(
            WHSEC_RAW, content + b"hello"
        )

    def test_shopify(self, signed: Any) -> None:
        """Base64 HMAC-SHA256 of the body in ``X-Shopify-Hmac-SHA256``."""
        headers = signed("--sign", "shopify", "--key", "shp-secret")
        assert headers["x-shopify-hmac-sha256"] == b64_hmac(b"shp-secret", b"hello")

    @pytest.mark.parametrize(
        ("scheme", "key", "verifier"),
        [
            ("github", "gh", lambda f: webhooks.GitHubVerifier(f)),
            ("hmac", "k", lambda f: webhooks.HmacVerifier(f)),
            ("stripe", "whsec_s", lambda f: webhooks.StripeVerifier(f)),
            ("slack", "sl", lambda f: webhooks.SlackVerifier(f)),
            (
                "standard-webhooks",
                WHSEC,
                lambda f: webhooks.StandardWebhooksVerifier(f),
            ),
            (
                "svix",
                WHSEC,
                lambda f: webhooks.StandardWebhooksVerifier(f, header_prefix="svix"),
            ),
            ("shopify", "sh", lambda f: webhooks.ShopifyVerifier(f)),
        ],
    )
    def test_the_templates_verifiers_accept_every_scheme(
        self, signed: Any, tmp_path: Path, scheme: str, key: str, verifier: Any
    ) -> None:
        """What --sign sends passes the function runtime's own check."""
        secret = tmp_path / "secret"
        secret.write_text(key + "\n")

        headers = signed("--sign", scheme, "--key", key, body=b'{"event": 1}')

        request = AuthRequest("POST", "/", "", Headers(headers), b'{"event": 1}')
        identity = verifier(SecretFile(secret)).verify(request)
        assert identity.claims["key_index"] == 0

    def test_key_file_first_line_is_the_key(self, signed: Any, project: Path) -> None:
        """A secret file with rotation lines signs with its first key."""
        (project / "key").write_text("\n  current  \nprevious\n")

        headers = signed("--sign", "hmac", "--key-file", "key")

        assert headers["hmac"] == "sha256=" + hex_hmac(b"current", b"hello")

    def test_a_key_that_does_not_fit_the_scheme_never_shows_the_key(
        self, gateway: FakeGateway
    ) -> None:
        """Exit 1, the scheme named, the key itself never printed."""
        result = run(
            "invoke",
            "hook",
            "-g",
            gateway.url,
            "--sign",
            "standard-webhooks",
            "--key",
            "not-base64-TOPSECRET!",
            input=b"x",
        )

        stderr = failed(result)
        assert stderr.startswith("Error: cannot sign for --sign standard-webhooks:")
        assert "TOPSECRET" not in result.output
        assert gateway.seen == []

    def test_both_key_and_key_file_is_refused(self, project: Path) -> None:
        """One key source only."""
        (project / "key").write_text("k\n")
        args = ("invoke", "x", "--sign", "hmac", "--key", "k", "--key-file", "key")
        assert "not both" in failed(run(*args, input=b""), 2)


# --- list and credentials --------------------------------------------------------


class TestList:
    """``list`` prints faas-cli's table."""

    def test_table_like_faas_cli(self, gateway: FakeGateway) -> None:
        """Function, Invocations, Replicas in faas-cli's column widths."""
        gateway.answer_json(
            "GET",
            "/system/functions",
            [{"name": "echo", "invocationCount": 3, "replicas": 1}, {"name": "b"}],
        )

        result = run("list", "-g", gateway.url, "--password", "secret")

        assert result.exit_code == 0, result.output
        assert result.stdout == (
            f"{'Function':<30}\t{'Invocations':<15}\tReplicas\n"
            f"{'echo':<30}\t{'3':<15}\t1    \n"
            f"{'b':<30}\t{'0':<15}\t0    \n"
        )
        assert gateway.seen[0].header("Authorization") == BASIC

    def test_verbose_adds_a_shortened_image(self, gateway: FakeGateway) -> None:
        """Images over 40 characters end in ``..``."""
        image = "ghcr.io/someone/a-very-long-image-name-indeed:latest"
        gateway.answer_json("GET", "/system/functions", [{"name": "f", "image": image}])

        result = run("list", "-g", gateway.url, "-v", "-n", "dev")

        assert image[:38] + ".." in result.stdout
        assert gateway.seen[0].query == "namespace=dev"

    def test_401_says_how_to_log_in(self, gateway: FakeGateway) -> None:
        """The exact line the brief asks for, exit 1."""
        gateway.answer("GET", "/system/functions", 401, b"invalid credentials")

        stderr = failed(run("list", "-g", gateway.url))

        assert stderr == (
            f'Error: unauthorized at {gateway.url}: run "faas-cli login" or'
            " pass --user/--password\n"
        )


class TestCredentials:
    """Where the admin login comes from, in order."""

    def seen_authorization(
        self, gateway: FakeGateway, *args: str, **env: str
    ) -> str | None:
        """List against the fake; return the Authorization it got."""
        gateway.answer_json("GET", "/system/functions", [])
        result = run("list", "-g", gateway.url, *args, **env)
        assert result.exit_code == 0, result.output
        return gateway.seen[-1].header("Authorization")

    def test_flags_then_environment(self, gateway: FakeGateway) -> None:
        """``--user``/``--password``, or OPENFAAS_USERNAME/OPENFAAS_PASSWORD."""
        assert self.seen_authorization(
            gateway, "--user", "u", "--password", "p"
        ) == basic("u", "p")
        assert self.seen_authorization(
            gateway, OPENFAAS_USERNAME="eu", OPENFAAS_PASSWORD="ep"
        ) == basic("eu", "ep")
        assert self.seen_authorization(gateway, "--password", "p") == basic(
            "admin", "p"
        )

    def test_token_is_bearer(self, gateway: FakeGateway) -> None:
        """``-k`` sends a bearer token, for the OIDC plugin."""
        assert self.seen_authorization(gateway, "-k", "jwt") == "Bearer jwt"

    def test_files_that_up_wrote_are_used_for_a_local_gateway(
        self, gateway: FakeGateway, project: Path
    ) -> None:
        """``./.localfaas/credentials`` holds what ``up`` created."""
        write_credentials(project / ".localfaas" / "credentials", "admin", "fromfile")
        assert self.seen_authorization(gateway) == basic("admin", "fromfile")

    def test_secret_mount_path_names_the_files(
        self, gateway: FakeGateway, tmp_path: Path
    ) -> None:
        """The same variable ``up`` honours."""
        write_credentials(tmp_path / "mounted", "ops", "m")
        assert self.seen_authorization(
            gateway, secret_mount_path=str(tmp_path / "mounted")
        ) == basic("ops", "m")

    def test_faas_cli_config_entry_for_the_gateway(
        self, gateway: FakeGateway, tmp_path: Path
    ) -> None:
        """faas-cli login's basic entry, matched on the normalised URL."""
        config = tmp_path / "home" / ".openfaas"
        config.mkdir(parents=True)
        token = base64.b64encode(b"admin:logged-in").decode()
        (config / "config.yml").write_text(
            "auths:\n"
            f"- gateway: {gateway.url.upper()}/\n  auth: basic\n  token: {token}\n"
            "- gateway: http://elsewhere:8080\n  auth: oauth2\n  token: other\n"
        )
        assert self.seen_authorization(gateway) == basic("admin", "logged-in")

    def test_no_credentials_anywhere_sends_none(self, gateway: FakeGateway) -> None:
        """The gateway's 401 then tells the user to log in."""
        assert self.seen_authorization(gateway) is None

    def test_local_files_never_go_to_a_remote_gateway(self, project: Path) -> None:
        """The project's password stays on this machine."""
        write_credentials(project / ".localfaas" / "credentials", "admin", "pw")

        login = find_login(
            "http://gateway.example:8080",
            user=None,
            password=None,
            token=None,
            project=project,
            environ={},
        )

        assert login == Login()

    @pytest.mark.parametrize(
        ("env", "folder"),
        [({"OPENFAAS_CONFIG": "CFG"}, "CFG"), ({"CI": "true"}, "project/.openfaas")],
    )
    def test_config_location_follows_faas_cli(
        self, tmp_path: Path, project: Path, env: dict[str, str], folder: str
    ) -> None:
        """OPENFAAS_CONFIG, else ./.openfaas under CI, else the home folder."""
        place = tmp_path / folder
        place.mkdir(parents=True)
        (place / "config.yml").write_text(
            "auths:\n- gateway: http://127.0.0.1:8080\n  auth: oauth2\n  token: tk\n"
        )
        environ = {
            k: str(tmp_path / v) if k == "OPENFAAS_CONFIG" else v
            for k, v in env.items()
        }

        login = find_login(
            "http://127.0.0.1:8080",
            user=None,
            password=None,
            token=None,
            project=project,
            environ=environ,
        )

        assert login == Login(token="tk")

    def test_a_broken_config_token_is_a_configuration_error(
        self, tmp_path: Path, project: Path
    ) -> None:
        """The file is named; the fix is to log in again."""
        config = tmp_path / "home" / ".openfaas" / "config.yml"
        config.parent.mkdir(parents=True)
        config.write_text(
            "auths:\n- gateway: http://127.0.0.1:8080\n  auth: basic\n  token: '!!'\n"
        )

        with pytest.raises(ConfigurationError, match=re.escape(str(config))):
            find_login(
                "http://127.0.0.1:8080",
                user=None,
                password=None,
                token=None,
                project=project,
                environ={},
            )

    @pytest.mark.parametrize(
        ("given", "env", "url"),
        [
            (None, {}, "http://127.0.0.1:8080"),
            (None, {"OPENFAAS_URL": "gw:8080"}, "http://gw:8080"),
            ("HTTPS://GW.test/", {"OPENFAAS_URL": "other"}, "https://gw.test"),
        ],
    )
    def test_gateway_url(
        self, given: str | None, env: dict[str, str], url: str
    ) -> None:
        """Flag, then OPENFAAS_URL, then the default; normalised."""
        assert gateway_url(given, env) == url


# --- secret -----------------------------------------------------------------


class TestSecret:
    """``secret`` commands send faas-cli's bodies and messages."""

    def test_create_from_literal(self, gateway: FakeGateway) -> None:
        """clients.md's body, faas-cli's two lines."""
        gateway.answer("POST", "/system/secrets", 202)

        result = run(
            "secret", "create", "api-key", "--from-literal", "s3cr3t", "-g", gateway.url
        )

        assert result.exit_code == 0, result.output
        assert result.stdout == "Creating secret: api-key\nCreated: 202 Accepted\n"
        assert gateway.seen[0].body == b'{"name":"api-key","value":"s3cr3t"}'

    def test_create_from_stdin_is_trimmed(self, gateway: FakeGateway) -> None:
        """``echo value |`` leaves no newline in the secret."""
        gateway.answer("POST", "/system/secrets", 201)

        result = run(
            "secret", "create", "k", "-g", gateway.url, "-n", "dev", input="  v\n"
        )

        assert result.stdout == "Creating secret: k.dev\nCreated: 201 Created\n"
        assert gateway.seen[0].json() == {"name": "k", "namespace": "dev", "value": "v"}

    def test_create_from_file_sends_raw_bytes_too(
        self, gateway: FakeGateway, project: Path
    ) -> None:
        """``value`` trimmed text, ``rawValue`` the untrimmed bytes in base64."""
        gateway.answer("POST", "/system/secrets", 202)
        (project / "bin").write_bytes(b"file-secret-\x00\x01bytes\n")

        run("secret", "create", "bin-key", "--from-file", "bin", "-g", gateway.url)

        assert gateway.seen[0].json() == {
            "name": "bin-key",
            "value": "file-secret-\x00\x01bytes",
            "rawValue": base64.b64encode(b"file-secret-\x00\x01bytes\n").decode(),
        }

    def test_no_trim_keeps_whitespace(self, gateway: FakeGateway) -> None:
        """``--no-trim`` sends the value as given."""
        gateway.answer("POST", "/system/secrets", 202)
        run(
            "secret",
            "create",
            "k",
            "--from-literal",
            " v ",
            "--no-trim",
            "-g",
            gateway.url,
        )
        assert gateway.seen[0].json()["value"] == " v "

    def test_duplicate_without_replace(self, gateway: FakeGateway) -> None:
        """409: faas-cli's message, a hint, exit 1, no PUT."""
        gateway.answer("POST", "/system/secrets", 409)

        stderr = failed(
            run("secret", "create", "api-key", "--from-literal", "v", "-g", gateway.url)
        )

        assert (
            stderr.splitlines()[0]
            == 'Error: secret with the name "api-key" already exists'
        )
        assert [s.method for s in gateway.seen] == ["POST"]

    def test_duplicate_with_replace_puts_the_same_body(
        self, gateway: FakeGateway
    ) -> None:
        """``--replace``: POST, 409, then PUT with the same JSON."""
        gateway.answer("POST", "/system/secrets", 409)
        gateway.answer("PUT", "/system/secrets", 202)

        result = run(
            "secret",
            "create",
            "api-key",
            "--from-literal",
            "v",
            "--replace",
            "-g",
            gateway.url,
        )

        assert result.exit_code == 0, result.output
        assert result.stdout.splitlines()[1:] == [
            "Secret api-key already exists, updating...",
            "Updated: 202 Accepted",
        ]
        post, put = gateway.seen
        assert put.method == "PUT"
        assert put.body == post.body

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (("--from-literal", "a", "--from-file", "f"), "only one option"),
            (("--from-literal", "  "), "must provide a non empty secret"),
        ],
    )
    def test_value_usage_errors(
        self, gateway: FakeGateway, project: Path, args: tuple[str, ...], message: str
    ) -> None:
        """faas-cli's refusals; nothing is sent."""
        (project / "f").write_text("x")
        assert message in failed(
            run("secret", "create", "k", *args, "-g", gateway.url), 2
        )
        assert gateway.seen == []

    def test_invalid_name_is_a_usage_error(self, gateway: FakeGateway) -> None:
        """DNS-1123 subdomains only, checked before any request."""
        stderr = failed(run("secret", "create", "Bad_Name", "--from-literal", "v"), 2)
        assert "invalid secret name: 'Bad_Name'" in stderr

    def test_update_and_unknown(self, gateway: FakeGateway) -> None:
        """PUT; a 404 is faas-cli's ``unable to find secret``."""
        gateway.answer("PUT", "/system/secrets", 202)
        result = run(
            "secret", "update", "k", "--from-literal", "n3w", "-g", gateway.url
        )
        assert result.stdout.splitlines()[-1] == "Updated: 202 Accepted"
        assert gateway.seen[0].json() == {"name": "k", "value": "n3w"}

        gateway.answer("PUT", "/system/secrets", 404)
        stderr = failed(
            run("secret", "update", "nope", "--from-literal", "x", "-g", gateway.url)
        )
        assert stderr.splitlines()[0] == "Error: unable to find secret: nope"

    def test_list(self, gateway: FakeGateway) -> None:
        """``NAME`` and one name a line, or ``No secrets found.``."""
        gateway.answer_json("GET", "/system/secrets", [{"name": "a"}, {"name": "b"}])
        assert run("secret", "list", "-g", gateway.url).stdout == "NAME\na\nb\n"

        gateway.answer_json("GET", "/system/secrets", [])
        assert (
            run("secret", "list", "-g", gateway.url, "-n", "dev").stdout
            == "No secrets found.\n"
        )
        assert gateway.seen[-1].query == "namespace=dev"

    def test_remove(self, gateway: FakeGateway) -> None:
        """DELETE ``{"name"}``; ``Removed.. OK.``; 204 is an error."""
        gateway.answer("DELETE", "/system/secrets", 202)
        gateway.answer("DELETE", "/system/secrets", 204)

        assert (
            run("secret", "remove", "k", "-g", gateway.url).stdout == "Removed.. OK.\n"
        )
        assert gateway.seen[0].json() == {"name": "k"}
        assert "204" in failed(run("secret", "remove", "k", "-g", gateway.url))


# --- logs -------------------------------------------------------------------


class TestLogs:
    """``logs`` queries as faas-cli does and prints plain lines."""

    def test_lines_are_printed_in_plain_format(self, gateway: FakeGateway) -> None:
        """``timestamp name (instance) text``, trailing newline trimmed."""
        message = {
            "name": "fn",
            "namespace": "openfaas-fn",
            "instance": "fn-1",
            "timestamp": "2024-05-01T12:00:00Z",
            "text": "hello\n",
        }
        gateway.answer(
            "GET", "/system/logs", 200, iter([json.dumps(message).encode() + b"\n"])
        )

        result = run("logs", "fn", "-g", gateway.url, "--tail", "5")

        assert result.exit_code == 0, result.output
        assert result.stdout == "2024-05-01T12:00:00Z fn (fn-1) hello\n"
        assert gateway.seen[0].query == "follow=false&name=fn&tail=5"

    def test_since_as_time_or_duration_and_follow(self, gateway: FakeGateway) -> None:
        """An RFC 3339 time passes as is; ``5m`` means five minutes ago."""
        gateway.answer("GET", "/system/logs", 200, iter([]))

        run(
            "logs",
            "fn",
            "-g",
            gateway.url,
            "--since",
            "2024-05-01T12:00:00Z",
            "--follow",
        )
        before = datetime.now(UTC)
        run("logs", "fn", "-g", gateway.url, "--since", "5m", "-n", "dev")

        first, second = (parse_qs(s.query) for s in gateway.seen)
        assert first["since"] == ["2024-05-01T12:00:00Z"]
        assert first["follow"] == ["true"]
        since = datetime.fromisoformat(second["since"][0])
        assert timedelta(minutes=4) < before - since < timedelta(minutes=6)
        assert second["namespace"] == ["dev"]

    def test_a_bad_since_is_a_usage_error(self) -> None:
        """The value is repeated with both accepted forms."""
        assert "'yesterday' is neither a duration" in failed(
            run("logs", "fn", "--since", "yesterday"), 2
        )


# --- https ------------------------------------------------------------------


@pytest.fixture
def https_gateway(tmp_path: Path) -> Iterator[FakeGateway]:
    """The fake gateway over HTTPS, its CA where ``up --tls`` keeps it."""
    files = ensure_certificates(default_tls_dir(), [])
    fake = FakeGateway()
    with serving_https(fake, files) as port:
        fake.url = f"https://localhost:{port}"
        yield fake


class TestHttps:
    """Client commands trust the local CA of ``up --tls``."""

    def test_the_local_ca_is_trusted_without_flags(
        self, https_gateway: FakeGateway
    ) -> None:
        """What ``up --tls`` made is what the CLI trusts."""
        https_gateway.answer_json("GET", "/system/functions", [])
        result = run("list", "-g", https_gateway.url)
        assert result.exit_code == 0, result.output

    def test_without_the_ca_the_error_says_so(
        self,
        https_gateway: FakeGateway,
        monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path,
    ) -> None:
        """An untrusted certificate is not 'start the gateway'."""
        monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "elsewhere"))

        stderr = failed(run("list", "-g", https_gateway.url))

        assert "TLS certificate is not trusted" in stderr
        assert "--tls-no-verify" in stderr

        https_gateway.answer_json("GET", "/system/functions", [])
        assert run("list", "-g", https_gateway.url, "--tls-no-verify").exit_code == 0


# --- auth-plugin ------------------------------------------------------------


class TestAuthPlugin:
    """``auth-plugin`` refuses what it cannot serve safely."""

    def test_public_host_is_refused(self) -> None:
        """Credentials in plain HTTP stay on loopback unless told."""
        stderr = failed(run("auth-plugin", "basic", "--host", "0.0.0.0"), 2)
        assert stderr.startswith(
            "Error: refusing to serve the auth plugin in plain HTTP on 0.0.0.0"
        )

    def test_missing_credential_files_fail_before_listening(
        self, project: Path
    ) -> None:
        """The plugin's own error, naming the file."""
        stderr = failed(run("auth-plugin", "basic", "--port", str(free_port())))
        assert "basic-auth-user" in stderr

    def test_oidc_needs_one_key_source(self) -> None:
        """No JWKS URL, JWKS file or PEM file: one error line."""
        result = run("auth-plugin", "oidc", "--issuer", "https://i", "--audience", "a")
        assert "exactly one of jwks_url, jwks_file or pem_file" in failed(result)


# --- real processes ----------------------------------------------------------


def start(args: list[str], cwd: Path, url: str) -> subprocess.Popen[bytes]:
    """``python -m localfaas ARGS`` as a process; wait until ``url`` answers."""
    env = {k: v for k, v in os.environ.items() if k not in _ENVIRONMENT}
    process = subprocess.Popen(
        [sys.executable, "-m", "localfaas", "--log-level", "warning", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        try:
            # Any answer means it listens; the callers test the trust.
            httpx.get(url, timeout=1, verify=False)  # noqa: S501
            return process
        except httpx.HTTPError:
            time.sleep(0.05)
    process.kill()
    _, stderr = process.communicate()
    pytest.fail(f"localfaas {args} did not start:\n{stderr.decode()}")


def interrupt(process: subprocess.Popen[bytes]) -> tuple[int, str]:
    """Ctrl-C, as a terminal sends it; return the exit code and stderr."""
    process.send_signal(signal.SIGINT)
    try:
        _, stderr = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    return process.returncode, stderr.decode()


EMPTY_STACK = (
    "version: 1.0\nprovider:\n  name: openfaas\n"
    "  gateway: http://127.0.0.1:8080\nfunctions: {}\n"
)


class TestRealProcesses:
    """The CLI as a real process: signals and the real gateway."""

    def test_basic_plugin_serves_and_stops_on_ctrl_c_with_130(
        self, project: Path
    ) -> None:
        """Real plugin: 200 for the admin, 401 otherwise; Ctrl-C exits 130."""
        write_credentials(project / ".localfaas" / "credentials", "admin", "pw")
        port = free_port()
        url = f"http://127.0.0.1:{port}/validate"
        process = start(["auth-plugin", "basic", "--port", str(port)], project, url)

        good = httpx.get(url, headers={"Authorization": basic("admin", "pw")})
        bad = httpx.get(url, headers={"Authorization": basic("admin", "no")})
        code, stderr = interrupt(process)

        assert (good.status_code, bad.status_code) == (200, 401)
        assert code == 130
        assert "Traceback" not in stderr

    def test_client_commands_against_the_real_gateway(self, project: Path) -> None:
        """up's credential files let list and secret work with no flags.

        Ctrl-C then stops the gateway cleanly, and the exit code says so.
        """
        (project / "stack.yaml").write_text(EMPTY_STACK)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        process = start(["up", "--port", str(port), "--no-watch"], project, url)
        try:
            listed = run("list", "-g", url)
            created = run(
                "secret", "create", "api-key", "--from-literal", "v", "-g", url
            )
            again = run("secret", "create", "api-key", "--from-literal", "v", "-g", url)
            secrets = run("secret", "list", "-g", url)
            removed = run("secret", "remove", "api-key", "-g", url)
            unknown = run("invoke", "nope", "-g", url, input=b"")
            refused = run("list", "-g", url, "--password", "wrong")
        finally:
            code, stderr = interrupt(process)

        assert listed.stdout.startswith("Function")
        assert created.stdout.endswith("Created: 202 Accepted\n"), created.output
        assert 'secret with the name "api-key" already exists' in failed(again)
        assert "api-key" in secrets.stdout.splitlines()
        assert removed.stdout == "Removed.. OK.\n"
        assert "server returned unexpected status code: 404" in failed(unknown)
        assert "unauthorized at" in failed(refused)
        assert code == 130
        assert "Traceback" not in stderr

    def test_up_tls_serves_https_that_the_cli_trusts(self, project: Path) -> None:
        """``up --tls`` makes the local CA; ``list`` trusts it with no flag."""
        (project / "stack.yaml").write_text(EMPTY_STACK)
        port = free_port()
        url = f"https://localhost:{port}"
        process = start(
            ["up", "--port", str(port), "--tls", "--no-watch"], project, url
        )
        try:
            listed = run("list", "-g", url)
        finally:
            code, stderr = interrupt(process)

        assert listed.exit_code == 0, listed.output
        assert listed.stdout.startswith("Function")
        assert (default_tls_dir() / "ca.pem").is_file()
        assert code == 130
        assert "Traceback" not in stderr
