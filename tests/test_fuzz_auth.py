"""Forgery hunting: generated requests against real function processes.

One template runtime per auth scheme serves a handler that names the
caller. Each generated request starts as a genuine one (signed with a
configured key, or carrying valid credentials) and is then either left
alone, changed in a way that keeps it genuine (header names in another
case, an unsigned header changed, junk beside a valid list entry), or
changed into a forgery: a flipped bit in the body, signature or timestamp,
another key, a truncated or duplicated header, an expired or future
timestamp, ``alg=none`` or HS256-with-the-public-key JWTs, a wrong
audience. Every genuine request must be admitted (200) and every forgery
refused (400, 401 or 403). The one 5xx by design is a function whose
secret is missing (500, fail closed), served by its own process.

Totals per scheme go to stdout (``pytest -s``) and to
``.localfaas-results/fuzz-auth.json``. The short variant runs in the
default suite; the long one (``pytest -m long``) sends over 10,000.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import math
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jwt
import pytest
from conftest import ROOT, free_port, lay_out_function, wait_healthy
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faas_runtime._errors import Unauthorized
from faas_runtime._passwords import PasswordHash
from faas_runtime._secrets import SecretFile
from faas_runtime._types import AuthRequest
from faas_runtime._types import Headers as RequestHeaders
from faas_runtime._webhooks import StandardWebhooksVerifier, StripeVerifier, sign

RESULTS = ROOT / ".localfaas-results"

HANDLER = """
def handle(event, context):
    return {"statusCode": 200, "body": f"{event.auth.scheme} {event.auth.subject}"}
"""

# Two key lines per webhook secret: the current key and the one being
# rotated out. Both must verify; OTHER_KEY, an attacker's, must not.
HMAC_KEYS = ("k-current-3f9a", "k-previous-81c0")
OTHER_KEY = "k-attacker-0000"
V1_KEY = "whsec_" + base64.b64encode(bytes(range(32))).decode()
V1_OTHER = "whsec_" + base64.b64encode(bytes(range(1, 33))).decode()
V1A_SEED = Ed25519PrivateKey.from_private_bytes(bytes(range(32, 64)))
V1A_PRIVATE = "whsk_" + base64.b64encode(bytes(range(32, 64))).decode()
V1A_PUBLIC = (
    "whpk_" + base64.b64encode(V1A_SEED.public_key().public_bytes_raw()).decode()
)

USERS = {"alice": "wonderland", "bob": "hunter2-\u00e9t\u00e9"}
TOKENS = {"ci": "tok_9f2c4e0b7d1a55aa", "deploy": "tok-Deploy.2~x+/="}
ISSUER = "https://issuer.example"
AUDIENCE = "fn:fuzz"
JWT_KEY = ec.generate_private_key(ec.SECP256R1())
JWT_OTHER = ec.generate_private_key(ec.SECP256R1())

TIMED = ("stripe", "slack", "standard-webhooks")
LISTS = ("stripe", "standard-webhooks")
# Per scheme: the signature header first, then the other signed headers.
SIGNED = {
    "github": ("X-Hub-Signature-256",),
    "hmac": ("Hmac",),
    "stripe": ("Stripe-Signature",),
    "slack": ("X-Slack-Signature", "X-Slack-Request-Timestamp"),
    "standard-webhooks": ("webhook-signature", "webhook-id", "webhook-timestamp"),
    "shopify": ("X-Shopify-Hmac-SHA256",),
}
# The tolerance every timed scheme uses by default, and JWT's leeway.
TOLERANCE = 300
LEEWAY = 30
# A signature as it appears in a header: 64 hex digits, or 32 or 64 bytes
# of standard base64.
DIGEST = re.compile(r"[0-9a-f]{64}|[A-Za-z0-9+/]{86}==|[A-Za-z0-9+/]{43}=")

visible = st.characters(min_codepoint=0x21, max_codepoint=0x7E)
printable = st.text(visible, min_size=1, max_size=40)


# -- one request, and what must happen to it ----------------------------------


@dataclass(frozen=True)
class Attempt:
    """A request and whether it is genuine (admit) or forged (refuse)."""

    headers: tuple[tuple[str, str], ...]
    body: bytes = b""
    query: str = ""
    change: str = "unchanged"
    genuine: bool = True

    def forged(self, change: str, **parts: Any) -> Attempt:
        """This request changed into a forgery by ``change``."""
        return replace(self, change=change, genuine=False, **parts)

    def still_genuine(self, change: str, **parts: Any) -> Attempt:
        """This request changed in a way that must still be admitted."""
        return replace(self, change=change, **parts)

    def header(self, name: str) -> str:
        """The value of ``name`` (first match, any case)."""
        return next(v for n, v in self.headers if n.lower() == name.lower())

    def with_header(self, name: str, value: str) -> tuple[tuple[str, str], ...]:
        """The headers with ``name``'s value replaced by ``value``."""
        return tuple(
            (n, value if n.lower() == name.lower() else v) for n, v in self.headers
        )

    def without(self, name: str) -> tuple[tuple[str, str], ...]:
        """The headers without ``name``."""
        return tuple((n, v) for n, v in self.headers if n.lower() != name.lower())


Change = Callable[[st.DrawFn, str, Attempt], Attempt]


def flip_bit(raw: bytes, draw: st.DrawFn) -> bytes:
    """``raw`` with one bit flipped, or one byte added when empty."""
    if not raw:
        return draw(st.binary(min_size=1, max_size=4))
    position = draw(st.integers(0, len(raw) * 8 - 1))
    flipped = bytearray(raw)
    flipped[position // 8] ^= 1 << (position % 8)
    return bytes(flipped)


def flip_digest_bit(value: str, draw: st.DrawFn) -> str:
    """A header value whose (first) signature has one bit flipped."""
    match = DIGEST.search(value)
    assert match is not None, f"no signature in {value!r}"
    text = match.group()
    if len(text) == 64 and all(c in "0123456789abcdef" for c in text):
        changed = flip_bit(bytes.fromhex(text), draw).hex()
    else:
        changed = base64.b64encode(flip_bit(base64.b64decode(text), draw)).decode()
    return value[: match.start()] + changed + value[match.end() :]


# -- webhooks -----------------------------------------------------------------


def signing_keys(scheme: str) -> tuple[str, ...]:
    """The keys a genuine sender of ``scheme`` may sign with."""
    if scheme == "standard-webhooks":
        return (V1_KEY, V1A_PRIVATE)
    return HMAC_KEYS


def signed(scheme: str, key: str, body: bytes, stamp: int | None = None) -> Attempt:
    """A request as a real sender of ``scheme`` signs it (now, by default)."""
    stamp = int(time.time()) if stamp is None else stamp
    headers = sign(scheme, key, body, timestamp=stamp)
    return Attempt(tuple(headers.items()), body)


def webhook_changes(scheme: str) -> list[str]:
    """The changes that apply to ``scheme``'s requests."""
    changes = [
        *("unchanged", "header names in another case", "unrelated header added"),
        *("body bit flipped", "body truncated or extended"),
        *("signature bit flipped", "signature truncated", "signature re-cased"),
        *("signed with another key", "signed header dropped"),
        *("signature header sent twice", "made-up header values"),
    ]
    if scheme in TIMED:
        changes += ["timestamp changed", "expired", "from the future"]
    if scheme in LISTS:
        changes += ["junk beside the valid entry", "over 16 entries"]
    if scheme in ("github", "hmac"):
        changes.append("SHA-1 instead of SHA-256")
    if scheme in ("github", "shopify"):
        changes.append("unsigned delivery id changed")
    if scheme == "standard-webhooks":
        changes.append("message id changed")
    return changes


@st.composite
def webhook_attempts(draw: st.DrawFn, scheme: str, change: str) -> Attempt:
    """A signed request for ``scheme``, with ``change`` made to it."""
    key = draw(st.sampled_from(signing_keys(scheme)))
    genuine = signed(scheme, key, draw(st.binary(max_size=600)))
    return changed_webhook(draw, scheme, key, genuine, change)


def changed_webhook(
    draw: st.DrawFn, scheme: str, key: str, a: Attempt, change: str
) -> Attempt:
    """``a`` with ``change`` made to it."""
    signature = SIGNED[scheme][0]
    value = a.header(signature)
    match change:
        case "unchanged":
            return a
        case "header names in another case":
            cases = [str.lower, str.upper, str.title]
            renamed = tuple((draw(st.sampled_from(cases))(n), v) for n, v in a.headers)
            return a.still_genuine(change, headers=renamed)
        case "unrelated header added":
            added = (*a.headers, ("X-Unrelated", draw(printable)))
            return a.still_genuine(change, headers=added)
        case "unsigned delivery id changed":
            name = "X-GitHub-Delivery" if scheme == "github" else "X-Shopify-Webhook-Id"
            return a.still_genuine(change, headers=a.with_header(name, draw(printable)))
        case "junk beside the valid entry":
            return a.still_genuine(change, headers=junk_entries(draw, scheme, a))
        case "body bit flipped":
            return a.forged(change, body=flip_bit(a.body, draw))
        case "body truncated or extended":
            return a.forged(change, body=a.body[:-1] if a.body else b"x")
        case "signature bit flipped":
            flipped = flip_digest_bit(value, draw)
            return a.forged(change, headers=a.with_header(signature, flipped))
        case "signature truncated":
            cut = value[: draw(st.integers(0, len(value) - 1))]
            return a.forged(change, headers=a.with_header(signature, cut))
        case "signature re-cased":
            return a.forged(change, headers=a.with_header(signature, value.swapcase()))
        case "signed with another key":
            other = V1_OTHER if scheme == "standard-webhooks" else OTHER_KEY
            return signed(scheme, other, a.body).forged(change)
        case "signed header dropped":
            dropped = draw(st.sampled_from(SIGNED[scheme]))
            return a.forged(change, headers=a.without(dropped))
        case "signature header sent twice":
            return a.forged(change, headers=(*a.headers, (signature, value)))
        case "made-up header values":
            made_up = tuple((n, draw(printable)) for n, v in a.headers)
            return a.forged(change, headers=made_up)
        case "timestamp changed":
            return a.forged(change, headers=moved_timestamp(draw, scheme, a))
        case "expired" | "from the future":
            off = TOLERANCE + draw(st.integers(5, 10**6))
            stamp = int(time.time()) + (off if change == "from the future" else -off)
            return signed(scheme, key, a.body, stamp).forged(change)
        case "over 16 entries":
            return a.forged(change, headers=too_many_entries(scheme, a))
        case "SHA-1 instead of SHA-256":
            return a.forged(change, headers=sha1_only(scheme, key, a))
        case "message id changed":
            other = draw(st.from_regex(r"msg_[A-Za-z0-9]{1,30}", fullmatch=True))
            other += "x" if other == a.header("webhook-id") else ""
            return a.forged(change, headers=a.with_header("webhook-id", other))
    raise AssertionError(f"no such change: {change}")


Headers = tuple[tuple[str, str], ...]


def moved_timestamp(draw: st.DrawFn, scheme: str, a: Attempt) -> Headers:
    """The signed timestamp moved a little, the signature kept."""
    delta = draw(st.integers(-250, 250).filter(bool))
    if scheme == "stripe":
        value = a.header("Stripe-Signature")
        stamp = int(value.split(",")[0].removeprefix("t="))
        moved = value.replace(f"t={stamp}", f"t={stamp + delta}", 1)
        return a.with_header("Stripe-Signature", moved)

    name = SIGNED[scheme][-1]
    return a.with_header(name, str(int(a.header(name)) + delta))


def junk_entries(draw: st.DrawFn, scheme: str, a: Attempt) -> Headers:
    """Made-up entries around the valid one, 16 at most: any match admits."""
    junk = draw(st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=6))
    if scheme == "stripe":
        stamp, valid = a.header("Stripe-Signature").split(",", 1)
        entries = [f"v1={raw.hex()}" for raw in junk] + [valid, "v0=ignored"]
        listed = ",".join([stamp, *draw(st.permutations(entries))])
        return a.with_header("Stripe-Signature", listed)

    # Unknown versions are skipped, as the Standard Webhooks spec asks.
    entries = [f"v1,{base64.b64encode(raw).decode()}" for raw in junk]
    entries += [a.header("webhook-signature"), "v2,bm90LXlldA=="]
    return a.with_header("webhook-signature", " ".join(draw(st.permutations(entries))))


def too_many_entries(scheme: str, a: Attempt) -> Headers:
    """Seventeen entries, the valid one among them: over the cap of 16."""
    if scheme == "stripe":
        stamp, valid = a.header("Stripe-Signature").split(",", 1)
        return a.with_header("Stripe-Signature", ",".join([stamp, *[valid] * 16]))

    listed = " ".join([a.header("webhook-signature")] * 17)
    return a.with_header("webhook-signature", listed)


def sha1_only(scheme: str, key: str, a: Attempt) -> Headers:
    """A correct SHA-1 signature where only SHA-256 is allowed."""
    if scheme == "github":
        # GitHub's legacy X-Hub-Signature (SHA-1) stays; its SHA-256 goes.
        return a.without("X-Hub-Signature-256")
    digest = hmac.new(key.encode(), a.body, "sha1").hexdigest()
    return a.with_header("Hmac", f"sha1={digest}")


# -- Basic, Bearer, JWT ---------------------------------------------------------


def authorization(value: str) -> Attempt:
    """A request carrying ``value`` in Authorization."""
    return Attempt((("Authorization", value),))


@st.composite
def with_any_body(draw: st.DrawFn, attempts: st.SearchStrategy[Attempt]) -> Attempt:
    """An attempt with a body of any bytes, which these schemes do not sign."""
    return replace(draw(attempts), body=draw(st.binary(max_size=256)))


def basic(user: str, password: str, scheme: str = "Basic") -> str:
    """A Basic credential, as RFC 7617 encodes it."""
    raw = f"{user}:{password}".encode()
    return f"{scheme} {base64.b64encode(raw).decode()}"


def mutate(draw: st.DrawFn, text: str) -> str:
    """``text`` with one character changed, dropped or added, or re-cased."""
    index = draw(st.integers(0, len(text) - 1))
    match draw(st.sampled_from(["change", "drop", "add", "re-case"])):
        case "change":
            other = draw(visible.filter(lambda char: char != text[index]))
            return text[:index] + other + text[index + 1 :]
        case "drop":
            return text[:index] + text[index + 1 :]
        case "add":
            return text[:index] + draw(visible) + text[index:]
    swapped = text.swapcase()
    return swapped if swapped != text else text + "x"


BASIC_CHANGES = (
    *("unchanged", "scheme name in another case", "password changed"),
    *("user changed", "another user's password", "user and password swapped"),
    *("no colon", "credentials bit flipped", "truncated", "sent twice"),
    *("another scheme", "made up"),
)


@st.composite
def basic_attempts(draw: st.DrawFn, change: str) -> Attempt:
    """Basic credentials of a listed user, with ``change`` made to them."""
    user = draw(st.sampled_from(sorted(USERS)))
    password = USERS[user]
    genuine = authorization(basic(user, password))
    value = genuine.header("Authorization")

    match change:
        case "unchanged":
            return genuine
        case "scheme name in another case":
            scheme = draw(st.sampled_from(["basic", "BASIC", "bAsIc"]))
            return authorization(basic(user, password, scheme)).still_genuine(change)
        case "password changed":
            forged = basic(user, mutate(draw, password))
        case "user changed":
            forged = basic(mutate(draw, user), password)
        case "another user's password":
            other = next(name for name in USERS if name != user)
            forged = basic(user, USERS[other])
        case "user and password swapped":
            forged = basic(password, user)
        case "no colon":
            forged = "Basic " + base64.b64encode((user + password).encode()).decode()
        case "credentials bit flipped":
            flipped = flip_bit(f"{user}:{password}".encode(), draw)
            forged = "Basic " + base64.b64encode(flipped).decode()
        case "truncated":
            forged = value[: draw(st.integers(0, len(value) - 1))]
        case "sent twice":
            return genuine.forged(change, headers=genuine.headers * 2)
        case "another scheme":
            forged = value.replace("Basic", "Bearer", 1)
        case _:
            forged = draw(printable)
    return authorization(forged).forged(change)


BEARER_CHANGES = (
    *("unchanged", "scheme name in another case", "token changed"),
    *("stored digest presented", "sent in two places", "Authorization sent twice"),
    *("another scheme", "empty token", "made up"),
)


@st.composite
def bearer_attempts(draw: st.DrawFn, change: str) -> Attempt:
    """A listed token in one of its three places, with ``change`` made."""
    token = TOKENS[draw(st.sampled_from(sorted(TOKENS)))]
    place = draw(st.sampled_from(["Authorization", "X-Api-Key", "query"]))

    def carrying(value: str, scheme: str = "Bearer") -> Attempt:
        if place == "query":
            return Attempt((), query=f"access_token={quote(value, safe='')}")
        if place == "X-Api-Key":
            return Attempt((("X-Api-Key", value),))
        return authorization(f"{scheme} {value}")

    match change:
        case "unchanged":
            return carrying(token)
        case "scheme name in another case":
            scheme = draw(st.sampled_from(["bearer", "BEARER"]))
            return carrying(token, scheme).still_genuine(change)
        case "token changed":
            forged = carrying(mutate(draw, token))
        case "stored digest presented":
            forged = carrying(hashlib.sha256(token.encode()).hexdigest())
        case "sent in two places":
            # RFC 6750 §2: one method only; two are a malformed request.
            query = f"access_token={quote(token, safe='')}"
            forged = Attempt((("X-Api-Key", token),), query=query)
        case "Authorization sent twice":
            forged = Attempt((("Authorization", f"Bearer {token}"),) * 2)
        case "another scheme":
            forged = authorization(f"Basic {token}")
        case "empty token":
            forged = carrying("")
        case _:
            forged = carrying(draw(printable))
    return forged.forged(change)


def b64url(raw: bytes) -> str:
    """Unpadded base64url, as JWS uses."""
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def jws_input(header: dict[str, Any], claims: dict[str, Any]) -> str:
    """The signed part of a JWS: header and claims, encoded."""
    parts = [json.dumps(header).encode(), json.dumps(claims).encode()]
    return ".".join(b64url(part) for part in parts)


def es256(
    claims: dict[str, Any], key: ec.EllipticCurvePrivateKey = JWT_KEY, **header: Any
) -> str:
    """A token signed as the issuer (or whoever holds ``key``) signs it."""
    return jwt.encode(claims, key, algorithm="ES256", headers=header or None)


PUBLIC_PEM = JWT_KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)
JWT_CHANGES = (
    *("unchanged", "scheme name in another case", "audience in a list"),
    *("unknown kid", "alg none", "HS256 with the public key", "expired"),
    *("not valid yet", "issued in the future", "wrong audience", "wrong issuer"),
    *("no exp", "signed with another key", "signature bit flipped"),
    *("claims changed, signature kept", "header says RS256", "truncated"),
    *("sent twice", "made up"),
)


@st.composite
def jwt_attempts(draw: st.DrawFn, change: str) -> Attempt:
    """A token from the issuer, with ``change`` made to it."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": draw(st.from_regex(r"user-[a-z0-9]{1,8}", fullmatch=True)),
        "iat": now - draw(st.integers(0, 600)),
        "exp": now + draw(st.integers(60, 3600)),
    }
    token = es256(claims)
    head, payload, signature = token.split(".")
    late = draw(st.integers(LEEWAY + 5, 10**6))

    match change:
        case "unchanged":
            return authorization(f"Bearer {token}")
        case "scheme name in another case":
            return authorization(f"bearer {token}").still_genuine(change)
        case "audience in a list":
            listed = es256({**claims, "aud": ["other", AUDIENCE]})
            return authorization(f"Bearer {listed}").still_genuine(change)
        case "unknown kid":
            # A kid is a hint (RFC 7515 §4.1.4): unknown, every key is tried.
            hinted = es256(claims, kid=draw(printable))
            return authorization(f"Bearer {hinted}").still_genuine(change)
        case "alg none":
            alg = draw(st.sampled_from(["none", "None", "NONE"]))
            forged = jws_input({"alg": alg}, claims) + "."
        case "HS256 with the public key":
            # RFC 8725 §2.1: the public key used as an HMAC secret.
            signed_part = jws_input({"alg": "HS256", "typ": "JWT"}, claims)
            mac = hmac.new(PUBLIC_PEM, signed_part.encode(), "sha256").digest()
            forged = f"{signed_part}.{b64url(mac)}"
        case "expired":
            forged = es256({**claims, "exp": now - late})
        case "not valid yet":
            forged = es256({**claims, "nbf": now + late})
        case "issued in the future":
            forged = es256({**claims, "iat": now + late})
        case "wrong audience":
            forged = es256({**claims, "aud": mutate(draw, AUDIENCE)})
        case "wrong issuer":
            forged = es256({**claims, "iss": mutate(draw, ISSUER)})
        case "no exp":
            forged = es256({k: v for k, v in claims.items() if k != "exp"})
        case "signed with another key":
            forged = es256(claims, JWT_OTHER)
        case "signature bit flipped":
            raw = base64.urlsafe_b64decode(signature + "==")
            forged = f"{head}.{payload}.{b64url(flip_bit(raw, draw))}"
        case "claims changed, signature kept":
            changed = b64url(json.dumps({**claims, "sub": "admin"}).encode())
            forged = f"{head}.{changed}.{signature}"
        case "header says RS256":
            header = b64url(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
            forged = f"{header}.{payload}.{signature}"
        case "truncated":
            forged = token[: draw(st.integers(1, len(token) - 1))]
        case "sent twice":
            return authorization(f"Bearer {token}").forged(
                change, headers=(("Authorization", f"Bearer {token}"),) * 2
            )
        case _:
            forged = draw(printable)
    return authorization(f"Bearer {forged}").forged(change)


# -- the processes --------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    """How one function process is configured, and what it is sent."""

    scheme: str
    secret: str
    content: bytes | None
    changes: tuple[str, ...]
    attempts: Callable[[str], st.SearchStrategy[Attempt]]
    env: dict[str, str] = field(default_factory=dict)


def cheap_hash(password: str) -> str:
    """A PBKDF2 entry with few rounds: the hashed path, without its cost."""
    salt = os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 1000)
    return PasswordHash("pbkdf2-sha256", (1000,), salt, digest).encode()


def webhook_setup(scheme: str, secret: str) -> Setup:
    """A webhook scheme, its key lines (rotation included) and changes."""
    lines = (V1_KEY, V1A_PUBLIC) if scheme == "standard-webhooks" else HMAC_KEYS
    return Setup(
        scheme,
        secret,
        "".join(f"{line}\n" for line in lines).encode(),
        tuple(webhook_changes(scheme)),
        lambda change: webhook_attempts(scheme, change),
    )


SETUPS = {
    "github": webhook_setup("github", "github-webhook-secret"),
    "hmac": webhook_setup("hmac", "payload-secret"),
    "stripe": webhook_setup("stripe", "stripe-webhook-secret"),
    "slack": webhook_setup("slack", "slack-signing-secret"),
    "standard-webhooks": webhook_setup("standard-webhooks", "webhook-secret"),
    "shopify": webhook_setup("shopify", "shopify-webhook-secret"),
    "basic": Setup(
        "basic",
        "basic-auth-users",
        f"alice:{USERS['alice']}\nbob:{cheap_hash(USERS['bob'])}\n".encode(),
        BASIC_CHANGES,
        lambda change: with_any_body(basic_attempts(change)),
    ),
    "bearer": Setup(
        "bearer",
        "api-tokens",
        (
            f"ci {TOKENS['ci']}\n"
            f"sha256:{hashlib.sha256(TOKENS['deploy'].encode()).hexdigest()}\n"
        ).encode(),
        BEARER_CHANGES,
        lambda change: with_any_body(bearer_attempts(change)),
        {"auth_header": "X-Api-Key", "auth_query_token": "true"},
    ),
    "jwt": Setup(
        "jwt",
        "jwt-public-key",
        PUBLIC_PEM,
        JWT_CHANGES,
        lambda change: with_any_body(jwt_attempts(change)),
        {"auth_jwt_issuer": ISSUER, "auth_jwt_audience": AUDIENCE},
    ),
    # Fail closed: the secret hmac reads does not exist, so every request
    # is a 500, the genuinely signed ones included.
    "missing-secret": replace(webhook_setup("hmac", "payload-secret"), content=None),
}
CASES = [(name, change) for name, setup in SETUPS.items() for change in setup.changes]


@dataclass
class Function:
    """A template runtime serving HANDLER with one setup."""

    setup: Setup
    folder: Path
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Function:
        """Start, with output to a file: a full pipe would stall it."""
        secrets = self.folder.parent / "secrets"
        secrets.mkdir()
        if self.setup.content is not None:
            (secrets / self.setup.secret).write_bytes(self.setup.content)
        env = {
            **os.environ,
            "port": str(self.port),
            "listen_address": "127.0.0.1",
            "secret_mount_path": str(secrets),
            "lock_file": str(self.folder / ".lock"),
            "healthcheck_interval": "0",
            "auth_scheme": self.setup.scheme,
            **self.setup.env,
        }
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "index.py"],
                cwd=self.folder,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_healthy(f"{self.url}/_/health", self.process)
        return self

    def stop(self) -> None:
        """SIGTERM, and wait for the process to exit."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)

    def output(self) -> str:
        """Everything the process printed so far."""
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="module")
def functions(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Function]]:
    """One running function per setup, started side by side."""
    made = {}
    for name, setup in SETUPS.items():
        base = tmp_path_factory.mktemp(name)
        folder = lay_out_function(base, HANDLER)
        made[name] = Function(setup, folder, free_port(), base / "function.log")
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(Function.start, made.values()))
    yield made
    for function in made.values():
        function.stop()


# -- counting and judging ---------------------------------------------------------


@dataclass
class Tally:
    """Per function: what was sent, and how each request was answered."""

    outcomes: dict[str, Counter[str]] = field(default_factory=dict)
    changes: dict[str, Counter[str]] = field(default_factory=dict)

    def add(self, name: str, attempt: Attempt, outcome: str) -> None:
        """Count one judged request."""
        self.outcomes.setdefault(name, Counter())[outcome] += 1
        self.changes.setdefault(name, Counter())[attempt.change] += 1

    def total(self, word: str = "") -> int:
        """Requests whose outcome contains ``word`` (all, by default)."""
        return sum(
            n
            for c in self.outcomes.values()
            for outcome, n in c.items()
            if word in outcome
        )

    def lines(self) -> list[str]:
        """One line per function, then the totals."""
        lines = []
        for name, counts in sorted(self.outcomes.items()):
            parts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
            lines.append(f"{name}: {sum(counts.values())} requests: {parts}")
        lines.append(
            f"fuzz auth: {self.total()} requests, {self.total('genuine')} genuine "
            f"admitted, {self.total('forged')} forged refused, none admitted"
        )
        return lines

    def write(self, path: Path) -> None:
        """The counts as JSON, for the hardening report."""
        path.parent.mkdir(exist_ok=True)
        report = {
            "requests": self.total(),
            "outcomes": {n: dict(sorted(c.items())) for n, c in self.outcomes.items()},
            "changes": {n: dict(sorted(c.items())) for n, c in self.changes.items()},
        }
        path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")


@pytest.fixture(scope="module")
def tally() -> Iterator[Tally]:
    """Counts for the whole module, reported once at its end."""
    counts = Tally()
    yield counts
    if counts.outcomes:
        print("\n" + "\n".join(counts.lines()))
        counts.write(RESULTS / "fuzz-auth.json")


@dataclass(frozen=True)
class Answer:
    """A function's response: status and body."""

    status: int
    body: bytes


class Connection:
    """One kept-alive connection to a function, made again when dropped.

    http.client rather than httpx: it sends header values as given, so
    ``Bearer `` with its trailing space and repeated headers reach the
    function as a client could send them.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self._connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def post(self, attempt: Attempt) -> Answer:
        """POST the attempt; one retry on a connection the server closed."""
        try:
            return self._post(attempt)
        except (http.client.RemoteDisconnected, ConnectionError):
            self._connection.close()
            return self._post(attempt)

    def _post(self, attempt: Attempt) -> Answer:
        path = f"/?{attempt.query}" if attempt.query else "/"
        self._connection.putrequest("POST", path)
        for name, value in attempt.headers:
            self._connection.putheader(name, value.encode("latin-1"))
        self._connection.putheader("Content-Length", str(len(attempt.body)))
        self._connection.endheaders(attempt.body)
        response = self._connection.getresponse()
        return Answer(response.status, response.read())

    def close(self) -> None:
        """Close the connection."""
        self._connection.close()


def judge(name: str, function: Function, attempt: Attempt, answer: Answer) -> str:
    """The outcome, when it is the right one; fail the test when it is not."""
    status = answer.status
    described = f"{name} {attempt!r} answered {status} {answer.body[:200]!r}"
    if name == "missing-secret":
        # Fail closed: no secret, no admission, whatever was presented.
        assert status == 500, described
        return "500 by design (missing secret)"

    if attempt.genuine:
        assert status == 200, f"genuine request refused: {described}"
        assert answer.body.startswith(f"{function.setup.scheme} ".encode()), described
        return "genuine admitted"

    assert status in (400, 401, 403), f"forgery not refused: {described}"
    return f"forged refused {status}"


def hunt(
    functions: dict[str, Function],
    tally: Tally,
    name: str,
    change: str,
    examples: int,
) -> None:
    """Send ``examples`` requests with ``change`` to one function; judge each."""
    function = functions[name]
    connection = Connection(function.port)

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(attempt=function.setup.attempts(change))
    def run(attempt: Attempt) -> None:
        answer = connection.post(attempt)
        tally.add(name, attempt, judge(name, function, attempt, answer))

    try:
        run()
    finally:
        connection.close()
    assert "Traceback" not in function.output()


def share(name: str, per_scheme: int) -> int:
    """Examples per change, so each scheme gets about ``per_scheme``.

    The missing-secret function gets a quarter: every answer is the same.
    """
    if name == "missing-secret":
        per_scheme //= 4
    return math.ceil(per_scheme / len(SETUPS[name].changes))


@pytest.mark.parametrize(("name", "change"), CASES)
def test_no_forgery_is_admitted(
    functions: dict[str, Function], tally: Tally, name: str, change: str
) -> None:
    """Genuine requests are admitted, every changed-into-forgery one refused."""
    hunt(functions, tally, name, change, examples=share(name, 50))


@pytest.mark.long
@pytest.mark.parametrize(("name", "change"), CASES)
def test_no_forgery_is_admitted_at_length(
    functions: dict[str, Function], tally: Tally, name: str, change: str
) -> None:
    """The same over more than 10,000 requests in all."""
    hunt(functions, tally, name, change, examples=share(name, 1200))


# -- signature lists, in process ------------------------------------------------

NOW = 1_700_000_000
entry_bytes = st.binary(min_size=32, max_size=32)


@pytest.fixture(scope="module")
def secrets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Secret files for the in-process verifiers."""
    folder = tmp_path_factory.mktemp("list-secrets")
    folder.joinpath("stripe").write_text(f"{HMAC_KEYS[0]}\n")
    folder.joinpath("standard").write_text(f"{V1_KEY}\n{V1A_PUBLIC}\n")
    return folder


def verifies(verifier: Any, headers: dict[str, str], body: bytes) -> bool:
    """Whether ``verifier`` admits the request."""
    try:
        verifier.verify(AuthRequest("POST", "/", "", RequestHeaders(headers), body))
    except Unauthorized:
        return False
    return True


class TestSignatureLists:
    """Any list holding a valid entry is admitted, up to 16 entries."""

    @settings(max_examples=200, deadline=None)
    @given(
        junk=st.lists(entry_bytes, max_size=18),
        others=st.lists(st.sampled_from(["v0=abc", "scheme=x1", "v2=00"]), max_size=3),
        valid=st.booleans(),
        order=st.randoms(),
        body=st.binary(max_size=64),
    )
    def test_stripe(
        self,
        secrets: Path,
        junk: list[bytes],
        others: list[str],
        valid: bool,
        order: Any,
        body: bytes,
    ) -> None:
        """Stripe: one t= and any v1 that matches; other fields are skipped."""
        signed_v1 = sign("stripe", HMAC_KEYS[0], body, timestamp=NOW)
        stamp, v1 = signed_v1["Stripe-Signature"].split(",", 1)
        entries = [f"v1={raw.hex()}" for raw in junk] + others + [v1] * valid
        order.shuffle(entries)
        value = ",".join([stamp, *entries])
        verifier = StripeVerifier(SecretFile(secrets / "stripe"), clock=lambda: NOW)

        admitted = verifies(verifier, {"Stripe-Signature": value}, body)

        assert admitted == (valid and len(entries) + 1 <= 16)

    @settings(max_examples=200, deadline=None)
    @given(
        junk=st.lists(
            st.tuples(st.sampled_from(["v1", "v1a", "v2"]), st.binary(max_size=64)),
            max_size=18,
        ),
        key=st.sampled_from([V1_KEY, V1A_PRIVATE, None]),
        order=st.randoms(),
        body=st.binary(max_size=64),
    )
    def test_standard_webhooks(
        self,
        secrets: Path,
        junk: list[tuple[str, bytes]],
        key: str | None,
        order: Any,
        body: bytes,
    ) -> None:
        """Standard Webhooks: any v1 or v1a that matches; unknown versions skipped.

        A junk entry of the wrong size is malformed, which refuses the list.
        """
        signed_entry = sign(
            "standard-webhooks", key or V1_KEY, body, timestamp=NOW, msg_id="msg_1"
        )
        headers = dict(signed_entry)
        entries = [f"{v},{base64.b64encode(raw).decode()}" for v, raw in junk]
        entries += [headers["webhook-signature"]] if key else []
        order.shuffle(entries)
        headers["webhook-signature"] = " ".join(entries)
        verifier = StandardWebhooksVerifier(
            SecretFile(secrets / "standard"), clock=lambda: NOW
        )

        admitted = verifies(verifier, headers, body)

        sizes = {"v1": 32, "v1a": 64}
        well_formed = all(len(raw) == sizes.get(v, len(raw)) and raw for v, raw in junk)
        assert admitted == bool(key and well_formed and len(entries) <= 16)
