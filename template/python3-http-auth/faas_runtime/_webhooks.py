"""Webhook signatures: one verifier per sender's scheme, and their signers.

Every scheme signs the raw body bytes (webhooks-and-auth.md §1). The rules
all verifiers share:

- Each key line of the secret file is tried against each presented
  signature, every pair compared with ``hmac.compare_digest`` on digests of
  fixed length and without an early exit, so the time taken does not tell
  which key matched; several lines let a key be rotated without downtime.
- Presented values parse strictly: exact hex length, canonical base64, Unix
  seconds as plain digits. A header sent twice arrives joined with ", "
  (see ``Headers``) and is refused rather than guessed at.
- Timestamps more than ``tolerance`` seconds off, in either direction, are
  refused. Stripe's own library refuses only old ones; a timestamp far in
  the future is either a badly wrong clock or a signature minted to outlive
  the window, and refusing it costs a well-synchronised sender nothing.
- A ``ReplayCache`` accepts each delivery once. It is keyed by the sender's
  delivery id. GitHub's and Shopify's ids are not covered by the signature,
  so there the cache stops resent copies, not an attacker who edits the id.
  Stripe sends no id; its key is the SHA-256 of the signed ``<t>.<body>``,
  which a copy cannot change without breaking the signature.

The reasons in ``Unauthorized`` go to the function's log: they name the
header and what was wrong, never a key or a presented signature.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from ._errors import ConfigError, Unauthorized
from ._secrets import SecretFile
from ._types import AuthRequest, Identity

logger = logging.getLogger("faas_runtime.webhooks")

Clock = Callable[[], float]
# A key line ready to sign with: an HMAC state that has absorbed the key
# (copied per request, which saves hashing the key again), or, for
# Standard Webhooks' v1a, a public key.
Key = hmac.HMAC | Ed25519PublicKey

_DIGEST_SIZES = {"sha256": 32, "sha1": 20}
# A value's prefix -> its digest, as in sha256=<hex> or Slack's v0=<hex>.
_SHA256 = {"sha256": "sha256"}
_SHA1 = {"sha1": "sha1"}
# Plain digits without a leading zero: the string signed is then the one
# every sender's library formats from the integer.
_UNIX_TIME = re.compile("0|[1-9][0-9]{0,14}")
# Delivery ids become log subjects and cache keys: printable ASCII, no space.
_MAX_ID = 256
_STRIPE_FIELD = re.compile("([a-z0-9]+)=([!-~]+)")
_STANDARD_ENTRY = re.compile("(v[0-9a-z]*),([A-Za-z0-9+/]+={0,2})")
_STANDARD_SIZES = {"v1": 32, "v1a": 64}
_SHOPIFY_HEADERS = ("X-Shopify-Hmac-SHA256", "Shopify-Hmac-Sha256")
# Each v1a check hashes the whole body again: a header listing hundreds of
# signatures would cost seconds of CPU on a body of a few MiB.
_MAX_SIGNATURES = 16


class ReplayCache:
    """Recently accepted delivery keys, so each delivery is accepted once.

    Thread-safe. Memory is bounded by ``max_entries``: while that many keys
    are within their time, new ones are refused (fail closed) and a warning
    is logged until room frees up.
    """

    def __init__(
        self,
        ttl: float,
        *,
        clock: Clock = time.monotonic,
        max_entries: int = 100_000,
    ) -> None:
        if ttl <= 0 or max_entries < 1:
            raise ConfigError(
                f"replay cache needs ttl > 0 and max_entries >= 1, got "
                f"ttl={ttl!r}, max_entries={max_entries!r}"
            )
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._expiry: dict[str, float] = {}
        self._queue: list[tuple[float, str]] = []  # a heap, soonest first
        self._full = False

    def check_and_remember(self, key: str, *, lifetime: float = 0.0) -> bool:
        """Remember ``key``; False if it is still remembered (or no room).

        ``lifetime`` keeps this key longer than ``ttl``: a delivery stamped
        ahead of our clock stays acceptable until its stamp is ``tolerance``
        old, which can be later than ``ttl`` from now.
        """
        with self._lock:
            now = self._clock()
            while self._queue and self._queue[0][0] <= now:
                del self._expiry[heapq.heappop(self._queue)[1]]
            if key in self._expiry:
                return False

            self._set_full(len(self._expiry) >= self.max_entries)
            if self._full:
                return False

            expiry = now + max(self.ttl, lifetime)
            self._expiry[key] = expiry
            heapq.heappush(self._queue, (expiry, key))
            return True

    def _set_full(self, full: bool) -> None:
        if full and not self._full:
            logger.warning(
                "replay cache full (%d entries within their ttl); refusing "
                "new deliveries until some expire",
                len(self._expiry),
            )
        elif self._full and not full:
            logger.info("replay cache has room again")
        self._full = full


@dataclass(frozen=True)
class GitHubVerifier:
    """GitHub's ``X-Hub-Signature-256: sha256=<hex>`` over the body."""

    secret: SecretFile
    _: KW_ONLY
    allow_sha1: bool = False
    replay: ReplayCache | None = None

    scheme = "github"
    needs_body = True

    def verify(self, request: AuthRequest) -> Identity:
        """Accept a body signed with any key line of the secret."""
        keys = _hmac_keys(self.secret)

        # GitHub sends both headers; the SHA-1 one counts only when the
        # SHA-256 one is absent, so a bad SHA-256 value cannot be bypassed.
        name, allowed = "X-Hub-Signature-256", _SHA256
        if self.allow_sha1 and name not in request.headers:
            name, allowed = "X-Hub-Signature", _SHA1
        algorithm, presented = _prefixed_hex(request, name, allowed)
        index = _check(self.secret, keys[algorithm], request.body, (presented,), name)

        delivery, event = _optional_ids(request, "X-GitHub-Delivery", "X-GitHub-Event")
        _remember(self.replay, "github", delivery, "X-GitHub-Delivery")
        claims = {
            "delivery": delivery,
            "event": event,
            "algorithm": algorithm,
            "key_index": index,
        }
        return Identity(self.scheme, delivery or "github", claims)


@dataclass(frozen=True)
class HmacVerifier:
    """faas-cli ``invoke --sign HEADER --key K``: ``sha256=<hex>`` body HMAC."""

    secret: SecretFile
    _: KW_ONLY
    header: str = "Hmac"
    allow_sha1: bool = False

    scheme = "hmac"
    needs_body = True

    def verify(self, request: AuthRequest) -> Identity:
        """Accept a body signed with any key line of the secret."""
        keys = _hmac_keys(self.secret)

        # faas-cli before 0.17.1 (2025-01) signed with SHA-1.
        allowed = {**_SHA256, **_SHA1} if self.allow_sha1 else _SHA256
        algorithm, presented = _prefixed_hex(request, self.header, allowed)
        index = _check(
            self.secret, keys[algorithm], request.body, (presented,), self.header
        )
        claims = {
            "header": self.header,
            "algorithm": algorithm,
            "key_index": index,
        }
        return Identity(self.scheme, "hmac", claims)


@dataclass(frozen=True)
class StripeVerifier:
    """``Stripe-Signature: t=<unix>,v1=<hex>...`` over ``<t>.<body>``."""

    secret: SecretFile
    _: KW_ONLY
    tolerance: float = 300
    replay: ReplayCache | None = None
    clock: Clock = time.time

    scheme = "stripe"
    needs_body = True

    def verify(self, request: AuthRequest) -> Identity:
        """Accept when any ``v1`` matches any key line (``whsec_`` kept)."""
        keys = _hmac_keys(self.secret)["sha256"]
        stamp, presented = _stripe_fields(_header(request, "Stripe-Signature"))
        left = _fresh(stamp, "Stripe-Signature t", self.tolerance, self.clock)

        signed = f"{stamp}.".encode() + request.body
        index = _check(self.secret, keys, signed, presented, "Stripe-Signature")

        digest = hashlib.sha256(signed).hexdigest()
        _remember(self.replay, "stripe", digest, "signed payload", left)
        claims = {"timestamp": int(stamp), "key_index": index}
        return Identity(self.scheme, "stripe", claims)


@dataclass(frozen=True)
class SlackVerifier:
    """``X-Slack-Signature: v0=<hex>`` over ``v0:<timestamp>:<body>``."""

    secret: SecretFile
    _: KW_ONLY
    tolerance: float = 300
    clock: Clock = time.time

    scheme = "slack"
    needs_body = True

    def verify(self, request: AuthRequest) -> Identity:
        """Accept a fresh request signed with any key line of the secret."""
        keys = _hmac_keys(self.secret)["sha256"]
        stamp = _header(request, "X-Slack-Request-Timestamp")
        _fresh(stamp, "X-Slack-Request-Timestamp", self.tolerance, self.clock)

        name = "X-Slack-Signature"
        _, presented = _prefixed_hex(request, name, {"v0": "sha256"})
        signed = f"v0:{stamp}:".encode() + request.body
        index = _check(self.secret, keys, signed, (presented,), name)

        claims = {"timestamp": int(stamp), "key_index": index}
        return Identity(self.scheme, "slack", claims)


@dataclass(frozen=True)
class StandardWebhooksVerifier:
    """Standard Webhooks (Svix with ``header_prefix="svix"``): ``v1``, ``v1a``.

    Key lines: ``whsec_<base64>`` (or bare base64) for ``v1`` HMAC-SHA256,
    ``whpk_<base64>`` Ed25519 public keys for ``v1a``. Behaves like the
    spec's reference verifier (libraries/python/standardwebhooks), except
    that it also checks ``v1a``, refuses a timestamp that is not integer
    seconds (the spec's format; the reference floors a float), and refuses a
    message id containing ".", which the spec forbids because
    ``<id>.<timestamp>.<body>`` would become ambiguous.
    """

    secret: SecretFile
    _: KW_ONLY
    tolerance: float = 300
    replay: ReplayCache | None = None
    clock: Clock = time.time
    header_prefix: str = "webhook"

    scheme = "standard-webhooks"
    needs_body = True

    def verify(self, request: AuthRequest) -> Identity:
        """Accept when any listed signature matches any key line."""
        keys = _standard_keys(self.secret)
        prefix = self.header_prefix
        msg_id = _message_id(request, f"{prefix}-id")
        stamp = _header(request, f"{prefix}-timestamp")
        left = _fresh(stamp, f"{prefix}-timestamp", self.tolerance, self.clock)

        name = f"{prefix}-signature"
        presented = _standard_signatures(_header(request, name), name)
        signed = f"{msg_id}.{stamp}.".encode() + request.body
        v1 = [sig for version, sig in presented if version == "v1"]
        v1a = [sig for version, sig in presented if version == "v1a"]
        index = _match_hmac(keys, signed, v1)
        index_a = _match_ed25519(keys, signed, v1a)
        if index is None and index_a is None:
            raise Unauthorized(f"{name} matches no key in {self.secret.name!r}")

        _remember(self.replay, prefix, msg_id, f"{prefix}-id", left)
        claims = {
            "id": msg_id,
            "timestamp": int(stamp),
            "version": "v1" if index is not None else "v1a",
            "key_index": index if index is not None else index_a,
        }
        return Identity(self.scheme, msg_id, claims)


@dataclass(frozen=True)
class ShopifyVerifier:
    """``X-Shopify-Hmac-SHA256: <base64>`` (or ``Shopify-Hmac-Sha256``)."""

    secret: SecretFile
    _: KW_ONLY
    replay: ReplayCache | None = None

    scheme = "shopify"
    needs_body = True

    def verify(self, request: AuthRequest) -> Identity:
        """Accept a body signed with any key line, old and new in rotation."""
        keys = _hmac_keys(self.secret)["sha256"]
        headers = [name for name in _SHOPIFY_HEADERS if name in request.headers]
        name = (headers or [_SHOPIFY_HEADERS[0]])[0]
        presented = _b64(_header(request, name), 32, name)
        index = _check(self.secret, keys, request.body, (presented,), name)

        webhook_id, topic, shop = _optional_ids(
            request, "X-Shopify-Webhook-Id", "X-Shopify-Topic", "X-Shopify-Shop-Domain"
        )
        _remember(self.replay, "shopify", webhook_id, "X-Shopify-Webhook-Id")
        claims = {
            "webhook_id": webhook_id,
            "topic": topic,
            "shop": shop,
            "key_index": index,
        }
        return Identity(self.scheme, webhook_id or "shopify", claims)


SCHEMES: dict[str, type[Any]] = {
    "github": GitHubVerifier,
    "hmac": HmacVerifier,
    "stripe": StripeVerifier,
    "slack": SlackVerifier,
    "standard-webhooks": StandardWebhooksVerifier,
    "shopify": ShopifyVerifier,
}


def sign(
    scheme: str,
    key: str,
    body: bytes,
    *,
    header: str | None = None,
    timestamp: int | None = None,
    msg_id: str | None = None,
) -> dict[str, str]:
    """Return the headers a real sender of ``scheme`` attaches to ``body``.

    ``header`` names the header for ``hmac`` (default ``Hmac``) or the
    prefix for ``standard-webhooks`` (default ``webhook``; ``svix`` for
    Svix). ``timestamp`` defaults to now, ``msg_id`` to a fresh id.
    Raises ``ValueError`` naming the argument that cannot be used.
    """
    fixed = SCHEMES.keys() - {"hmac", "standard-webhooks"}
    if header is not None and scheme in fixed:
        raise ValueError(f"scheme {scheme!r} has fixed header names; drop header")

    stamp = int(time.time()) if timestamp is None else timestamp
    delivery = msg_id or str(uuid.uuid4())
    match scheme:
        case "github":
            # GitHub still sends the legacy SHA-1 header beside SHA-256.
            return {
                "X-Hub-Signature-256": "sha256=" + _mac(key, body).hex(),
                "X-Hub-Signature": "sha1=" + _mac(key, body, "sha1").hex(),
                "X-GitHub-Delivery": delivery,
            }
        case "hmac":
            return {header or "Hmac": "sha256=" + _mac(key, body).hex()}
        case "stripe":
            v1 = _mac(key, f"{stamp}.".encode() + body).hex()
            return {"Stripe-Signature": f"t={stamp},v1={v1}"}
        case "slack":
            v0 = _mac(key, f"v0:{stamp}:".encode() + body).hex()
            return {
                "X-Slack-Request-Timestamp": str(stamp),
                "X-Slack-Signature": f"v0={v0}",
            }
        case "standard-webhooks":
            msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
            return _sign_standard(key, body, header or "webhook", stamp, msg_id)
        case "shopify":
            return {
                "X-Shopify-Hmac-SHA256": _b64encode(_mac(key, body)),
                "X-Shopify-Webhook-Id": delivery,
            }
    raise ValueError(
        f"cannot sign for scheme {scheme!r}; use one of {', '.join(SCHEMES)}"
    )


def _sign_standard(
    key: str, body: bytes, prefix: str, stamp: int, msg_id: str
) -> dict[str, str]:
    """``v1`` with a ``whsec_`` key, ``v1a`` with a ``whsk_`` one."""
    signed = f"{msg_id}.{stamp}.".encode() + body
    if key.startswith("whsk_"):
        signature = "v1a," + _b64encode(_private_key(key[5:]).sign(signed))
    else:
        raw = _decode_key(key.removeprefix("whsec_"))
        if raw is None:
            raise ValueError("key is not whsec_<base64> or whsk_<base64>")
        signature = "v1," + _b64encode(_mac(raw, signed))

    return {
        f"{prefix}-id": msg_id,
        f"{prefix}-timestamp": str(stamp),
        f"{prefix}-signature": signature,
    }


def _header(request: AuthRequest, name: str) -> str:
    """The one value of header ``name``; refused when absent or sent twice."""
    value = request.headers.get(name, "")
    if not value:
        raise Unauthorized(f"{name} header missing")

    if ", " in value:
        raise Unauthorized(f"{name} header sent more than once")
    return value


def _is_id(value: str) -> bool:
    """1 to 256 printable ASCII characters, none of them a space."""
    return (
        0 < len(value) <= _MAX_ID
        and value.isascii()
        and value.isprintable()
        and " " not in value
    )


def _optional_ids(request: AuthRequest, *names: str) -> list[str | None]:
    """The values of id headers a sender may leave out (None when absent)."""
    values: list[str | None] = []
    for name in names:
        value = request.headers.get(name)
        if value is not None and not _is_id(value):
            raise Unauthorized(f"{name} header is not printable ASCII, no spaces")
        values.append(value)
    return values


def _message_id(request: AuthRequest, name: str) -> str:
    value = _header(request, name)
    if not _is_id(value) or "." in value:
        raise Unauthorized(f"{name} header is not an id without '.' or spaces")
    return value


def _prefixed_hex(
    request: AuthRequest, name: str, allowed: Mapping[str, str]
) -> tuple[str, bytes]:
    """The algorithm and digest of a ``<prefix>=<hex>`` header value."""
    prefix, _, digest = _header(request, name).partition("=")
    algorithm = allowed.get(prefix, "")
    raw = _hex(digest, _DIGEST_SIZES[algorithm]) if algorithm else None
    if raw is None:
        expected = " or ".join(f"{prefix}=<hex>" for prefix in allowed)
        raise Unauthorized(f"{name} header is not {expected}")
    return algorithm, raw


def _hex(text: str, size: int) -> bytes | None:
    """``size`` bytes written as lowercase hex, exactly; else None.

    A round trip rather than a regex (a third of the parse on the hot
    path): ``fromhex`` alone would also take spaces and upper case.
    """
    if len(text) != 2 * size:
        return None
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        return None
    return raw if raw.hex() == text else None


def _b64(value: str, size: int, name: str) -> bytes:
    """Canonical standard base64 of exactly ``size`` bytes, or refuse."""
    try:
        raw = base64.b64decode(value, validate=True)
    except ValueError:
        raw = b""
    if len(raw) != size or _b64encode(raw) != value:
        raise Unauthorized(f"{name} does not hold {size} bytes in base64")
    return raw


def _b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _fresh(stamp: str, name: str, tolerance: float, clock: Clock) -> float:
    """Seconds until ``stamp`` gets too old; refuse it outside the window."""
    if not _UNIX_TIME.fullmatch(stamp):
        raise Unauthorized(f"{name} is not Unix time in whole seconds")

    age = clock() - int(stamp)
    if age > tolerance:
        raise Unauthorized(f"{name} is {age:.0f} s old, over {tolerance:g} s")
    if -age > tolerance:
        raise Unauthorized(f"{name} is {-age:.0f} s ahead, over {tolerance:g} s")
    return tolerance - age


def _stripe_fields(value: str) -> tuple[str, list[bytes]]:
    """The one ``t`` and every ``v1`` of a ``Stripe-Signature`` value."""
    fields = [_STRIPE_FIELD.fullmatch(item) for item in value.split(",")]
    if len(fields) > _MAX_SIGNATURES or None in fields:
        raise Unauthorized("Stripe-Signature header is not t=<unix>,v1=<hex>,...")

    pairs = [match.groups() for match in fields if match is not None]
    stamps = [value for key, value in pairs if key == "t"]
    signatures = [value for key, value in pairs if key == "v1"]
    if len(stamps) != 1 or not signatures:
        raise Unauthorized("Stripe-Signature header needs one t= and a v1=")
    digests = [_hex(sig, 32) for sig in signatures]
    if None in digests:
        raise Unauthorized("Stripe-Signature v1 is not a sha256 hex digest")
    return stamps[0], [digest for digest in digests if digest is not None]


def _standard_signatures(value: str, name: str) -> list[tuple[str, bytes]]:
    """Each ``v1`` and ``v1a`` of a space-separated ``<version>,<b64>`` list.

    Unknown versions are skipped: the spec keeps room for new ones.
    """
    entries = [_STANDARD_ENTRY.fullmatch(entry) for entry in value.split(" ")]
    if len(entries) > _MAX_SIGNATURES or None in entries:
        raise Unauthorized(f"{name} header is not a list of <version>,<base64>")

    pairs = [match.groups() for match in entries if match is not None]
    found = [
        (version, _b64(encoded, _STANDARD_SIZES[version], f"{name} {version}"))
        for version, encoded in pairs
        if version in _STANDARD_SIZES
    ]
    if not found:
        raise Unauthorized(f"{name} header has no v1 or v1a signature")
    return found


def _hmac_keys(secret: SecretFile) -> dict[str, list[Key]]:
    """The key lines, per digest, read first so a missing secret is a 500."""
    return secret.derived("hmac", _prepare_hmac_keys)


def _prepare_hmac_keys(lines: list[str]) -> dict[str, list[Key]]:
    # Senders key the HMAC with the secret's text as is, in UTF-8.
    return {
        algorithm: [hmac.new(line.encode(), digestmod=algorithm) for line in lines]
        for algorithm in ("sha256", "sha1")
    }


def _standard_keys(secret: SecretFile) -> list[Key]:
    """HMAC keys (``whsec_`` or bare base64) and ``whpk_`` public keys."""
    return secret.derived("standard", lambda lines: _parse_standard(secret, lines))


def _parse_standard(secret: SecretFile, lines: list[str]) -> list[Key]:
    keys: list[Key] = []
    for number, line in enumerate(lines, 1):
        where = f"key {number} of secret {secret.name!r}"
        if line.startswith("whsk_"):
            raise ConfigError(
                f"{where} is a whsk_ private key; a receiver needs the "
                "sender's whpk_ public key, keep whsk_ with the sender"
            )

        if line.startswith("whpk_"):
            keys.append(_public_key(line.removeprefix("whpk_"), where))
        else:
            raw = _hmac_key(line.removeprefix("whsec_"), where)
            keys.append(hmac.new(raw, digestmod="sha256"))
    return keys


def _hmac_key(text: str, where: str) -> bytes:
    raw = _decode_key(text)
    if raw is None:
        raise ConfigError(f"{where} is not whsec_<base64>")
    return raw


def _public_key(text: str, where: str) -> Ed25519PublicKey:
    raw = _decode_key(text)
    if raw is None or len(raw) != 32:
        raise ConfigError(f"{where} is not whpk_<base64 of 32 bytes>")
    return Ed25519PublicKey.from_public_bytes(raw)


def _decode_key(text: str) -> bytes | None:
    """Base64 key bytes, padding optional as in the reference library."""
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except ValueError:
        return None
    return raw or None


def _private_key(text: str) -> Ed25519PrivateKey:
    """A ``whsk_`` key: the 32-byte seed, or seed + public key (64, NaCl)."""
    raw = _decode_key(text)
    if raw is None or len(raw) not in (32, 64):
        raise ValueError("key is not whsk_<base64 of a 32 or 64 byte key>")

    private = Ed25519PrivateKey.from_private_bytes(raw[:32])
    if len(raw) == 64 and raw[32:] != private.public_key().public_bytes_raw():
        raise ValueError("whsk_ key's second half is not its public key")
    return private


def _mac(key: str | bytes, message: bytes, algorithm: str = "sha256") -> bytes:
    raw = key.encode() if isinstance(key, str) else key
    return hmac.new(raw, message, algorithm).digest()


def _match_hmac(
    keys: Sequence[Key], signed: bytes, presented: Sequence[bytes]
) -> int | None:
    """The index of the key that signed ``signed``, trying every pair."""
    matched = None
    for index, key in enumerate(keys):
        if not isinstance(key, hmac.HMAC):
            continue
        mac = key.copy()
        mac.update(signed)
        expected = mac.digest()
        for signature in presented:
            if hmac.compare_digest(expected, signature) and matched is None:
                matched = index
    return matched


def _match_ed25519(
    keys: Sequence[Key], signed: bytes, presented: Sequence[bytes]
) -> int | None:
    """The index of the public key a ``v1a`` signature verifies with."""
    matched = None
    for index, key in enumerate(keys):
        if isinstance(key, hmac.HMAC):
            continue
        for signature in presented:
            try:
                key.verify(signature, signed)
            except InvalidSignature:
                continue
            matched = index if matched is None else matched
    return matched


def _check(
    secret: SecretFile,
    keys: Sequence[Key],
    signed: bytes,
    presented: Sequence[bytes],
    name: str,
) -> int:
    """The index of the key line that signed ``signed``, or refuse."""
    index = _match_hmac(keys, signed, presented)
    if index is None:
        raise Unauthorized(f"{name} matches no key in secret {secret.name!r}")
    return index


def _remember(
    replay: ReplayCache | None,
    scheme: str,
    key: str | None,
    what: str,
    lifetime: float = 0.0,
) -> None:
    """Refuse a delivery the cache has accepted before (after verifying)."""
    if replay is None:
        return

    if key is None:
        raise Unauthorized(f"{what} header missing; replay checks need it")
    if not replay.check_and_remember(f"{scheme}:{key}", lifetime=lifetime):
        raise Unauthorized(f"{what} already accepted (replay), or cache full")
