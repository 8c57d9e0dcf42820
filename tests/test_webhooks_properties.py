"""Webhook verifiers over generated headers, keys and bodies."""

from __future__ import annotations

import base64
import itertools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from faas_runtime._errors import Unauthorized
from faas_runtime._secrets import SecretFile
from faas_runtime._types import AuthRequest, Headers
from faas_runtime._webhooks import (
    SCHEMES,
    ReplayCache,
    StandardWebhooksVerifier,
    sign,
)

NOW = 1_700_000_000
STD_KEY = "whsec_" + base64.b64encode(bytes(range(32))).decode()
HMAC_SCHEMES = ["github", "hmac", "stripe", "slack", "shopify"]
TIMED_SCHEMES = ["stripe", "slack", "standard-webhooks"]
READ_HEADERS = {
    "github": ["X-Hub-Signature-256", "X-GitHub-Delivery"],
    "hmac": ["Hmac"],
    "stripe": ["Stripe-Signature"],
    "slack": ["X-Slack-Signature", "X-Slack-Request-Timestamp"],
    "standard-webhooks": [
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    ],
    "shopify": ["X-Shopify-Hmac-SHA256", "X-Shopify-Webhook-Id"],
}
# Delivery ids the signature does not cover: any well-formed one passes.
UNSIGNED = {"X-GitHub-Delivery", "X-Shopify-Webhook-Id"}

# What a WSGI server can hand over: latin-1 text, plus any Unicode that
# other front ends might pass through.
header_values = st.one_of(
    st.text(st.characters(max_codepoint=255)),
    st.text(st.characters(codec="utf-8")),
    # Near misses: the right shape with the wrong content.
    st.from_regex(r"(t=[0-9]{1,12},)?(v1a?|v0|sha256)[=,][A-Za-z0-9+/=]{0,90}"),
)
# A key survives the secret file: one line, no surrounding whitespace.
keys = st.text(st.characters(codec="utf-8"), min_size=1).filter(
    lambda key: key.splitlines() == [key] and key == key.strip()
)
slow = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

Writer = Callable[[str], SecretFile]


@pytest.fixture(scope="module")
def write_secret(tmp_path_factory: pytest.TempPathFactory) -> Writer:
    """Write one key to a new secret file per call."""
    folder: Path = tmp_path_factory.mktemp("secrets")
    numbers = itertools.count()

    def write(key: str) -> SecretFile:
        path = folder / f"secret-{next(numbers)}"
        path.write_bytes(key.encode() + b"\n")
        return SecretFile(path)

    return write


def verifier_for(scheme: str, secret: SecretFile, now: float = NOW) -> Any:
    """The scheme's verifier with a clock stopped at ``now``."""
    options = {"clock": lambda: now} if scheme in TIMED_SCHEMES else {}
    return SCHEMES[scheme](secret, **options)


def request(headers: dict[str, str], body: bytes) -> AuthRequest:
    """A POST as the middleware hands it over."""
    return AuthRequest("POST", "/", "", Headers(headers), body)


@pytest.mark.parametrize(
    ("scheme", "name"),
    [(scheme, name) for scheme, names in READ_HEADERS.items() for name in names],
)
@slow
@given(value=header_values)
def test_any_header_value_is_refused_cleanly(
    write_secret: Writer, scheme: str, name: str, value: str
) -> None:
    """Another value in a signed header is refused, with Unauthorized only.

    An unsigned delivery id may pass, but then it is the subject verbatim.
    """
    key = STD_KEY if scheme == "standard-webhooks" else "k"
    headers = sign(scheme, key, b"body", timestamp=NOW)
    assume(headers.get(name) != value)
    headers[name] = value
    verifier = verifier_for(scheme, write_secret(key))

    try:
        identity = verifier.verify(request(headers, b"body"))
    except Unauthorized:
        return
    assert name in UNSIGNED
    assert identity.subject == value


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
@slow
@given(
    headers=st.dictionaries(
        st.sampled_from([n for names in READ_HEADERS.values() for n in names]),
        header_values,
    ),
    body=st.binary(max_size=256),
)
def test_made_up_headers_are_refused_cleanly(
    write_secret: Writer, scheme: str, headers: dict[str, str], body: bytes
) -> None:
    """Headers made up from nothing never verify, nor raise anything else."""
    key = STD_KEY if scheme == "standard-webhooks" else "k"

    with pytest.raises(Unauthorized):
        verifier_for(scheme, write_secret(key)).verify(request(headers, body))


@pytest.mark.parametrize("scheme", HMAC_SCHEMES)
@slow
@given(key=keys, body=st.binary(max_size=4096))
def test_sign_then_verify_any_key_and_body(
    write_secret: Writer, scheme: str, key: str, body: bytes
) -> None:
    """What sign() produces for any key and body verifies with that key."""
    headers = sign(scheme, key, body, timestamp=NOW)

    verifier = verifier_for(scheme, write_secret(key))
    assert verifier.verify(request(headers, body)).scheme == scheme


@slow
@given(raw=st.binary(min_size=1, max_size=64), body=st.binary(max_size=4096))
def test_standard_webhooks_v1_round_trip(
    write_secret: Writer, raw: bytes, body: bytes
) -> None:
    """Any whsec_ key signs bodies its verifier accepts as v1."""
    key = "whsec_" + base64.b64encode(raw).decode()
    headers = sign("standard-webhooks", key, body, timestamp=NOW)

    verifier = verifier_for("standard-webhooks", write_secret(key))
    assert verifier.verify(request(headers, body)).claims["version"] == "v1"


@slow
@given(seed=st.binary(min_size=32, max_size=32), body=st.binary(max_size=4096))
def test_standard_webhooks_v1a_round_trip(
    write_secret: Writer, seed: bytes, body: bytes
) -> None:
    """Any whsk_ seed signs bodies the matching whpk_ key accepts as v1a."""
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key()
    private_line = "whsk_" + base64.b64encode(seed).decode()
    raw_public = public.public_bytes_raw()
    public_line = "whpk_" + base64.b64encode(raw_public).decode()
    headers = sign("standard-webhooks", private_line, body, timestamp=NOW)

    verifier = verifier_for("standard-webhooks", write_secret(public_line))
    assert verifier.verify(request(headers, body)).claims["version"] == "v1a"


@pytest.mark.parametrize("scheme", TIMED_SCHEMES)
@slow
@given(offset=st.integers(min_value=-1000, max_value=1000))
def test_timestamps_accepted_exactly_within_tolerance(
    write_secret: Writer, scheme: str, offset: int
) -> None:
    """A stamp ``offset`` seconds from now passes iff |offset| <= 300."""
    key = STD_KEY if scheme == "standard-webhooks" else "k"
    headers = sign(scheme, key, b"body", timestamp=NOW + offset)
    verifier = verifier_for(scheme, write_secret(key))

    if abs(offset) <= 300:
        assert verifier.verify(request(headers, b"body"))
    else:
        with pytest.raises(Unauthorized, match="over 300 s"):
            verifier.verify(request(headers, b"body"))


@slow
@given(seen=st.lists(st.text(max_size=4), max_size=50))
def test_replay_cache_accepts_first_sightings_only(seen: list[str]) -> None:
    """Within ttl, check_and_remember is True exactly on a key's first use."""
    cache = ReplayCache(60, clock=lambda: 0.0)

    results = [cache.check_and_remember(key) for key in seen]
    assert results == [key not in seen[:i] for i, key in enumerate(seen)]


@slow
@given(prefix=st.from_regex(r"[a-z][a-z0-9]{0,11}", fullmatch=True))
def test_standard_webhooks_any_prefix(write_secret: Writer, prefix: str) -> None:
    """Signer and verifier agree on any header prefix, and only on it."""
    headers = sign("standard-webhooks", STD_KEY, b"x", header=prefix, timestamp=NOW)
    secret = write_secret(STD_KEY)

    def verifier(prefix: str) -> StandardWebhooksVerifier:
        return StandardWebhooksVerifier(secret, clock=lambda: NOW, header_prefix=prefix)

    identity = verifier(prefix).verify(request(headers, b"x"))
    assert identity.subject == headers[f"{prefix}-id"]
    with pytest.raises(Unauthorized, match="header missing"):
        verifier(prefix + "x").verify(request(headers, b"x"))


@slow
@given(
    delivery=st.one_of(
        st.text(st.characters(max_codepoint=255), max_size=300),
        st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=300),
    )
)
def test_delivery_ids_are_printable_ascii_without_spaces(
    write_secret: Writer, delivery: str
) -> None:
    """A GitHub delivery id passes iff it is 1-256 of the characters ! to ~."""
    headers = {**sign("github", "k", b"body"), "X-GitHub-Delivery": delivery}
    verifier = verifier_for("github", write_secret("k"))

    if re.fullmatch("[!-~]{1,256}", delivery):
        assert verifier.verify(request(headers, b"body")).subject == delivery
    else:
        with pytest.raises(Unauthorized, match="X-GitHub-Delivery"):
            verifier.verify(request(headers, b"body"))
