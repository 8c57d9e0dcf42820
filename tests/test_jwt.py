"""JWT bearer tokens (faas_runtime._jwt), per RFC 7519 and RFC 8725.

Key pairs are generated here with cryptography and tokens signed with
PyJWT; attack tokens (HS256 keyed with the public key) are built by hand.
JWKS documents are served by a real HTTP server on a free port.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa, x25519
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jwt.algorithms import RSAAlgorithm

from faas_runtime._errors import AuthError, BadRequest, ConfigError, Unauthorized
from faas_runtime._jwt import (
    JwksFile,
    JwksUrl,
    JWTVerifier,
    KeySource,
    PemKeys,
)
from faas_runtime._secrets import SecretFile
from faas_runtime._types import AuthRequest, Headers, Identity

NOW = 1_700_000_000
ISSUER = "https://issuer.example"
AUDIENCE = "fn:hello"

BARE = ("WWW-Authenticate", 'Bearer realm="api"')
INVALID_TOKEN = ("WWW-Authenticate", 'Bearer realm="api", error="invalid_token"')
INVALID_REQUEST = ("WWW-Authenticate", 'Bearer realm="api", error="invalid_request"')

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | Ed25519PrivateKey


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    """An RSA-2048 key pair for RS256 and PS256."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_rsa_key() -> rsa.RSAPrivateKey:
    """A second RSA key: the rotated-in key, or an attacker's."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    """A P-256 key pair for ES256."""
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def ed_key() -> Ed25519PrivateKey:
    """An Ed25519 key pair for EdDSA."""
    return Ed25519PrivateKey.generate()


def public_pem(*keys: PrivateKey) -> bytes:
    """The PEM public keys of ``keys``, one block after another."""
    return b"".join(
        key.public_key().public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )
        for key in keys
    )


def claims(**overrides: Any) -> dict[str, Any]:
    """Valid claims at NOW; an override of None drops the claim."""
    base = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "iat": NOW}
    base["exp"] = NOW + 300
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not None}


def sign(
    key: PrivateKey,
    algorithm: str = "RS256",
    headers: dict[str, Any] | None = None,
    **overrides: Any,
) -> str:
    """A token over ``claims(**overrides)`` signed with PyJWT."""
    return jwt.encode(claims(**overrides), key, algorithm=algorithm, headers=headers)


def b64url(raw: bytes) -> str:
    """Unpadded base64url, as JWS uses."""
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def thumbprint(key: rsa.RSAPrivateKey) -> str:
    """The RFC 7638 thumbprint of an RSA key's public half."""
    jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    members = json.dumps(
        {"e": jwk["e"], "kty": "RSA", "n": jwk["n"]}, separators=(",", ":")
    )
    return b64url(hashlib.sha256(members.encode()).digest())


def jwk_of(key: PrivateKey, **extra: Any) -> dict[str, Any]:
    """The public JWK of ``key`` with extra members such as kid."""
    public = key.public_key()
    algorithm = jwt.get_algorithm_by_name(
        "RS256" if isinstance(key, rsa.RSAPrivateKey)
        else "ES256" if isinstance(key, ec.EllipticCurvePrivateKey)
        else "EdDSA"
    )  # fmt: skip
    return {**json.loads(algorithm.to_jwk(public)), **extra}


def request(token: str | None) -> AuthRequest:
    """A GET with ``Authorization: Bearer <token>``, or none."""
    headers = [] if token is None else [("Authorization", f"Bearer {token}")]
    return AuthRequest("GET", "/", "", Headers(headers))


Secret = Callable[[bytes | str], SecretFile]


@pytest.fixture
def secret(tmp_path: Path) -> Secret:
    """Write the jwt-public-key secret (replaced atomically)."""

    def write(content: bytes | str) -> SecretFile:
        raw = content.encode() if isinstance(content, str) else content
        staged = tmp_path / "staged"
        staged.write_bytes(raw)
        os.replace(staged, tmp_path / "jwt-public-key")
        return SecretFile(tmp_path / "jwt-public-key")

    return write


def verifier(keys: KeySource, **options: Any) -> JWTVerifier:
    """A verifier for ISSUER/AUDIENCE whose clock stands at NOW."""
    options.setdefault("clock", lambda: float(NOW))
    return JWTVerifier(keys=keys, issuer=ISSUER, audience=AUDIENCE, **options)


def refusal(check: JWTVerifier, req: AuthRequest) -> AuthError:
    """The AuthError that ``req`` causes (any other outcome fails)."""
    with pytest.raises(AuthError) as caught:
        check.verify(req)
    return caught.value


def assert_invalid_token(error: AuthError, reason: str) -> None:
    """A 401 invalid_token whose logged reason mentions ``reason``."""
    assert isinstance(error, Unauthorized)
    assert error.headers == [INVALID_TOKEN]
    assert reason in error.reason


class TestAlgorithms:
    @pytest.mark.parametrize(
        ("key_name", "algorithm"),
        [("rsa_key", "RS256"), ("ec_key", "ES256"), ("ed_key", "EdDSA")],
    )
    def test_each_default_algorithm_verifies(
        self,
        request_fixture: Callable[[str], PrivateKey],
        secret: Secret,
        key_name: str,
        algorithm: str,
    ) -> None:
        """RS256, ES256 and EdDSA tokens verify against a file of all three keys."""
        keys = [request_fixture(name) for name in ("rsa_key", "ec_key", "ed_key")]
        check = verifier(PemKeys(secret(public_pem(*keys))))
        token = sign(request_fixture(key_name), algorithm)

        identity = check.verify(request(token))

        assert identity == Identity(scheme="jwt", subject="user-1", claims=claims())

    def test_alg_none_is_refused(
        self, rsa_key: rsa.RSAPrivateKey, secret: Secret
    ) -> None:
        """An unsigned token (alg "none") is refused (RFC 8725 §3.2)."""
        check = verifier(PemKeys(secret(public_pem(rsa_key))))
        token = jwt.encode(claims(), "", algorithm="none")

        assert_invalid_token(refusal(check, request(token)), "'none' not allowed")

    def test_hs256_keyed_with_the_public_key_is_refused(
        self, rsa_key: rsa.RSAPrivateKey, secret: Secret
    ) -> None:
        """HS256 signed with the public PEM as HMAC secret is refused (§2.1)."""
        pem = public_pem(rsa_key)
        check = verifier(PemKeys(secret(pem)))
        header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        payload = b64url(json.dumps(claims()).encode())
        mac = hmac.new(pem, f"{header}.{payload}".encode(), hashlib.sha256)
        token = f"{header}.{payload}.{b64url(mac.digest())}"

        assert_invalid_token(refusal(check, request(token)), "'HS256' not allowed")

    @pytest.mark.parametrize("name", ["HS256", "hs384", "HS512", "none", "None"])
    def test_symmetric_or_no_algorithm_is_a_config_error(
        self, rsa_key: rsa.RSAPrivateKey, secret: Secret, name: str
    ) -> None:
        """Allowing HS* or none fails at construction (key confusion)."""
        with pytest.raises(ConfigError, match="RFC 8725"):
            verifier(PemKeys(secret(public_pem(rsa_key))), algorithms=["RS256", name])

    @pytest.mark.parametrize("algorithms", [["RS1"], [], ["rs256"]])
    def test_unknown_or_empty_algorithm_list_is_a_config_error(
        self, rsa_key: rsa.RSAPrivateKey, secret: Secret, algorithms: list[str]
    ) -> None:
        """Only known public-key algorithms may be listed, at least one."""
        with pytest.raises(ConfigError, match="algorithm"):
            verifier(PemKeys(secret(public_pem(rsa_key))), algorithms=algorithms)

    def test_algorithm_outside_the_allow_list_is_refused(
        self, rsa_key: rsa.RSAPrivateKey, secret: Secret
    ) -> None:
        """PS256 verifies only when listed, even with the right RSA key."""
        keys = PemKeys(secret(public_pem(rsa_key)))
        token = sign(rsa_key, "PS256")

        assert_invalid_token(refusal(verifier(keys), request(token)), "not allowed")
        assert verifier(keys, algorithms=("PS256",)).verify(request(token))

    def test_no_key_of_the_right_type_is_refused(
        self,
        ec_key: ec.EllipticCurvePrivateKey,
        rsa_key: rsa.RSAPrivateKey,
        secret: Secret,
    ) -> None:
        """An RS256 token against a file with only an EC key is refused."""
        check = verifier(PemKeys(secret(public_pem(ec_key))))

        error = refusal(check, request(sign(rsa_key, "RS256")))

        assert_invalid_token(error, "no configured key fits")

    def test_token_from_another_key_is_refused(
        self,
        rsa_key: rsa.RSAPrivateKey,
        other_rsa_key: rsa.RSAPrivateKey,
        secret: Secret,
    ) -> None:
        """A correctly formed token signed by an unknown key is refused."""
        check = verifier(PemKeys(secret(public_pem(rsa_key))))

        error = refusal(check, request(sign(other_rsa_key)))

        assert_invalid_token(error, "signature matches none of 1 keys")


@pytest.fixture
def request_fixture(request: pytest.FixtureRequest) -> Callable[[str], Any]:
    """Look a fixture up by name (for parametrised key choices)."""
    return request.getfixturevalue


class TestClaims:
    @pytest.fixture
    def check(self, rsa_key: rsa.RSAPrivateKey, secret: Secret) -> JWTVerifier:
        """A verifier trusting rsa_key, with 30 s leeway, at NOW."""
        return verifier(PemKeys(secret(public_pem(rsa_key))))

    @pytest.mark.parametrize(
        ("overrides", "reason"),
        [
            ({"exp": NOW - 31}, "token expired"),
            ({"exp": NOW - 30}, "token expired"),
            ({"nbf": NOW + 31}, "not valid yet"),
            ({"iat": NOW + 31}, "issued in the future"),
            ({"aud": "fn:other"}, "wrong audience"),
            ({"aud": ["fn:a", "fn:b"]}, "wrong audience"),
            ({"iss": "https://evil.example"}, "wrong issuer"),
            ({"exp": None}, "lacks the 'exp' claim"),
            ({"iss": None}, "lacks the 'iss' claim"),
            ({"aud": None}, "lacks the 'aud' claim"),
            ({"exp": "tomorrow"}, "exp claim is not a NumericDate"),
            ({"exp": True}, "exp claim is not a NumericDate"),
            ({"nbf": [1]}, "nbf claim is not a NumericDate"),
        ],
    )
    def test_bad_claims_are_401_invalid_token(
        self,
        check: JWTVerifier,
        rsa_key: rsa.RSAPrivateKey,
        overrides: dict[str, Any],
        reason: str,
    ) -> None:
        """Each claim failure is an opaque 401 with its reason logged."""
        error = refusal(check, request(sign(rsa_key, **overrides)))

        assert_invalid_token(error, reason)

    @pytest.mark.parametrize(
        "overrides",
        [
            {"exp": NOW - 29},
            {"nbf": NOW + 29},
            {"iat": NOW + 29},
            {"exp": NOW + 0.5, "iat": NOW - 0.5},
            {"aud": ["fn:other", AUDIENCE]},
        ],
    )
    def test_claims_within_leeway_are_accepted(
        self,
        check: JWTVerifier,
        rsa_key: rsa.RSAPrivateKey,
        overrides: dict[str, Any],
    ) -> None:
        """30 s of skew either way, fractional times and a list aud are fine."""
        identity = check.verify(request(sign(rsa_key, **overrides)))

        assert identity.claims == claims(**overrides)
        assert identity.subject == "user-1"

    def test_without_sub_the_subject_is_jwt(
        self, check: JWTVerifier, rsa_key: rsa.RSAPrivateKey
    ) -> None:
        """A token without sub is reported as subject "jwt"."""
        assert check.verify(request(sign(rsa_key, sub=None))).subject == "jwt"

    def test_zero_leeway_is_exact(
        self, rsa_key: rsa.RSAPrivateKey, secret: Secret
    ) -> None:
        """With leeway 0 a token is refused at its exp second, not before."""
        check = verifier(PemKeys(secret(public_pem(rsa_key))), leeway=0)

        assert check.verify(request(sign(rsa_key, exp=NOW + 1)))
        assert_invalid_token(refusal(check, request(sign(rsa_key, exp=NOW))), "expired")

    def test_several_accepted_audiences(
        self, rsa_key: rsa.RSAPrivateKey, secret: Secret
    ) -> None:
        """A verifier for two audiences accepts either and nothing else."""
        check = JWTVerifier(
            keys=PemKeys(secret(public_pem(rsa_key))),
            issuer=ISSUER,
            audience=["fn:a", "fn:b"],
            clock=lambda: float(NOW),
        )

        assert check.verify(request(sign(rsa_key, aud="fn:b")))
        refusal(check, request(sign(rsa_key, aud="fn:c")))

    def test_default_clock_is_the_wall_clock(
        self, rsa_key: rsa.RSAPrivateKey, secret: Secret
    ) -> None:
        """Without a clock, exp is compared with the current time."""
        check = JWTVerifier(
            keys=PemKeys(secret(public_pem(rsa_key))), issuer=ISSUER, audience=AUDIENCE
        )
        now = int(time.time())

        assert check.verify(request(sign(rsa_key, iat=now, exp=now + 300)))
        refusal(check, request(sign(rsa_key, iat=now - 7200, exp=now - 3600)))

    @pytest.mark.parametrize(
        ("options", "complaint"),
        [
            ({"issuer": ""}, "issuer"),
            ({"audience": ""}, "audience"),
            ({"audience": []}, "audience"),
            ({"leeway": -1}, "leeway"),
            ({"leeway": 301}, "leeway"),
            ({"realm": "a\nb"}, "realm"),
        ],
    )
    def test_unusable_settings_are_config_errors(
        self,
        rsa_key: rsa.RSAPrivateKey,
        secret: Secret,
        options: dict[str, Any],
        complaint: str,
    ) -> None:
        """Empty issuer or audience, odd leeway or realm fail at construction."""
        settings = {"issuer": ISSUER, "audience": AUDIENCE, **options}

        with pytest.raises(ConfigError, match=complaint):
            JWTVerifier(keys=PemKeys(secret(public_pem(rsa_key))), **settings)


class TestRequests:
    @pytest.fixture
    def check(self, rsa_key: rsa.RSAPrivateKey, secret: Secret) -> JWTVerifier:
        """A verifier trusting rsa_key, at NOW."""
        return verifier(PemKeys(secret(public_pem(rsa_key))))

    def test_no_token_is_a_bare_401(self, check: JWTVerifier) -> None:
        """Without credentials the challenge carries no error (RFC 6750 §3.1)."""
        error = refusal(check, request(None))

        assert isinstance(error, Unauthorized)
        assert error.headers == [BARE]

    @pytest.mark.parametrize("value", ["Bearer", "Bearer a b", "Bearer a, Bearer b"])
    def test_malformed_authorization_is_a_400(
        self, check: JWTVerifier, value: str
    ) -> None:
        """A malformed Authorization header is 400 invalid_request."""
        req = AuthRequest("GET", "/", "", Headers({"Authorization": value}))

        error = refusal(check, req)

        assert isinstance(error, BadRequest)
        assert error.headers == [INVALID_REQUEST]

    @pytest.mark.parametrize("token", ["abc", "a.b", "a.b.c", "e30.e30.", "x" * 40])
    def test_a_token_that_is_no_jws_is_invalid(
        self, check: JWTVerifier, token: str
    ) -> None:
        """Garbage in the Bearer slot is 401 invalid_token, not an exception."""
        assert_invalid_token(refusal(check, request(token)), "")

    def test_tokens_cannot_bring_their_own_keys(
        self,
        check: JWTVerifier,
        other_rsa_key: rsa.RSAPrivateKey,
        jwks_server: JwksServer,
    ) -> None:
        """jku, x5u and jwk headers are never fetched nor trusted (§3.10)."""
        jwks_server.document = {"keys": [jwk_of(other_rsa_key, kid="evil")]}
        headers = {
            "kid": "evil",
            "jku": jwks_server.url("/jwks.json"),
            "x5u": jwks_server.url("/cert.pem"),
            "jwk": jwk_of(other_rsa_key),
        }

        error = refusal(check, request(sign(other_rsa_key, headers=headers)))

        assert_invalid_token(error, "signature")
        assert sum(jwks_server.hits.values()) == 0


RFC_7638_N = (
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPF"
    "FxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93l"
    "qt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHz"
    "u6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPks"
    "INHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
)


def self_signed(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    """A self-signed certificate for ``key``."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "issuer.example")])
    start = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


class TestPemKeys:
    def test_kid_is_the_rfc_7638_thumbprint(self, secret: Secret) -> None:
        """RFC 7638 §3.1's example key gets its published thumbprint as kid."""
        key = RSAAlgorithm.from_jwk({"kty": "RSA", "n": RFC_7638_N, "e": "AQAB"})
        assert isinstance(key, rsa.RSAPublicKey)
        pem = key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

        (loaded,) = PemKeys(secret(pem)).keys(None)

        assert loaded.kids == {"NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"}

    def test_kid_picks_the_key_and_is_only_a_hint(
        self,
        rsa_key: rsa.RSAPrivateKey,
        other_rsa_key: rsa.RSAPrivateKey,
        secret: Secret,
    ) -> None:
        """A matching kid verifies; an unknown or absent kid tries every key."""
        check = verifier(PemKeys(secret(public_pem(rsa_key, other_rsa_key))))

        for kid in (thumbprint(other_rsa_key), "unknown", None):
            headers = None if kid is None else {"kid": kid}
            assert check.verify(request(sign(other_rsa_key, headers=headers)))

    def test_a_kid_naming_the_wrong_key_fails(
        self,
        rsa_key: rsa.RSAPrivateKey,
        other_rsa_key: rsa.RSAPrivateKey,
        secret: Secret,
    ) -> None:
        """When the kid names a key, only that key is tried."""
        check = verifier(PemKeys(secret(public_pem(rsa_key, other_rsa_key))))
        headers = {"kid": thumbprint(rsa_key)}

        error = refusal(check, request(sign(other_rsa_key, headers=headers)))

        assert_invalid_token(error, "none of 1 keys")

    def test_certificates_carry_keys(
        self, ec_key: ec.EllipticCurvePrivateKey, secret: Secret
    ) -> None:
        """A PEM certificate works; x5t#S256 is accepted as its kid."""
        cert = self_signed(ec_key)
        pem = cert.public_bytes(serialization.Encoding.PEM)
        check = verifier(PemKeys(secret(b"issuer certificate\n" + pem)))
        kid = b64url(cert.fingerprint(hashes.SHA256()))

        assert check.verify(request(sign(ec_key, "ES256", headers={"kid": kid})))
        assert check.verify(request(sign(ec_key, "ES256")))

    def test_a_changed_file_rotates_keys(
        self,
        rsa_key: rsa.RSAPrivateKey,
        other_rsa_key: rsa.RSAPrivateKey,
        secret: Secret,
    ) -> None:
        """Rewriting the secret swaps the trusted key without a restart."""
        check = verifier(PemKeys(secret(public_pem(rsa_key))))
        assert check.verify(request(sign(rsa_key)))

        secret(public_pem(other_rsa_key))

        assert check.verify(request(sign(other_rsa_key)))
        refusal(check, request(sign(rsa_key)))

    @pytest.mark.parametrize(
        ("content", "complaint"),
        [
            (b"not a pem at all\n", "no PEM block"),
            (
                b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
                "block 1",
            ),
            (
                b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                "block 1",
            ),
        ],
    )
    def test_unusable_files_are_config_errors(
        self, secret: Secret, content: bytes, complaint: str
    ) -> None:
        """A file without a usable PEM block fails closed, naming the block."""
        with pytest.raises(ConfigError, match=complaint):
            PemKeys(secret(content)).keys(None)

    def test_private_keys_are_refused(
        self, ec_key: ec.EllipticCurvePrivateKey, secret: Secret
    ) -> None:
        """A private key in the function's secret is a ConfigError."""
        pem = ec_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

        with pytest.raises(ConfigError, match="private key"):
            PemKeys(secret(public_pem(ec_key) + pem)).keys(None)

    def test_keys_that_cannot_sign_are_refused(self, secret: Secret) -> None:
        """An X25519 (key agreement) key is named and refused."""
        pem = (
            x25519.X25519PrivateKey.generate()
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM,
                serialization.PublicFormat.SubjectPublicKeyInfo,
            )
        )

        with pytest.raises(ConfigError, match="X25519PublicKey"):
            PemKeys(secret(pem)).keys(None)


class TestJwksFile:
    def test_keys_from_a_jwks_document(
        self,
        rsa_key: rsa.RSAPrivateKey,
        ed_key: Ed25519PrivateKey,
        secret: Secret,
    ) -> None:
        """Every signing key in the set verifies its tokens, by kid or not."""
        document = {"keys": [jwk_of(rsa_key, kid="r1"), jwk_of(ed_key, kid="e1")]}
        check = verifier(JwksFile(secret(json.dumps(document))))

        assert check.verify(request(sign(rsa_key, headers={"kid": "r1"})))
        assert check.verify(request(sign(ed_key, "EdDSA", headers={"kid": "e1"})))
        assert check.verify(request(sign(ed_key, "EdDSA")))

    def test_a_pinned_alg_is_respected(
        self, rsa_key: rsa.RSAPrivateKey, secret: Secret
    ) -> None:
        """A JWK with alg RS256 does not verify a PS256 token (RFC 7517 §4.4)."""
        document = {"keys": [jwk_of(rsa_key, kid="r1", alg="RS256")]}
        check = verifier(JwksFile(secret(json.dumps(document))), algorithms=["PS256"])

        error = refusal(check, request(sign(rsa_key, "PS256", headers={"kid": "r1"})))

        assert_invalid_token(error, "no configured key fits")

    def test_keys_not_for_signing_are_skipped(
        self,
        rsa_key: rsa.RSAPrivateKey,
        other_rsa_key: rsa.RSAPrivateKey,
        secret: Secret,
    ) -> None:
        """use=enc, symmetric and private JWKs are never used to verify."""
        private = json.loads(RSAAlgorithm.to_jwk(other_rsa_key))
        document = {
            "keys": [
                jwk_of(other_rsa_key, use="enc"),
                {"kty": "oct", "k": b64url(b"shared secret bytes")},
                private,
                jwk_of(rsa_key),
            ]
        }
        check = verifier(JwksFile(secret(json.dumps(document))))

        assert check.verify(request(sign(rsa_key)))
        refusal(check, request(sign(other_rsa_key)))

    @pytest.mark.parametrize(
        ("content", "complaint"),
        [
            ("{not json", "JWKS JSON"),
            ('{"kid": "x"}', "'keys' list"),
            ('{"keys": []}', "no usable public signing key"),
            ('{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}', "no usable"),
            ('{"keys": [{"kty": "RSA", "n": "AQAB"}]}', "no usable"),
        ],
    )
    def test_unusable_documents_are_config_errors(
        self, secret: Secret, content: str, complaint: str
    ) -> None:
        """A broken JWKS file fails closed with a message naming the secret."""
        with pytest.raises(ConfigError, match=complaint) as caught:
            JwksFile(secret(content)).keys(None)

        assert "jwt-public-key" in str(caught.value)


class JwksServer:
    """A real HTTP server serving one JWKS document, counting requests."""

    def __init__(self) -> None:
        self.document: dict[str, Any] = {"keys": []}
        self.status = 200
        self.hits: Counter[str] = Counter()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(
            target=self.server.serve_forever, args=(0.05,), daemon=True
        )

    def url(self, path: str) -> str:
        """The URL of ``path`` on this server."""
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        state = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                state.hits[self.path] += 1
                if self.path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", state.url("/jwks.json"))
                    self.end_headers()
                    return
                body = json.dumps(state.document).encode()
                self.send_response(state.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    """A JWKS server on a free loopback port, stopped afterwards."""
    server = JwksServer()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TestJwksUrl:
    @pytest.fixture
    def clock(self) -> Clock:
        """The JWKS cache's clock."""
        return Clock()

    def source(
        self, server: JwksServer, clock: Clock, path: str = "/jwks.json"
    ) -> JwksUrl:
        """A JwksUrl with the default ttl (300 s) and cooldown (30 s)."""
        return JwksUrl(server.url(path), clock=clock)

    def test_the_set_is_fetched_once_and_cached(
        self, jwks_server: JwksServer, clock: Clock, rsa_key: rsa.RSAPrivateKey
    ) -> None:
        """Many requests within the cache lifetime cost one fetch."""
        jwks_server.document = {"keys": [jwk_of(rsa_key, kid="k1")]}
        check = verifier(self.source(jwks_server, clock))

        for _ in range(3):
            clock.now += 60
            assert check.verify(request(sign(rsa_key, headers={"kid": "k1"})))

        assert jwks_server.hits["/jwks.json"] == 1

    def test_rotation_refetches_once_per_cooldown(
        self,
        jwks_server: JwksServer,
        clock: Clock,
        rsa_key: rsa.RSAPrivateKey,
        other_rsa_key: rsa.RSAPrivateKey,
        ec_key: ec.EllipticCurvePrivateKey,
    ) -> None:
        """An unknown kid refetches, but never twice within the cooldown."""
        jwks_server.document = {"keys": [jwk_of(rsa_key, kid="k1")]}
        check = verifier(self.source(jwks_server, clock))
        assert check.verify(request(sign(rsa_key, headers={"kid": "k1"})))
        jwks_server.document["keys"].append(jwk_of(other_rsa_key, kid="k2"))
        rotated = request(sign(other_rsa_key, headers={"kid": "k2"}))

        # Within the cooldown of the first fetch: no refetch, refused.
        clock.now += 10
        assert_invalid_token(refusal(check, rotated), "signature")
        assert jwks_server.hits["/jwks.json"] == 1

        # Cooldown over: one refetch finds the new key.
        clock.now += 20
        assert check.verify(rotated).subject == "user-1"
        assert jwks_server.hits["/jwks.json"] == 2

        # A made-up kid right after does not refetch again.
        clock.now += 1
        made_up = request(sign(ec_key, "ES256", headers={"kid": "made-up"}))
        assert_invalid_token(refusal(check, made_up), "no configured key fits")
        assert jwks_server.hits["/jwks.json"] == 2

    def test_an_expired_cache_is_refreshed(
        self,
        jwks_server: JwksServer,
        clock: Clock,
        rsa_key: rsa.RSAPrivateKey,
        other_rsa_key: rsa.RSAPrivateKey,
    ) -> None:
        """After cache_ttl the set is fetched again, dropping removed keys."""
        jwks_server.document = {"keys": [jwk_of(rsa_key)]}
        check = verifier(self.source(jwks_server, clock))
        assert check.verify(request(sign(rsa_key)))

        jwks_server.document = {"keys": [jwk_of(other_rsa_key)]}
        clock.now += 301

        refusal(check, request(sign(rsa_key)))
        assert check.verify(request(sign(other_rsa_key)))
        assert jwks_server.hits["/jwks.json"] == 2

    def test_a_failing_issuer_leaves_the_cached_keys_in_use(
        self, jwks_server: JwksServer, clock: Clock, rsa_key: rsa.RSAPrivateKey
    ) -> None:
        """When a refresh fails, stale keys keep working; retries are spaced."""
        jwks_server.document = {"keys": [jwk_of(rsa_key)]}
        check = verifier(self.source(jwks_server, clock))
        assert check.verify(request(sign(rsa_key)))

        jwks_server.status = 500
        clock.now += 301
        assert check.verify(request(sign(rsa_key)))
        clock.now += 5
        assert check.verify(request(sign(rsa_key)))

        assert jwks_server.hits["/jwks.json"] == 2

    def test_no_keys_at_all_is_a_config_error(
        self, jwks_server: JwksServer, clock: Clock, rsa_key: rsa.RSAPrivateKey
    ) -> None:
        """Without any cached keys, a failed fetch answers 500 (ConfigError)."""
        jwks_server.status = 503
        check = verifier(self.source(jwks_server, clock))

        with pytest.raises(ConfigError, match="503"):
            check.verify(request(sign(rsa_key)))

    def test_redirects_are_refused(
        self, jwks_server: JwksServer, clock: Clock, rsa_key: rsa.RSAPrivateKey
    ) -> None:
        """A 302 from the JWKS URL is not followed."""
        jwks_server.document = {"keys": [jwk_of(rsa_key)]}
        check = verifier(self.source(jwks_server, clock, "/redirect"))

        with pytest.raises(ConfigError, match="redirect"):
            check.verify(request(sign(rsa_key)))

        assert jwks_server.hits["/redirect"] == 1
        assert jwks_server.hits["/jwks.json"] == 0

    @pytest.mark.parametrize(
        "url",
        ["file:///etc/passwd", "ftp://issuer.example/jwks", "jwks.json", "http://"],
    )
    def test_only_http_urls_are_accepted(self, url: str) -> None:
        """Non-HTTP(S) JWKS URLs fail at construction."""
        with pytest.raises(ConfigError, match="not an http"):
            JwksUrl(url)


def attempt(check: JWTVerifier, value: str) -> Identity | AuthError:
    """Verify one Authorization value; return the identity or the refusal."""
    try:
        return check.verify(
            AuthRequest("GET", "/", "", Headers({"Authorization": value}))
        )
    except AuthError as exc:
        return exc


PROPERTY_SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3)
    ),
    max_leaves=8,
)
HEADER_FIELDS = st.sampled_from(["alg", "kid", "typ", "crit", "b64", "jku", "x5c"])


class TestParsingProperties:
    @PROPERTY_SETTINGS
    @given(value=st.text())
    def test_any_authorization_is_an_identity_or_an_auth_error(
        self, rsa_key: rsa.RSAPrivateKey, secret: Secret, value: str
    ) -> None:
        """Whatever Authorization holds, the answer is an Identity or AuthError."""
        check = verifier(PemKeys(secret(public_pem(rsa_key))))

        assert isinstance(attempt(check, value), Identity | AuthError)

    @PROPERTY_SETTINGS
    @given(
        header=st.dictionaries(HEADER_FIELDS, JSON_VALUES)
        | st.fixed_dictionaries({"alg": st.sampled_from(["RS256", "ES256", "EdDSA"])}),
        payload=JSON_VALUES,
        signature=st.binary(max_size=300),
    )
    def test_any_jws_shaped_token_is_an_identity_or_an_auth_error(
        self,
        rsa_key: rsa.RSAPrivateKey,
        secret: Secret,
        header: dict[str, Any],
        payload: Any,
        signature: bytes,
    ) -> None:
        """Tokens with arbitrary JSON header and payload never raise anything else."""
        check = verifier(PemKeys(secret(public_pem(rsa_key))))
        parts = [json.dumps(header).encode(), json.dumps(payload).encode(), signature]
        token = ".".join(b64url(part) for part in parts)

        outcome = attempt(check, f"Bearer {token}")

        assert isinstance(outcome, AuthError)

    @PROPERTY_SETTINGS
    @given(
        payload=st.dictionaries(
            st.sampled_from(["iss", "aud", "exp", "nbf", "iat", "sub"]),
            JSON_VALUES
            | st.sampled_from([ISSUER, AUDIENCE, [AUDIENCE]])
            | st.integers(NOW - 100, NOW + 100),
        )
    )
    def test_any_signed_claims_are_an_identity_or_an_auth_error(
        self, rsa_key: rsa.RSAPrivateKey, secret: Secret, payload: dict[str, Any]
    ) -> None:
        """Correctly signed tokens with arbitrary claims reach the claim checks."""
        check = verifier(PemKeys(secret(public_pem(rsa_key))))
        # PyJWS signs any bytes; jwt.encode would refuse some of these claims.
        raw = json.dumps(payload).encode()
        token = jwt.PyJWS().encode(raw, rsa_key, algorithm="RS256")

        outcome = attempt(check, f"Bearer {token}")

        assert isinstance(outcome, Identity | AuthError)
        if isinstance(outcome, Identity):
            assert (payload["iss"], payload["exp"] > NOW - 30) == (ISSUER, True)


HANDLER = """
def handle(event, context):
    return {"statusCode": 200, "body": f"hello {event.auth.subject}"}
"""


def test_a_real_function_checks_tokens(
    function_process: Callable[..., Any], ec_key: ec.EllipticCurvePrivateKey
) -> None:
    """Through waitress: a valid ES256 token is admitted, an expired one is not."""
    fn = function_process(HANDLER)
    fn.write_secret("jwt-public-key", public_pem(ec_key))
    fn.start(auth_scheme="jwt", auth_jwt_issuer=ISSUER, auth_jwt_audience=AUDIENCE)
    now = int(time.time())

    def call(exp: int) -> httpx.Response:
        token = sign(ec_key, "ES256", iat=now - 60, exp=exp)
        return httpx.get(fn.url, headers={"Authorization": f"Bearer {token}"})

    admitted, expired = call(now + 300), call(now - 3600)

    assert (admitted.status_code, admitted.text) == (200, "hello user-1")
    assert expired.status_code == 401
    assert expired.headers["WWW-Authenticate"] == INVALID_TOKEN[1]
