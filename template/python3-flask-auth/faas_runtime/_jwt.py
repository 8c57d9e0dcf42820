"""JWT bearer tokens (RFC 7519), checked as RFC 8725 asks, with PyJWT.

PyJWT parses and verifies the JWS; this module picks the keys, pins the
algorithms and maps every failure onto RFC 6750's challenges. Keys come
from a ``KeySource``:

- ``PemKeys``: PEM public keys or certificates in a secret file;
- ``JwksFile``: a JWKS document in a secret file;
- ``JwksUrl``: a JWKS served by the issuer, cached and refreshed when a
  token names a key it has not seen (how issuers rotate keys).

Keys are never taken from the token itself: ``jku``, ``x5u``, ``x5c`` and
``jwk`` headers are ignored (RFC 8725 §3.10), so a token cannot bring
its own key.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import logging
import math
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import jwt
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from jwt.types import Options

from ._bearer import bearer_challenge, bearer_token
from ._errors import ConfigError, Unauthorized
from ._secrets import SecretFile
from ._types import AuthRequest, Identity

logger = logging.getLogger("faas_runtime.jwt")

PublicKey = (
    rsa.RSAPublicKey
    | ec.EllipticCurvePublicKey
    | ed25519.Ed25519PublicKey
    | ed448.Ed448PublicKey
)

# Only public-key algorithms. HS* verifies with the configured key as an
# HMAC secret, and that key is public: anyone could sign (RFC 8725 §2.1,
# §3.1); "none" is no signature at all.
ALGORITHMS = frozenset(
    {
        *("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"),
        *("ES256", "ES256K", "ES384", "ES512", "EdDSA"),
    }
)

_EDDSA_KEYS = ed25519.Ed25519PublicKey | ed448.Ed448PublicKey

_CURVES = {
    "ES256": "secp256r1",
    "ES256K": "secp256k1",
    "ES384": "secp384r1",
    "ES512": "secp521r1",
}

# RFC 7519 §4.1.4 allows "a few minutes" of clock skew at most.
_MAX_LEEWAY = 300

_MAX_JWKS_BYTES = 1 << 20

_PEM_BLOCK = b"-----BEGIN "

# exp, nbf and iat are checked here against the verifier's clock, which
# PyJWT cannot be given; PyJWT still checks that the required claims are
# present and that iss and aud match.
_DECODE_OPTIONS: Options = {
    "require": ["exp", "iss", "aud"],
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
}

_REASONS: dict[type[Exception], str] = {
    jwt.InvalidAudienceError: "wrong audience (aud)",
    jwt.InvalidIssuerError: "wrong issuer (iss)",
    jwt.InvalidAlgorithmError: "algorithm not allowed",
    jwt.DecodeError: "token is not a well-formed JWS",
}


@dataclass(frozen=True)
class VerifyingKey:
    """A public key that tokens may be signed with."""

    key: PublicKey
    # The key ids a token's ``kid`` header may use to name this key.
    kids: frozenset[str] = frozenset()
    # The JWK's ``alg``, when the key set pins one (RFC 7517 §4.4).
    algorithm: str | None = None

    def fits(self, algorithm: str) -> bool:
        """Tell whether a token signed with ``algorithm`` could use this key."""
        if self.algorithm is not None and self.algorithm != algorithm:
            return False
        if algorithm[:2] in ("RS", "PS"):
            return isinstance(self.key, rsa.RSAPublicKey)
        if algorithm == "EdDSA":
            return isinstance(self.key, _EDDSA_KEYS)
        if not isinstance(self.key, ec.EllipticCurvePublicKey):
            return False
        return self.key.curve.name == _CURVES.get(algorithm)


class KeySource(Protocol):
    """Where a ``JWTVerifier`` finds the public keys it trusts."""

    def keys(self, kid: str | None) -> Sequence[VerifyingKey]:
        """The trusted keys; raise ``ConfigError`` if there are none."""
        ...


class PemKeys:
    """Public keys or certificates, PEM-encoded, from one secret file.

    A certificate only carries its key here: its dates and issuer are not
    checked. A token's ``kid`` is matched against each key's RFC 7638
    thumbprint and, for certificates, ``x5t`` and ``x5t#S256``; a token
    without a matching ``kid`` is tried against every key.
    """

    def __init__(self, secret: SecretFile) -> None:
        self._secret = secret
        self._cache: tuple[bytes, list[VerifyingKey]] | None = None

    def keys(self, kid: str | None) -> Sequence[VerifyingKey]:
        """Every key in the file, re-read when the file changes."""
        data = self._secret.read_bytes()
        cache = self._cache
        if cache is not None and cache[0] is data:
            return cache[1]

        keys = _pem_keys(data, self._secret.name)
        self._cache = (data, keys)
        return keys


class JwksFile:
    """A JWKS document (RFC 7517 §5) from one secret file."""

    def __init__(self, secret: SecretFile) -> None:
        self._secret = secret
        self._cache: tuple[bytes, list[VerifyingKey]] | None = None

    def keys(self, kid: str | None) -> Sequence[VerifyingKey]:
        """Every usable signing key in the file, re-read when it changes."""
        data = self._secret.read_bytes()
        cache = self._cache
        if cache is not None and cache[0] is data:
            return cache[1]

        where = f"secret {self._secret.name!r}"
        try:
            keys = _jwks_keys(_json(data), where)
        except ValueError as exc:
            raise ConfigError(
                f"{where} {exc}; write the issuer's JWKS JSON into it"
            ) from exc
        self._cache = (data, keys)
        return keys


class JwksUrl:
    """A JWKS fetched from the issuer over HTTP(S), cached in memory.

    The set is kept ``cache_ttl`` seconds. A token whose ``kid`` is not in
    it causes one refetch, at most once per ``cooldown`` seconds (so a
    stream of made-up ids cannot flood the issuer). Redirects are refused.
    When a refetch fails the cached keys stay in use; only a verifier that
    never got any keys fails with ``ConfigError``. Requests wait while a
    fetch is under way, so only one goes out at a time.
    """

    def __init__(
        self,
        url: str,
        *,
        cache_ttl: float = 300,
        cooldown: float = 30,
        timeout: float = 5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"JWKS url {url!r} is not an http(s) URL; give the issuer's "
                "jwks_uri, e.g. https://issuer.example/.well-known/jwks.json"
            )
        if not cache_ttl > 0 or not cooldown >= 0 or not timeout > 0:
            raise ConfigError(
                f"JWKS cache_ttl={cache_ttl}, cooldown={cooldown}, "
                f"timeout={timeout}: cache_ttl and timeout must be positive "
                "and cooldown not negative"
            )

        self.url = url
        self._ttl = cache_ttl
        self._cooldown = cooldown
        self._timeout = timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: list[VerifyingKey] = []
        self._fetched_at: float | None = None
        self._tried_at: float | None = None
        self._failure = ""

    def keys(self, kid: str | None) -> Sequence[VerifyingKey]:
        """The cached keys, refreshed when stale or when ``kid`` is new."""
        with self._lock:
            now = self._clock()
            if self._expired(now):
                self._refresh(now, "cache expired")
            elif (
                kid is not None
                and self._cooled(now)
                and not any(kid in key.kids for key in self._keys)
            ):
                self._refresh(now, "token names an unknown kid")

            if not self._keys:
                raise ConfigError(
                    f"no keys from JWKS url {self.url!r} ({self._failure}); "
                    "check that the issuer serves it at that address"
                )
            return self._keys

    def _expired(self, now: float) -> bool:
        if self._fetched_at is not None and now - self._fetched_at < self._ttl:
            return False
        # Without keys every request fails anyway, so try each time; with
        # stale keys in hand, spare a failing issuer.
        return not self._keys or self._cooled(now)

    def _cooled(self, now: float) -> bool:
        return self._tried_at is None or now - self._tried_at >= self._cooldown

    def _refresh(self, now: float, why: str) -> None:
        self._tried_at = now
        try:
            keys = _jwks_keys(self._fetch(), f"JWKS url {self.url!r}")
        except (OSError, http.client.HTTPException, ValueError) as exc:
            self._failure = str(exc)
            logger.warning(
                "jwks fetch failed: url=%s why=%r error=%s kept_keys=%d",
                self.url,
                why,
                exc,
                len(self._keys),
            )
            return

        self._keys, self._fetched_at = keys, now
        count = len(keys)
        logger.info("jwks fetched: url=%s why=%r keys=%d", self.url, why, count)

    def _fetch(self) -> Any:
        # The scheme was checked to be http(s) in __init__.
        request = urllib.request.Request(  # noqa: S310
            self.url, headers={"Accept": "application/json"}
        )
        opener = urllib.request.build_opener(_NoRedirects())
        try:
            with opener.open(request, timeout=self._timeout) as response:
                body = response.read(_MAX_JWKS_BYTES + 1)
        except urllib.error.HTTPError as exc:
            exc.close()
            if 300 <= exc.code < 400:
                raise ValueError(
                    f"answered a redirect ({exc.code}); redirects are "
                    "refused, give the final URL"
                ) from None
            raise

        if len(body) > _MAX_JWKS_BYTES:
            raise ValueError("answered more than 1 MiB")
        return _json(body)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # Returning None makes urllib raise the 3xx as an HTTPError: the key
    # set must come from the configured address, not wherever a
    # compromised or misconfigured server points.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class JWTVerifier:
    """Accept requests whose bearer token is a valid JWT from the issuer."""

    scheme = "jwt"
    needs_body = False

    def __init__(
        self,
        *,
        keys: KeySource,
        issuer: str,
        audience: str | list[str],
        algorithms: Sequence[str] = ("RS256", "ES256", "EdDSA"),
        leeway: float = 30,
        realm: str = "api",
        clock: Callable[[], float] | None = None,
    ) -> None:
        try:
            self._refusal = bearer_challenge(realm, "invalid_token")
        except ValueError as exc:
            message = f"JWT realm {realm!r} {exc}; use printable text"
            raise ConfigError(message) from exc
        if not isinstance(issuer, str) or not issuer:
            raise ConfigError(
                f"JWT issuer {issuer!r} is empty; give the issuer's iss value"
            )
        if not 0 <= leeway <= _MAX_LEEWAY:
            raise ConfigError(
                f"JWT leeway {leeway!r} is outside 0..{_MAX_LEEWAY} seconds; "
                "RFC 7519 allows a few minutes of clock skew at most"
            )

        self.realm = realm
        self.issuer = issuer
        self.audience = _audiences(audience)
        self.algorithms = _algorithms(algorithms)
        self.leeway = float(leeway)
        self._keys = keys
        self._clock = clock or time.time

    def verify(self, request: AuthRequest) -> Identity:
        """Return the token's subject and claims, or refuse."""
        token = bearer_token(request, realm=self.realm)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise self._invalid(_reason(exc)) from None

        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self.algorithms:
            shown = str(algorithm)[:20]
            raise self._invalid(f"algorithm {shown!r} not allowed")

        kid = header.get("kid")
        claims = self._decode(token, self._candidates(algorithm, kid))
        self._check_times(claims)

        subject = claims.get("sub")
        return Identity(
            scheme=self.scheme,
            subject=subject if isinstance(subject, str) and subject else "jwt",
            claims=claims,
        )

    def _candidates(self, alg: str, kid: str | None) -> list[VerifyingKey]:
        fitting = [key for key in self._keys.keys(kid) if key.fits(alg)]
        named = [key for key in fitting if kid is not None and kid in key.kids]
        # A kid is a hint (RFC 7515 §4.1.4): when it names none of the keys,
        # every key that fits the algorithm is tried.
        return named or fitting

    def _decode(self, token: str, keys: list[VerifyingKey]) -> dict[str, Any]:
        if not keys:
            raise self._invalid("no configured key fits the token's algorithm")

        for key in keys:
            try:
                claims: dict[str, Any] = jwt.decode(
                    token,
                    key.key,
                    algorithms=sorted(self.algorithms),
                    audience=self.audience,
                    issuer=self.issuer,
                    options=_DECODE_OPTIONS,
                )
            except jwt.InvalidSignatureError:
                continue
            except jwt.PyJWTError as exc:
                raise self._invalid(_reason(exc)) from None
            return claims

        raise self._invalid(f"signature matches none of {len(keys)} keys")

    def _check_times(self, claims: dict[str, Any]) -> None:
        try:
            expires = _numeric_date(claims, "exp")
            not_before = _numeric_date(claims, "nbf")
            issued = _numeric_date(claims, "iat")
        except ValueError as exc:
            raise self._invalid(str(exc)) from None

        now = self._clock()
        if expires is None or now - self.leeway >= expires:
            raise self._invalid("token expired (exp)")

        if not_before is not None and not_before > now + self.leeway:
            raise self._invalid("token not valid yet (nbf)")

        if issued is not None and issued > now + self.leeway:
            raise self._invalid("token issued in the future (iat)")

    def _invalid(self, reason: str) -> Unauthorized:
        challenge = ("WWW-Authenticate", self._refusal)
        return Unauthorized(reason, headers=[challenge])


def _numeric_date(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    # RFC 7519 §2: a NumericDate is a JSON number; true is not one.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} claim is not a NumericDate")
    if not math.isfinite(value):
        raise ValueError(f"{name} claim is not finite")
    return float(value)


def _reason(exc: Exception) -> str:
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"token lacks the {exc.claim!r} claim"
    for kind, reason in _REASONS.items():
        if isinstance(exc, kind):
            return reason
    return f"token refused by PyJWT ({type(exc).__name__})"


def _audiences(audience: str | list[str]) -> list[str]:
    values = [audience] if isinstance(audience, str) else list(audience)
    if not values or not all(isinstance(v, str) and v for v in values):
        raise ConfigError(
            f"JWT audience {audience!r} is empty; give the aud value(s) "
            "tokens for this function carry"
        )
    return values


def _algorithms(algorithms: Sequence[str]) -> frozenset[str]:
    names = [algorithms] if isinstance(algorithms, str) else list(algorithms)
    for name in names:
        if name.upper().startswith("HS") or name.lower() == "none":
            raise ConfigError(
                f"JWT algorithm {name!r} is refused: with a public key "
                "configured it lets anyone sign tokens (RFC 8725 §2.1); "
                f"use some of {', '.join(sorted(ALGORITHMS))}"
            )
        if name not in ALGORITHMS:
            raise ConfigError(
                f"unknown JWT algorithm {name!r}; use some of "
                f"{', '.join(sorted(ALGORITHMS))}"
            )
    if not names:
        raise ConfigError("no JWT algorithms allowed; list at least one")
    return frozenset(names)


def _pem_keys(data: bytes, secret: str) -> list[VerifyingKey]:
    blocks = [_PEM_BLOCK + part for part in data.split(_PEM_BLOCK)[1:]]
    if not blocks:
        raise ConfigError(
            f"secret {secret!r} holds no PEM block; put one or more public "
            "keys (BEGIN PUBLIC KEY) or certificates in it"
        )
    numbered = enumerate(blocks, start=1)
    return [_pem_key(block, number, secret) for number, block in numbered]


def _pem_key(block: bytes, number: int, secret: str) -> VerifyingKey:
    where = f"PEM block {number} of secret {secret!r}"
    if b"PRIVATE KEY-----" in block.split(b"\n", 1)[0]:
        raise ConfigError(
            f"{where} is a private key; give the function only the public "
            "key (openssl pkey -pubout)"
        )

    try:
        if block.startswith(b"-----BEGIN CERTIFICATE-----"):
            cert = x509.load_pem_x509_certificate(block)
            return _certificate_key(cert, where)
        loaded = serialization.load_pem_public_key(block)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ConfigError(
            f"{where} is neither a public key nor a certificate ({exc})"
        ) from exc

    key = _public(loaded, where)
    return VerifyingKey(key, frozenset({_thumbprint(key)}))


def _certificate_key(cert: x509.Certificate, where: str) -> VerifyingKey:
    key = _public(cert.public_key(), where)
    der = cert.public_bytes(serialization.Encoding.DER)
    kids = {
        _thumbprint(key),
        # RFC 7515 §4.1.7 and §4.1.8: certificate thumbprints, which
        # issuers that publish certificates (Azure AD, ADFS) use as kid.
        _b64url(hashlib.sha1(der, usedforsecurity=False).digest()),
        _b64url(cert.fingerprint(hashes.SHA256())),
    }
    return VerifyingKey(key, frozenset(kids))


def _public(key: object, where: str) -> PublicKey:
    if isinstance(key, PublicKey):
        return key
    raise ConfigError(
        f"{where} holds a {type(key).__name__}; use an RSA, EC or EdDSA key"
    )


def _thumbprint(key: PublicKey) -> str:
    # RFC 7638 §3: SHA-256 over the required members, sorted, no spaces.
    members: tuple[str, ...]
    if isinstance(key, rsa.RSAPublicKey):
        jwk = RSAAlgorithm.to_jwk(key, as_dict=True)
        members = ("e", "kty", "n")
    elif isinstance(key, ec.EllipticCurvePublicKey):
        jwk = ECAlgorithm.to_jwk(key, as_dict=True)
        members = ("crv", "kty", "x", "y")
    else:
        jwk = OKPAlgorithm.to_jwk(key, as_dict=True)
        members = ("crv", "kty", "x")

    required = {name: jwk[name] for name in members}
    canonical = json.dumps(required, separators=(",", ":"), sort_keys=True)
    return _b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError as exc:
        raise ValueError(f"is not JSON ({exc})") from None


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _jwks_keys(document: Any, where: str) -> list[VerifyingKey]:
    listed = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(listed, list):
        raise ValueError("is not a JWKS: a JSON object with a 'keys' list")

    keys = []
    for number, jwk in enumerate(listed, start=1):
        key = _jwk_key(jwk, number, where)
        if key is not None:
            keys.append(key)
    if not keys:
        raise ValueError("holds no usable public signing key")
    return keys


def _jwk_key(jwk: Any, number: int, where: str) -> VerifyingKey | None:
    if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig":
        return None
    if jwk.get("kty") == "oct" or "d" in jwk:
        # Symmetric or private material has no place in a published set.
        logger.warning("jwks key %d of %s skipped: not public", number, where)
        return None

    try:
        key = jwt.PyJWK(jwk).key
    except jwt.PyJWTError as exc:
        logger.warning("jwks key %d of %s skipped: %s", number, where, exc)
        return None
    if not isinstance(key, PublicKey):
        return None

    kid, alg = jwk.get("kid"), jwk.get("alg")
    return VerifyingKey(
        key,
        frozenset({kid}) if isinstance(kid, str) else frozenset(),
        alg if isinstance(alg, str) else None,
    )
