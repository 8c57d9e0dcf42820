"""Two reference auth plugins for the emulator's ``/system/`` routes.

Both speak OpenFaaS's plugin interface (gateway-contract.md §6): the
gateway sends each admin request's headers to ``/validate``; exactly 200
lets the request through, and any other answer reaches the client as it
is. ``/health`` answers 200; other paths 404, as Go's mux does.

``BasicAuthPlugin``
    The retired openfaas/basic-auth-plugin: Basic credentials checked
    against two secret files, refused exactly as the gateway refuses.
``OIDCPlugin``
    A bearer JWT from an OIDC identity provider, checked with the function
    runtime's own ``JWTVerifier`` (signature with an allow-listed
    algorithm, ``iss``, ``aud``, ``exp`` with 30 s leeway), so that
    ``faas-cli --token <jwt>`` works against the emulator as it does
    against OpenFaaS with its OIDC plugin.

Run one with ``localfaas auth-plugin basic|oidc``, or build it from the
environment (``from_env``) and call ``serve``. Settings keep the
upstream plugin's environment names: ``port``, ``secret_mount_path``,
``user_filename``, ``pass_filename``; the OIDC plugin adds ``issuer``,
``audience`` and one of ``jwks_url``, ``jwks_file`` or ``pem_file``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

import waitress

from faas_runtime._errors import AuthError, ConfigError
from faas_runtime._jwt import JwksFile, JwksUrl, JWTVerifier, KeySource, PemKeys
from faas_runtime._secrets import SecretFile
from faas_runtime._types import AuthRequest, Headers

from .admin import (
    PASSWORD_FILE,
    USER_FILE,
    AdminConfigError,
    AdminCredentials,
    BasicAdminAuth,
)

__all__ = [
    "BasicAuthPlugin",
    "BasicPluginSettings",
    "OIDCPlugin",
    "OIDCPluginSettings",
]

logger = logging.getLogger("localfaas.plugins")

# The realm of the OIDC plugin's Bearer challenges (RFC 6750 §3).
REALM = "localfaas"

# The allow-list the brief and RFC 8725 §3.1 ask for: public-key algorithms
# only, so a public key can never be used as an HMAC secret.
ALGORITHMS = ("RS256", "ES256", "EdDSA")

_NO_KEYS = "cannot check the token: no signing keys; see the plugin's log"


@dataclass(frozen=True)
class BasicPluginSettings:
    """The basic-auth plugin's settings, named as upstream named them."""

    # The port ``serve`` listens on.
    port: int = 8080
    # The folder holding the credential files: the gateway's default, where
    # faasd mounts them too.
    secret_mount_path: Path = Path("/run/secrets")
    # The credential files' names inside ``secret_mount_path``.
    user_filename: str = USER_FILE
    pass_filename: str = PASSWORD_FILE

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> BasicPluginSettings:
        """Read the settings from ``environ``; unset ones keep defaults."""
        defaults = cls()
        folder = environ.get("secret_mount_path")
        return cls(
            port=_port(environ.get("port"), defaults.port),
            secret_mount_path=Path(folder or defaults.secret_mount_path),
            user_filename=environ.get("user_filename") or USER_FILE,
            pass_filename=environ.get("pass_filename") or PASSWORD_FILE,
        )


class BasicAuthPlugin:
    """WSGI app: ``/validate`` admits the admin's Basic credentials.

    The files are read once, at start-up, as the upstream plugin read them;
    a missing or empty one stops the plugin from starting.
    """

    def __init__(self, settings: BasicPluginSettings) -> None:
        credentials = AdminCredentials.load(
            settings.secret_mount_path,
            user_file=settings.user_filename,
            password_file=settings.pass_filename,
        )
        self.port = settings.port
        self._validate = BasicAdminAuth(_admitted, credentials)
        self._validate.logger = logger

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> BasicAuthPlugin:
        """Build the plugin from environment variables."""
        return cls(BasicPluginSettings.from_env(environ))

    def __call__(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        """Answer ``/validate``, ``/health``, or 404."""
        return _route(environ, start_response, self._validate)

    def serve(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        """Serve the plugin with waitress until interrupted."""
        _serve(self, host, self.port if port is None else port)


@dataclass(frozen=True)
class OIDCPluginSettings:
    """The OIDC plugin's settings; exactly one key source must be given."""

    # The ``iss`` every token must carry: the identity provider's issuer.
    issuer: str
    # The ``aud`` tokens must carry; several may be given, comma-separated.
    audience: str
    # Where the provider's public keys are: its JWKS endpoint (cached five
    # minutes, refetched for an unknown ``kid``), a JWKS file, or a file of
    # PEM public keys or certificates. Files are re-read when they change.
    jwks_url: str = ""
    jwks_file: Path | None = None
    pem_file: Path | None = None
    # The port ``serve`` listens on.
    port: int = 8080

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> OIDCPluginSettings:
        """Read the settings from ``environ``; unset ones keep defaults."""
        jwks_file = environ.get("jwks_file")
        pem_file = environ.get("pem_file")
        return cls(
            issuer=environ.get("issuer", ""),
            audience=environ.get("audience", ""),
            jwks_url=environ.get("jwks_url", ""),
            jwks_file=Path(jwks_file) if jwks_file else None,
            pem_file=Path(pem_file) if pem_file else None,
            port=_port(environ.get("port"), 8080),
        )

    def key_source(self) -> KeySource:
        """The one configured source of the provider's public keys."""
        given = [
            name
            for name, value in (
                ("jwks_url", self.jwks_url),
                ("jwks_file", self.jwks_file),
                ("pem_file", self.pem_file),
            )
            if value
        ]
        if len(given) != 1:
            found = ", ".join(given) or "none"
            raise AdminConfigError(
                f"the OIDC plugin needs exactly one of jwks_url, jwks_file or "
                f"pem_file (found: {found}); give the provider's JWKS URL, "
                "such as https://issuer.example/.well-known/jwks.json"
            )

        if self.jwks_file is not None:
            return JwksFile(SecretFile(_existing(self.jwks_file, "jwks_file")))
        if self.pem_file is not None:
            return PemKeys(SecretFile(_existing(self.pem_file, "pem_file")))
        return JwksUrl(self.jwks_url)


class OIDCPlugin:
    """WSGI app: ``/validate`` admits a valid bearer JWT from the issuer.

    Answers follow RFC 6750 §3: no token gets 401 with a bare challenge; a
    bad, expired, wrongly signed or wrongly addressed token gets 401
    ``error="invalid_token"``; a malformed request (a token sent twice, or
    with characters no token has) gets 400 ``error="invalid_request"``.
    Keys that cannot be loaded give 500, logged, and admit nobody.
    """

    def __init__(self, settings: OIDCPluginSettings) -> None:
        audiences = [part.strip() for part in settings.audience.split(",")]
        try:
            keys = settings.key_source()
            self._verifier = JWTVerifier(
                keys=keys,
                issuer=settings.issuer,
                audience=[aud for aud in audiences if aud],
                algorithms=ALGORITHMS,
                leeway=30,
                realm=REALM,
            )
            # A key file that cannot be used stops the plugin at start-up;
            # an issuer's JWKS endpoint may come up later, so it is not
            # fetched yet.
            if not isinstance(keys, JwksUrl):
                keys.keys(None)
        except ConfigError as exc:
            raise AdminConfigError(f"OIDC plugin: {exc}") from exc

        self.port = settings.port

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> OIDCPlugin:
        """Build the plugin from environment variables."""
        return cls(OIDCPluginSettings.from_env(environ))

    def __call__(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        """Answer ``/validate``, ``/health``, or 404."""
        return _route(environ, start_response, self._validate)

    def serve(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        """Serve the plugin with waitress until interrupted."""
        _serve(self, host, self.port if port is None else port)

    def _validate(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        """200 for a valid token; the RFC 6750 refusal otherwise."""
        client = environ.get("REMOTE_ADDR", "?")
        try:
            identity = self._verifier.verify(_auth_request(environ))
        except AuthError as refusal:
            logger.info(
                "token refused client=%s reason=%s",
                client,
                refusal.reason,
            )
            return _refuse(start_response, refusal)
        except ConfigError as exc:
            logger.error("cannot check tokens: %s", exc)
            status = "500 Internal Server Error"
            return _text(start_response, status, _NO_KEYS)

        logger.info(
            "token accepted client=%s subject=%s",
            client,
            identity.subject,
        )
        return _admitted(environ, start_response)


def _auth_request(environ: WSGIEnvironment) -> AuthRequest:
    """The request as the verifier sees it: its headers are what count."""
    headers = Headers.from_environ(environ)

    # faas-cli sends "Bearer " with no token after logout and expects 401
    # (clients.md §1.1): an empty token is no token (RFC 6750 §3.1), not a
    # malformed request.
    if headers.get("Authorization", "").strip().lower() == "bearer":
        headers = Headers(
            (name, value)
            for name, value in headers.items()
            if name.lower() != "authorization"
        )

    return AuthRequest(
        method=environ.get("REQUEST_METHOD", "GET"),
        path=environ.get("PATH_INFO", ""),
        query=environ.get("QUERY_STRING", ""),
        headers=headers,
    )


def _route(
    environ: WSGIEnvironment,
    start_response: StartResponse,
    validate: WSGIApplication,
) -> Iterable[bytes]:
    """The plugin interface's two paths; any method, as upstream allowed."""
    path = environ.get("PATH_INFO", "")
    if path == "/validate":
        return validate(environ, start_response)
    if path == "/health":
        return _admitted(environ, start_response)
    return _text(start_response, "404 Not Found", "404 page not found")


def _admitted(
    environ: WSGIEnvironment, start_response: StartResponse
) -> Iterable[bytes]:
    """200 with an empty body: what the gateway takes as "let it in"."""
    start_response("200 OK", [("Content-Length", "0")])
    return [b""]


def _refuse(start_response: StartResponse, refusal: AuthError) -> list[bytes]:
    """The verifier's status, challenge and fixed body; never its reason."""
    start_response(
        f"{refusal.status} {HTTPStatus(refusal.status).phrase}",
        [
            *refusal.headers,
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(refusal.body))),
        ],
    )
    return [refusal.body]


def _text(start_response: StartResponse, status: str, text: str) -> list[bytes]:
    """A plain-text answer shaped like Go's ``http.Error``."""
    body = f"{text}\n".encode()
    start_response(
        status,
        [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("X-Content-Type-Options", "nosniff"),
            ("Content-Length", str(len(body))),
        ],
    )
    return [body]


def _serve(app: WSGIApplication, host: str, port: int) -> None:
    logger.info("auth plugin listening url=http://%s:%d/validate", host, port)
    waitress.serve(app, host=host, port=port)


def _port(value: str | None, default: int) -> int:
    """A port number from the environment, or ``default`` when unset."""
    if not value:
        return default
    try:
        port = int(value)
    except ValueError:
        port = -1

    if not 0 < port < 65536:
        raise AdminConfigError(
            f"port {value!r} is not a port number; give one such as 8080"
        )
    return port


def _existing(path: Path, setting: str) -> Path:
    """``path`` if it is a file; a clear error naming ``setting`` if not."""
    if path.is_file():
        return path
    raise AdminConfigError(
        f"{setting} {str(path)!r} is not a file; give the path of the "
        "identity provider's public keys"
    )
