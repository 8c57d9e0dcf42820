"""From settings to verifiers: the one table of auth schemes and options.

A function chooses its scheme in stack.yml, for example::

    environment:
      auth_scheme: github
      auth_secret: github-webhook-secret   # the default for github

Options are plain strings, as environment variables are. Handler code uses
the same names without the ``auth_`` prefix (see ``faas_runtime.authenticate``).
Verifier modules are imported only when their scheme is used, so a webhook
function does not load the JWT stack at start-up.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ._errors import ConfigError
from ._secrets import SecretFile
from ._settings import boolean, duration
from ._types import Verifier

if TYPE_CHECKING:
    from ._webhooks import ReplayCache

Options = Mapping[str, str]

# The secret each scheme reads when ``auth_secret`` is not given.
DEFAULT_SECRETS = {
    "github": "github-webhook-secret",
    # The name the OpenFaaS workshop's faas-cli --sign lab uses.
    "hmac": "payload-secret",
    "stripe": "stripe-webhook-secret",
    "slack": "slack-signing-secret",
    "standard-webhooks": "webhook-secret",
    "svix": "webhook-secret",
    "shopify": "shopify-webhook-secret",
    "basic": "basic-auth-users",
    "bearer": "api-tokens",
    "jwt": "jwt-public-key",
}

# Every option a scheme may read, so a typo is an error rather than ignored.
OPTIONS = {
    "secret",
    "realm",
    "header",
    "tolerance",
    "replay_cache",
    "allow_sha1",
    "query_token",
    "jwt_issuer",
    "jwt_audience",
    "jwt_algorithms",
    "jwt_leeway",
    "jwks_url",
    "jwks_secret",
}


def build(scheme: str, options: Options, secrets_path: Path) -> Verifier:
    """A configured verifier for ``scheme``; ``ConfigError`` if it cannot be."""
    factory = _FACTORIES.get(scheme)
    if factory is None:
        known = ", ".join(sorted(_FACTORIES))
        raise ConfigError(
            f"unknown auth scheme {scheme!r}; use one of: {known} (or none)"
        )
    unknown = set(options) - OPTIONS
    if unknown:
        raise ConfigError(
            f"unknown auth option(s) {', '.join(sorted(unknown))} for scheme "
            f"{scheme!r}; known: {', '.join(sorted(OPTIONS))}"
        )
    return factory(_Reader(scheme, options, secrets_path))


class _Reader:
    """Typed access to one scheme's options, with errors that name them."""

    def __init__(self, scheme: str, options: Options, secrets_path: Path) -> None:
        self.scheme = scheme
        self.options = options
        self.secrets_path = secrets_path

    def secret(self, option: str = "secret", default: str | None = None) -> SecretFile:
        name = self.options.get(option) or default or DEFAULT_SECRETS[self.scheme]
        if "/" in name or name in (".", ".."):
            raise ConfigError(f"auth_{option}={name!r} must be a secret name")
        return SecretFile(self.secrets_path / name)

    def text(self, option: str, default: str = "") -> str:
        return self.options.get(option, default).strip()

    def flag(self, option: str) -> bool:
        return boolean(self.options.get(option, "false"))

    def seconds(self, option: str, default: float) -> float:
        raw = self.options.get(option)
        if not raw:
            return default
        try:
            return duration(raw)
        except ValueError as exc:
            raise ConfigError(f"auth_{option}={raw!r} is invalid: {exc}") from exc

    def required(self, option: str) -> str:
        value = self.text(option)
        if not value:
            raise ConfigError(
                f"auth scheme {self.scheme!r} needs auth_{option}; set it in the "
                "function's environment"
            )
        return value

    def listing(self, option: str, default: str = "") -> list[str]:
        raw = self.text(option, default)
        return [item.strip() for item in raw.split(",") if item.strip()]


def _replay(read: _Reader) -> ReplayCache | None:
    from ._webhooks import ReplayCache

    if not read.flag("replay_cache"):
        return None
    return ReplayCache(read.seconds("tolerance", 300.0))


def _github(read: _Reader) -> Verifier:
    from ._webhooks import GitHubVerifier

    return GitHubVerifier(
        read.secret(), allow_sha1=read.flag("allow_sha1"), replay=_replay(read)
    )


def _hmac(read: _Reader) -> Verifier:
    from ._webhooks import HmacVerifier

    return HmacVerifier(
        read.secret(),
        header=read.text("header", "Hmac"),
        allow_sha1=read.flag("allow_sha1"),
    )


def _stripe(read: _Reader) -> Verifier:
    from ._webhooks import StripeVerifier

    return StripeVerifier(
        read.secret(),
        tolerance=read.seconds("tolerance", 300.0),
        replay=_replay(read),
    )


def _slack(read: _Reader) -> Verifier:
    from ._webhooks import SlackVerifier

    return SlackVerifier(read.secret(), tolerance=read.seconds("tolerance", 300.0))


def _standard_webhooks(prefix: str) -> Callable[[_Reader], Verifier]:
    def factory(read: _Reader) -> Verifier:
        from ._webhooks import StandardWebhooksVerifier

        return StandardWebhooksVerifier(
            read.secret(),
            tolerance=read.seconds("tolerance", 300.0),
            replay=_replay(read),
            header_prefix=prefix,
        )

    return factory


def _shopify(read: _Reader) -> Verifier:
    from ._webhooks import ShopifyVerifier

    return ShopifyVerifier(read.secret(), replay=_replay(read))


def _basic(read: _Reader) -> Verifier:
    from ._basic import BasicVerifier

    return BasicVerifier(read.secret(), realm=read.text("realm", "Restricted"))


def _bearer(read: _Reader) -> Verifier:
    from ._bearer import BearerVerifier

    return BearerVerifier(
        read.secret(),
        realm=read.text("realm", "api"),
        header=read.text("header") or None,
        allow_query=read.flag("query_token"),
    )


def _jwt(read: _Reader) -> Verifier:
    from ._jwt import JwksFile, JwksUrl, JWTVerifier, PemKeys

    keys: PemKeys | JwksFile | JwksUrl
    if read.text("jwks_url"):
        keys = JwksUrl(read.text("jwks_url"))
    elif read.text("jwks_secret"):
        keys = JwksFile(read.secret("jwks_secret"))
    else:
        keys = PemKeys(read.secret())
    return JWTVerifier(
        keys=keys,
        issuer=read.required("jwt_issuer"),
        audience=read.listing("jwt_audience") or [read.required("jwt_audience")],
        algorithms=read.listing("jwt_algorithms", "RS256,ES256,EdDSA"),
        leeway=read.seconds("jwt_leeway", 30.0),
        realm=read.text("realm", "api"),
    )


_FACTORIES: dict[str, Callable[[_Reader], Verifier]] = {
    "github": _github,
    "hmac": _hmac,
    "stripe": _stripe,
    "slack": _slack,
    "standard-webhooks": _standard_webhooks("webhook"),
    "svix": _standard_webhooks("svix"),
    "shopify": _shopify,
    "basic": _basic,
    "bearer": _bearer,
    "jwt": _jwt,
}
