"""The reference auth plugins, alone and behind the emulator's plugin auth.

Plugins run on real waitress servers (threads, and one real process); JWTs
are made with PyJWT from real RSA, EC and Ed25519 keys.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

import httpx
import jwt
import pytest
import waitress
from conftest import send_raw
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from localfaas.admin import AdminConfigError, PluginAdminAuth
from localfaas.plugins import (
    BasicAuthPlugin,
    BasicPluginSettings,
    OIDCPlugin,
    OIDCPluginSettings,
)

ISSUER = "https://idp.example/realms/dev"
AUDIENCE = "localfaas"
BARE = 'Bearer realm="localfaas"'
INVALID = 'Bearer realm="localfaas", error="invalid_token"'

# --- helpers -----------------------------------------------------------------


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


def free_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def basic(user: str, password: str) -> str:
    """An Authorization value as faas-cli login sends it."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return f"Basic {token}"


def raw_get(url: str, path: str, authorization: bytes) -> tuple[bytes, bytes]:
    """GET ``path`` with an Authorization header exactly as given."""
    host, port = url.removeprefix("http://").split(":")
    request = (
        b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: " + authorization + b"\r\n"
        b"Connection: close\r\n\r\n"
    )
    answer = send_raw(int(port), request, host=host, timeout=5)
    head, _, body = answer.partition(b"\r\n\r\n")
    return head.lower(), body


class Downstream:
    """The admin app behind the emulator's plugin auth; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        self.calls += 1
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b"[]"]


# --- basic-auth plugin -------------------------------------------------------


@pytest.fixture
def secrets_dir(tmp_path: Path) -> Path:
    """A secret folder holding the admin's credential files."""
    (tmp_path / "basic-auth-user").write_text("admin\n")
    (tmp_path / "basic-auth-password").write_text("pl4gin-pw\n")
    return tmp_path


@pytest.fixture
def basic_plugin(secrets_dir: Path) -> Iterator[str]:
    """The basic-auth plugin, served; yields its URL."""
    settings = BasicPluginSettings(secret_mount_path=secrets_dir)
    with running(BasicAuthPlugin(settings)) as url:
        yield url


class TestBasicPlugin:
    @pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE"])
    def test_validate_admits_any_method(
        self,
        basic_plugin: str,
        method: str,
    ) -> None:
        """Right credentials get 200 with an empty body, whatever the method."""
        response = httpx.request(
            method,
            f"{basic_plugin}/validate",
            headers={"Authorization": basic("admin", "pl4gin-pw")},
        )

        assert response.status_code == 200
        assert response.content == b""

    @pytest.mark.parametrize(
        "authorization",
        [b"Basic YWRtaW46d3Jvbmc=", b"Bearer ", b"Bearer abc", b"garbage"],
    )
    def test_validate_refusal_is_the_gateways(
        self, basic_plugin: str, authorization: bytes
    ) -> None:
        """Anything else gets the gateway's exact Basic refusal."""
        head, body = raw_get(basic_plugin, "/validate", authorization)

        assert head.startswith(b"http/1.1 401 unauthorized")
        assert b'\r\nwww-authenticate: basic realm="restricted"' in head
        assert b"\r\ncontent-type: text/plain; charset=utf-8" in head
        assert body == b"invalid credentials"

    def test_health_and_unknown_paths(self, basic_plugin: str) -> None:
        """/health answers 200 empty without credentials; others 404."""
        health = httpx.get(f"{basic_plugin}/health")
        other = httpx.get(f"{basic_plugin}/validate/x")

        assert (health.status_code, health.content) == (200, b"")
        assert (other.status_code, other.text) == (404, "404 page not found\n")

    def test_settings_from_env(self, tmp_path: Path) -> None:
        """Upstream's variable names pick the port, folder and file names."""
        (tmp_path / "user.txt").write_text("ops")
        (tmp_path / "pass.txt").write_text("pw2")
        environ = {
            "port": "9091",
            "secret_mount_path": str(tmp_path),
            "user_filename": "user.txt",
            "pass_filename": "pass.txt",
        }

        plugin = BasicAuthPlugin.from_env(environ)
        with running(plugin) as url:
            response = httpx.get(
                f"{url}/validate", headers={"Authorization": basic("ops", "pw2")}
            )

        assert plugin.port == 9091
        assert response.status_code == 200

    def test_defaults(self) -> None:
        """Unset variables keep upstream's defaults."""
        settings = BasicPluginSettings.from_env({})

        assert settings == BasicPluginSettings(
            port=8080,
            secret_mount_path=Path("/run/secrets"),
            user_filename="basic-auth-user",
            pass_filename="basic-auth-password",
        )

    @pytest.mark.parametrize("port", ["http", "0", "70000"])
    def test_bad_port_refused(self, port: str) -> None:
        """A port that is not a port number is named in the error."""
        with pytest.raises(AdminConfigError, match=f"port '{port}'"):
            BasicPluginSettings.from_env({"port": port})

    def test_missing_files_stop_start(self, tmp_path: Path) -> None:
        """Without credential files the plugin does not start."""
        settings = BasicPluginSettings(secret_mount_path=tmp_path)

        with pytest.raises(AdminConfigError, match="basic-auth-user"):
            BasicAuthPlugin(settings)

    def test_serve_in_its_own_process(self, secrets_dir: Path) -> None:
        """``serve`` runs the plugin as a process on the port from ``port``."""
        port = free_port()
        environ = {
            **os.environ,
            "port": str(port),
            "secret_mount_path": str(secrets_dir),
        }
        code = (
            "import os\n"
            "from localfaas.plugins import BasicAuthPlugin\n"
            "BasicAuthPlugin.from_env(os.environ).serve('127.0.0.1')\n"
        )
        process = subprocess.Popen([sys.executable, "-c", code], env=environ)
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_until_healthy(url, process)
            good = httpx.get(
                f"{url}/validate",
                headers={"Authorization": basic("admin", "pl4gin-pw")},
            )
            bad = httpx.get(f"{url}/validate")
        finally:
            process.terminate()
            process.wait(10)

        assert (good.status_code, bad.status_code) == (200, 401)

    def test_behind_the_emulator(
        self, basic_plugin: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        """faas-cli login passes; after logout the plugin's 401 is relayed."""
        caplog.set_level(logging.INFO)
        downstream = Downstream()
        guard = PluginAdminAuth(
            downstream, f"{basic_plugin}/validate", pass_body=False, timeout=5
        )
        with running(guard) as url:
            login = httpx.get(
                f"{url}/system/functions",
                headers={"Authorization": basic("admin", "pl4gin-pw")},
            )
            head, body = raw_get(url, "/system/functions", b"Bearer ")

        assert (login.status_code, login.content) == (200, b"[]")
        assert head.startswith(b"http/1.1 401 unauthorized")
        assert b'\r\nwww-authenticate: basic realm="restricted"' in head
        assert body == b"invalid credentials"
        assert downstream.calls == 1
        assert not any("pl4gin-pw" in r.getMessage() for r in caplog.records)


def _wait_until_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    """Poll /health until the plugin process answers, or fail if it exits."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        assert process.poll() is None, "the plugin process exited"
        try:
            if httpx.get(f"{url}/health").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    pytest.fail("the plugin process never became healthy")


# --- OIDC plugin -------------------------------------------------------------


@dataclass(frozen=True)
class Keys:
    """Signing keys of a test identity provider, and their JWKS."""

    rsa_key: rsa.RSAPrivateKey
    ec_key: ec.EllipticCurvePrivateKey
    ed_key: ed25519.Ed25519PrivateKey
    other_key: rsa.RSAPrivateKey

    def jwks(self) -> dict[str, Any]:
        """The public keys as the provider would publish them."""
        published = [
            ("rsa", RSAAlgorithm.to_jwk(self.rsa_key.public_key(), as_dict=True)),
            ("ec", ECAlgorithm.to_jwk(self.ec_key.public_key(), as_dict=True)),
            ("ed", OKPAlgorithm.to_jwk(self.ed_key.public_key(), as_dict=True)),
        ]
        jwks = [{**jwk, "kid": kid, "use": "sig"} for kid, jwk in published]
        return {"keys": jwks}

    def rsa_pem(self) -> bytes:
        """The RSA public key as a PEM file holds it."""
        return self.rsa_key.public_key().public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )


@pytest.fixture(scope="module")
def keys() -> Keys:
    """One set of provider keys for the whole module (RSA is slow to make)."""
    return Keys(
        rsa_key=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        ec_key=ec.generate_private_key(ec.SECP256R1()),
        ed_key=ed25519.Ed25519PrivateKey.generate(),
        other_key=rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )


def token(
    key: Any,
    algorithm: str = "RS256",
    kid: str = "rsa",
    **claims: Any,
) -> str:
    """A JWT signed with ``key``; ``claims`` override the valid defaults."""
    now = int(time.time())
    payload = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "dev@example.com",
        "iat": now,
        "exp": now + 300,
        **claims,
    }
    payload = {name: value for name, value in payload.items() if value is not None}
    return jwt.encode(payload, key, algorithm=algorithm, headers={"kid": kid})


@contextmanager
def oidc_plugin(settings: OIDCPluginSettings) -> Iterator[str]:
    """The OIDC plugin with ``settings``, served; yields its URL."""
    with running(OIDCPlugin(settings)) as url:
        yield url


@pytest.fixture
def pem_file(keys: Keys, tmp_path: Path) -> Path:
    """A file holding the provider's RSA public key, PEM-encoded."""
    path = tmp_path / "idp.pem"
    path.write_bytes(keys.rsa_pem())
    return path


@pytest.fixture
def jwks_file(keys: Keys, tmp_path: Path) -> Path:
    """A file holding the provider's JWKS."""
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(keys.jwks()))
    return path


@pytest.fixture(params=["pem_file", "jwks_file", "jwks_url"])
def oidc(
    request: pytest.FixtureRequest, keys: Keys, pem_file: Path, jwks_file: Path
) -> Iterator[str]:
    """The OIDC plugin served with each kind of key source in turn."""
    if request.param == "pem_file":
        with oidc_plugin(
            OIDCPluginSettings(ISSUER, AUDIENCE, pem_file=pem_file)
        ) as url:
            yield url
        return

    if request.param == "jwks_file":
        settings = OIDCPluginSettings(ISSUER, AUDIENCE, jwks_file=jwks_file)
        with oidc_plugin(settings) as url:
            yield url
        return

    document = json.dumps(keys.jwks()).encode()

    with running(_json_app(document)) as idp:
        settings = OIDCPluginSettings(ISSUER, AUDIENCE, jwks_url=f"{idp}/jwks")
        with oidc_plugin(settings) as url:
            yield url


def _json_app(document: bytes) -> WSGIApplication:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "application/json")])
        return [document]

    return app


def validate(url: str, jwt_or_none: str | None) -> httpx.Response:
    """Ask the plugin about a request carrying ``Bearer <jwt>``, if any."""
    if jwt_or_none is None:
        return httpx.get(f"{url}/validate")
    bearer = {"Authorization": f"Bearer {jwt_or_none}"}
    return httpx.get(f"{url}/validate", headers=bearer)


class TestOIDCPlugin:
    def test_valid_token_admitted(self, oidc: str, keys: Keys) -> None:
        """A token from the issuer for the audience gets 200, empty."""
        response = validate(oidc, token(keys.rsa_key))

        assert (response.status_code, response.content) == (200, b"")

    def test_expired_token_refused(self, oidc: str, keys: Keys) -> None:
        """A token expired beyond the 30 s leeway gets invalid_token."""
        expired = token(keys.rsa_key, exp=int(time.time()) - 60)

        response = validate(oidc, expired)

        assert response.status_code == 401
        assert response.headers["www-authenticate"] == INVALID

    def test_leeway_allows_small_skew(self, oidc: str, keys: Keys) -> None:
        """A token that expired seconds ago still passes (30 s of skew)."""
        response = validate(oidc, token(keys.rsa_key, exp=int(time.time()) - 5))

        assert response.status_code == 200

    @pytest.mark.parametrize(
        "claims",
        [
            {"aud": "someone-else"},
            {"iss": "https://evil.example"},
            {"aud": None},
            {"iss": None},
            {"exp": None},
            {"nbf": 4_000_000_000},
        ],
    )
    def test_wrong_claims_refused(
        self, oidc: str, keys: Keys, claims: dict[str, Any]
    ) -> None:
        """Wrong or missing iss, aud or exp, or a future nbf, get 401."""
        response = validate(oidc, token(keys.rsa_key, **claims))

        assert response.status_code == 401
        assert response.headers["www-authenticate"] == INVALID

    def test_alg_none_refused(self, oidc: str) -> None:
        """An unsigned token (alg none) is refused."""
        claims = {"iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 300}
        header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
        unsigned = f"{header}.{_b64(json.dumps(claims).encode())}."

        response = validate(oidc, unsigned)

        assert response.status_code == 401
        assert response.headers["www-authenticate"] == INVALID

    def test_hmac_with_public_key_refused(self, oidc: str, keys: Keys) -> None:
        """HS256 keyed with the public key (key confusion) is refused."""
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        claims = {"iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 300}
        signing_input = f"{header}.{_b64(json.dumps(claims).encode())}"
        mac = hmac.new(keys.rsa_pem(), signing_input.encode(), hashlib.sha256)

        response = validate(oidc, f"{signing_input}.{_b64(mac.digest())}")

        assert response.status_code == 401
        assert response.headers["www-authenticate"] == INVALID

    def test_other_signer_refused(self, oidc: str, keys: Keys) -> None:
        """A token signed by a key the provider did not publish is refused."""
        response = validate(oidc, token(keys.other_key))

        assert response.status_code == 401
        assert response.headers["www-authenticate"] == INVALID

    def test_algorithm_outside_allow_list_refused(
        self,
        oidc: str,
        keys: Keys,
    ) -> None:
        """RS512 by the right key is refused: only RS256/ES256/EdDSA count."""
        response = validate(oidc, token(keys.rsa_key, algorithm="RS512"))

        assert response.status_code == 401

    @pytest.mark.parametrize(
        "authorization",
        [b"Bearer ", b"Bearer", b"Basic YWRtaW46cHc="],
    )
    def test_no_token_gets_bare_challenge(
        self, oidc: str, authorization: bytes
    ) -> None:
        """faas-cli's empty token after logout, or Basic, get a bare 401."""
        head, _ = raw_get(oidc, "/validate", authorization)

        assert head.startswith(b"http/1.1 401 ")
        assert f"\r\nwww-authenticate: {BARE}".lower().encode() in head

    def test_malformed_token_is_a_bad_request(self, oidc: str) -> None:
        """A token with characters no token has gets 400 invalid_request."""
        head, _ = raw_get(oidc, "/validate", b"Bearer not a token!")

        assert head.startswith(b"http/1.1 400 ")
        assert b'error="invalid_request"' in head

    def test_missing_header_gets_bare_challenge(self, oidc: str) -> None:
        """No Authorization header at all: 401 without an error code."""
        response = validate(oidc, None)

        assert response.status_code == 401
        assert response.headers["www-authenticate"] == BARE

    def test_refusal_logged_without_token(
        self, oidc: str, keys: Keys, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The reason is logged; the token never is."""
        caplog.set_level(logging.INFO, logger="localfaas.plugins")
        wrong = token(keys.rsa_key, aud="someone-else")

        validate(oidc, wrong)

        messages = [r.getMessage() for r in caplog.records]
        assert any("audience" in m for m in messages)
        assert not any(wrong.split(".")[2] in m for m in messages)

    def test_health_and_unknown_paths(self, oidc: str) -> None:
        """/health answers 200 without a token; other paths 404."""
        assert httpx.get(f"{oidc}/health").status_code == 200
        assert httpx.get(f"{oidc}/").status_code == 404


class TestOIDCKeyTypes:
    @pytest.mark.parametrize(
        ("which", "algorithm", "kid"),
        [
            ("rsa_key", "RS256", "rsa"),
            ("ec_key", "ES256", "ec"),
            ("ed_key", "EdDSA", "ed"),
        ],
    )
    def test_each_allowed_algorithm(
        self, keys: Keys, jwks_file: Path, which: str, algorithm: str, kid: str
    ) -> None:
        """RS256, ES256 and EdDSA tokens verify against a JWKS."""
        settings = OIDCPluginSettings(ISSUER, AUDIENCE, jwks_file=jwks_file)
        signed = token(getattr(keys, which), algorithm, kid)

        with oidc_plugin(settings) as url:
            response = validate(url, signed)

        assert response.status_code == 200

    def test_several_audiences(self, keys: Keys, pem_file: Path) -> None:
        """A comma-separated audience accepts any of its values."""
        audiences = "faas-cli, localfaas"
        settings = OIDCPluginSettings(ISSUER, audiences, pem_file=pem_file)

        with oidc_plugin(settings) as url:
            first = validate(url, token(keys.rsa_key, aud="faas-cli"))
            other = validate(url, token(keys.rsa_key, aud="grafana"))

        assert (first.status_code, other.status_code) == (200, 401)

    def test_jwks_url_down_fails_closed(
        self, keys: Keys, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Keys that cannot be fetched give 500 and admit nobody."""
        dead = f"http://127.0.0.1:{free_port()}/jwks"
        settings = OIDCPluginSettings(ISSUER, AUDIENCE, jwks_url=dead)

        with oidc_plugin(settings) as url:
            response = validate(url, token(keys.rsa_key))

        assert response.status_code == 500
        assert "no signing keys" in response.text
        messages = [r.getMessage() for r in caplog.records]
        assert any("cannot check tokens" in m for m in messages)


class TestOIDCSettings:
    def test_from_env(self, tmp_path: Path) -> None:
        """The environment names every setting."""
        settings = OIDCPluginSettings.from_env(
            {
                "issuer": ISSUER,
                "audience": AUDIENCE,
                "pem_file": str(tmp_path / "k.pem"),
                "port": "8099",
            }
        )

        assert settings == OIDCPluginSettings(
            ISSUER, AUDIENCE, pem_file=tmp_path / "k.pem", port=8099
        )

    @pytest.mark.parametrize(
        ("sources", "found"),
        [
            ({}, "none"),
            ({"jwks_url": "http://a/k", "pem_file": "k.pem"}, "jwks_url, pem_file"),
        ],
    )
    def test_exactly_one_key_source(
        self,
        sources: dict[str, str],
        found: str,
    ) -> None:
        """No key source, or two, is refused, naming what was found."""
        environ = {"issuer": ISSUER, "audience": AUDIENCE, **sources}

        with pytest.raises(AdminConfigError, match=f"found: {found}"):
            OIDCPlugin.from_env(environ)

    def test_missing_key_file(self, tmp_path: Path) -> None:
        """A key file that is not there is named at start-up."""
        missing = tmp_path / "no.pem"
        settings = OIDCPluginSettings(ISSUER, AUDIENCE, pem_file=missing)

        with pytest.raises(AdminConfigError, match=r"pem_file .*no\.pem"):
            OIDCPlugin(settings)

    def test_private_key_refused(self, keys: Keys, pem_file: Path) -> None:
        """A private key in the PEM file stops the plugin at start-up."""
        private = keys.rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        pem_file.write_bytes(private)
        settings = OIDCPluginSettings(ISSUER, AUDIENCE, pem_file=pem_file)

        with pytest.raises(AdminConfigError, match="private key"):
            OIDCPlugin(settings)

    @pytest.mark.parametrize(
        ("issuer", "audience", "match"),
        [("", AUDIENCE, "issuer"), (ISSUER, " , ", "audience")],
    )
    def test_issuer_and_audience_required(
        self, pem_file: Path, issuer: str, audience: str, match: str
    ) -> None:
        """An empty issuer or audience is refused at start-up."""
        settings = OIDCPluginSettings(issuer, audience, pem_file=pem_file)

        with pytest.raises(AdminConfigError, match=match):
            OIDCPlugin(settings)


def test_faas_cli_token_through_the_emulator(keys: Keys, pem_file: Path) -> None:
    """``faas-cli --token`` works behind PluginAdminAuth and the OIDC plugin."""
    settings = OIDCPluginSettings(ISSUER, AUDIENCE, pem_file=pem_file)
    downstream = Downstream()
    good_token, expired_token = token(keys.rsa_key), token(keys.rsa_key, exp=1)

    with oidc_plugin(settings) as plugin_url:
        guard = PluginAdminAuth(
            downstream, f"{plugin_url}/validate", pass_body=False, timeout=5
        )
        with running(guard) as url:
            good = httpx.get(
                f"{url}/system/functions",
                headers={"Authorization": f"Bearer {good_token}"},
            )
            expired = httpx.get(
                f"{url}/system/functions",
                headers={"Authorization": f"Bearer {expired_token}"},
            )

    assert (good.status_code, good.content) == (200, b"[]")
    assert expired.status_code == 401
    assert expired.headers["www-authenticate"] == INVALID
    assert downstream.calls == 1


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")
