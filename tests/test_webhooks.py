"""Webhook signature verifiers and signers (faas_runtime._webhooks).

Expected signatures are computed here with hmac/hashlib/cryptography, or
taken from the senders' published examples, never from ``sign``; ``sign`` is
checked against the same values.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import waitress
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
)
from waitress.wasyncore import close_all

from faas_runtime._errors import AuthError, ConfigError, Unauthorized
from faas_runtime._secrets import SecretFile
from faas_runtime._types import AuthRequest, Headers, Identity, Verifier
from faas_runtime._webhooks import (
    SCHEMES,
    GitHubVerifier,
    HmacVerifier,
    ReplayCache,
    ShopifyVerifier,
    SlackVerifier,
    StandardWebhooksVerifier,
    StripeVerifier,
    sign,
)

NOW = 1_700_000_000
BODY = b'{"action":"opened","number":1}'
KEY = "s3cret-key"
OLD_KEY = "previous-key"
STRIPE_KEY = "whsec_test_abc123"
# A Standard Webhooks key: whsec_ + base64 of 24 bytes.
STD_RAW = bytes(range(24))
STD_KEY = "whsec_" + base64.b64encode(STD_RAW).decode()
MSG = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
# (offset from now, accepted?) at the default 300 s tolerance.
TOLERANCE_CASES = [(-300, True), (-301, False), (300, True), (301, False)]

Secrets = Callable[..., SecretFile]
Sent = Mapping[str, str] | list[tuple[str, str]]


@pytest.fixture
def secret(tmp_path: Path) -> Secrets:
    """Write the given key lines to a fresh secret file."""

    def write(*lines: str) -> SecretFile:
        path = tmp_path / "webhook-secret"
        path.write_text("".join(f"{line}\n" for line in lines))
        return SecretFile(path)

    return write


def req(headers: Sent, body: bytes = BODY) -> AuthRequest:
    """A POST as the middleware hands it over."""
    return AuthRequest("POST", "/", "", Headers(headers), body)


def accepted(verifier: Verifier, headers: Sent, body: bytes = BODY) -> Any:
    """Verify and return the identity's claims, or fail the test."""
    return verifier.verify(req(headers, body)).claims


def refused(verifier: Verifier, headers: Sent, body: bytes = BODY) -> str:
    """Verify, expect a refusal, return its logged reason."""
    with pytest.raises(Unauthorized) as caught:
        verifier.verify(req(headers, body))
    return caught.value.reason


def hex_mac(key: str | bytes, message: bytes, algorithm: str = "sha256") -> str:
    """HMAC as hex, computed independently of the module under test."""
    raw = key.encode() if isinstance(key, str) else key
    return hmac.new(raw, message, algorithm).hexdigest()


def b64_mac(key: str | bytes, message: bytes) -> str:
    """HMAC-SHA256 as base64, computed independently."""
    raw = key.encode() if isinstance(key, str) else key
    digest = hmac.new(raw, message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def clock(now: float = NOW) -> Callable[[], float]:
    """A wall clock stopped at ``now``."""
    return lambda: now


def github(key: str, body: bytes = BODY) -> dict[str, str]:
    """An X-Hub-Signature-256 header, computed independently."""
    return {"X-Hub-Signature-256": "sha256=" + hex_mac(key, body)}


def stripe(key: str, stamp: int, *extra: str) -> dict[str, str]:
    """A Stripe-Signature header over BODY, computed independently."""
    v1 = hex_mac(key, f"{stamp}.".encode() + BODY)
    return {"Stripe-Signature": ",".join([f"t={stamp}", *extra, f"v1={v1}"])}


def slack(stamp: int = NOW, key: str = KEY) -> dict[str, str]:
    """Slack's two headers over BODY, computed independently."""
    v0 = hex_mac(key, f"v0:{stamp}:".encode() + BODY)
    return {
        "X-Slack-Request-Timestamp": str(stamp),
        "X-Slack-Signature": f"v0={v0}",
    }


def std(
    signature: str, stamp: int = NOW, msg_id: str = MSG, prefix: str = "webhook"
) -> dict[str, str]:
    """Standard Webhooks headers for the given values."""
    return {
        f"{prefix}-id": msg_id,
        f"{prefix}-timestamp": str(stamp),
        f"{prefix}-signature": signature,
    }


def std_v1(raw_key: bytes = STD_RAW, stamp: int = NOW) -> str:
    """A ``v1,<b64>`` entry over BODY, computed independently."""
    return "v1," + b64_mac(raw_key, f"{MSG}.{stamp}.".encode() + BODY)


def non_canonical(encoded: str) -> str:
    """The same bytes in base64, with the last digit's unused bits set.

    Lenient decoders accept it; a strict parser must not.
    """
    digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    data = encoded.rstrip("=")
    last = digits[digits.index(data[-1]) | 1]
    changed = data[:-1] + last + encoded[len(data) :]
    assert base64.b64decode(changed) == base64.b64decode(encoded)
    return changed


class TestPublishedExamples:
    """The senders' own worked examples verify; ``sign`` reproduces them."""

    def test_github_docs_example(self, secret: Secrets) -> None:
        """GitHub's docs: "It's a Secret to Everybody", "Hello, World!"."""
        expected = (
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        )
        key = "It's a Secret to Everybody"
        verifier = GitHubVerifier(secret(key))
        headers = {"X-Hub-Signature-256": expected}

        assert accepted(verifier, headers, b"Hello, World!")
        assert refused(verifier, headers, b"Hello, World?")
        signed = sign("github", key, b"Hello, World!")
        assert signed["X-Hub-Signature-256"] == expected

    def test_faas_cli_sha256_vector(self, secret: Secrets) -> None:
        """faas-cli invoke --sign hmac --key k, body hello, as Hmac."""
        value = (
            "sha256=406e4b43f87095aa86ca6299d25e875921fefa180f02043bb29bec5681c0c2d0"
        )
        claims = accepted(HmacVerifier(secret("k")), {"Hmac": value}, b"hello")

        assert claims["algorithm"] == "sha256"
        assert sign("hmac", "k", b"hello") == {"Hmac": value}

    def test_faas_cli_sha1_vector_needs_allow_sha1(self, secret: Secrets) -> None:
        """Older faas-cli's sha1= is refused unless allow_sha1 is set."""
        headers = {"hmac": "sha1=0b7938d1a2cdcafa94645a5c3508f7236ae457a9"}
        strict = HmacVerifier(secret("k"))
        legacy = HmacVerifier(secret("k"), allow_sha1=True)

        assert "sha256=<hex>" in refused(strict, headers, b"hello")
        assert accepted(legacy, headers, b"hello")["algorithm"] == "sha1"

    def test_slack_docs_example(self, secret: Secrets) -> None:
        """Slack's documented slash-command request verifies."""
        body = (
            b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J"
            b"&team_domain=testteamnow&channel_id=G8PSS9T3V"
            b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner"
            b"&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2F"
            b"hooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F"
            b"96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121."
            b"803a0bc887a14d10d2c447fce8b6703c"
        )
        headers = {
            "X-Slack-Request-Timestamp": "1531420618",
            "X-Slack-Signature": (
                "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
            ),
        }
        key = "8f742231b10e8888abcd99yyyzzz85a5"
        verifier = SlackVerifier(secret(key), clock=clock(1531420618 + 30))

        assert accepted(verifier, headers, body)["timestamp"] == 1531420618
        assert sign("slack", key, body, timestamp=1531420618) == headers

    def test_standard_webhooks_reference_example(self, secret: Secrets) -> None:
        """The reference library's sign() vector verifies; a bit off fails."""
        key = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        msg_id, stamp = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330
        body = b'{"test": 2432232314}'
        good = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        bad = good.replace("1OE=", "1OA=")
        verifier = StandardWebhooksVerifier(secret(key), clock=clock(stamp))

        assert accepted(verifier, std(good, stamp, msg_id), body)["id"] == msg_id
        reason = refused(verifier, std(bad, stamp, msg_id), body)
        assert "matches no key" in reason
        signed = sign("standard-webhooks", key, body, timestamp=stamp, msg_id=msg_id)
        assert signed == std(good, stamp, msg_id)


class TestGitHub:
    """X-Hub-Signature-256 over the body, with SHA-1 only on request."""

    def test_identity_carries_delivery_and_event(self, secret: Secrets) -> None:
        """The delivery id is the subject; event and key index are claims."""
        delivery = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
        headers = {
            **github(KEY),
            "X-GitHub-Delivery": delivery,
            "X-GitHub-Event": "issues",
        }
        identity = GitHubVerifier(secret(KEY)).verify(req(headers))

        assert identity == Identity(
            "github",
            delivery,
            {
                "delivery": delivery,
                "event": "issues",
                "algorithm": "sha256",
                "key_index": 0,
            },
        )

    def test_subject_without_delivery_header(self, secret: Secrets) -> None:
        """Without X-GitHub-Delivery the subject is just "github"."""
        identity = GitHubVerifier(secret(KEY)).verify(req(github(KEY)))

        assert identity.subject == "github"

    def test_wrong_key_and_tampered_body_refused(self, secret: Secrets) -> None:
        """A signature by another key, or over other bytes, fails."""
        verifier = GitHubVerifier(secret(KEY))

        assert "matches no key" in refused(verifier, github("other"))
        assert "matches no key" in refused(verifier, github(KEY), BODY + b" ")

    def test_rotation_second_line_matches(self, secret: Secrets) -> None:
        """A file with new and old key accepts both, saying which matched."""
        verifier = GitHubVerifier(secret(KEY, OLD_KEY))

        assert accepted(verifier, github(OLD_KEY))["key_index"] == 1
        assert accepted(verifier, github(KEY))["key_index"] == 0

    def test_sha1_header_only_when_allowed(self, secret: Secrets) -> None:
        """The legacy X-Hub-Signature counts only with allow_sha1."""
        headers = {"X-Hub-Signature": "sha1=" + hex_mac(KEY, BODY, "sha1")}
        strict = GitHubVerifier(secret(KEY))
        legacy = GitHubVerifier(secret(KEY), allow_sha1=True)

        reason = refused(strict, headers)
        assert "X-Hub-Signature-256 header missing" in reason
        assert accepted(legacy, headers)["algorithm"] == "sha1"

    def test_bad_sha256_is_not_rescued_by_good_sha1(self, secret: Secrets) -> None:
        """When the SHA-256 header is present only it decides: no downgrade."""
        headers = {
            **github("other"),
            "X-Hub-Signature": "sha1=" + hex_mac(KEY, BODY, "sha1"),
        }
        verifier = GitHubVerifier(secret(KEY), allow_sha1=True)

        assert "X-Hub-Signature-256" in refused(verifier, headers)

    @pytest.mark.parametrize(
        "value",
        [
            "",
            "sha256=",
            "sha256=" + "a" * 63,
            "sha256=" + "a" * 65,
            "SHA256=" + "a" * 64,
            "sha256=" + "A" * 64,
            "sha256 =" + "a" * 64,
            "sha256=" + "a" * 63 + "g",
            "sha256=" + "a" * 64 + "\n",
            "sha1=" + "a" * 40,
            "sha512=" + "a" * 128,
            "sha256=" + "a" * 32 + " " + "a" * 32,
        ],
    )
    def test_malformed_values_refused(self, secret: Secrets, value: str) -> None:
        """Anything but sha256= and 64 lower-case hex digits is refused."""
        verifier = GitHubVerifier(secret(KEY))

        assert refused(verifier, {"X-Hub-Signature-256": value})

    @pytest.mark.parametrize(
        "spell",
        [
            str.upper,
            lambda digest: " ".join(digest[i : i + 2] for i in range(0, 64, 2)),
            lambda digest: digest[:32] + " " + digest[32:],
        ],
        ids=["upper case", "spaced bytes", "one space"],
    )
    def test_right_digest_spelt_otherwise_refused(
        self, secret: Secrets, spell: Callable[[str], str]
    ) -> None:
        """The right MAC passes only as lowercase hex (as bytes.fromhex would not)."""
        verifier = GitHubVerifier(secret(KEY))
        headers = {"X-Hub-Signature-256": "sha256=" + spell(hex_mac(KEY, BODY))}

        assert "is not sha256=<hex>" in refused(verifier, headers)

    def test_reasons_never_hold_key_or_signature(self, secret: Secrets) -> None:
        """Log reasons name the header, not the key or what was presented."""
        headers = github("other")
        reason = refused(GitHubVerifier(secret(KEY)), headers)

        assert KEY not in reason
        assert headers["X-Hub-Signature-256"][7:] not in reason
        assert "X-Hub-Signature-256" in reason


class TestHmac:
    """faas-cli's --sign: a header of the user's choice."""

    def test_custom_header_any_case(self, secret: Secrets) -> None:
        """The configured header is found whatever case it arrives in."""
        verifier = HmacVerifier(secret(KEY), header="X-Signature")
        value = "sha256=" + hex_mac(KEY, BODY)

        assert accepted(verifier, {"x-signature": value}) == {
            "header": "X-Signature",
            "algorithm": "sha256",
            "key_index": 0,
        }
        reason = refused(verifier, {"Hmac": value})
        assert "X-Signature header missing" in reason

    def test_allow_sha1_keeps_sha256(self, secret: Secrets) -> None:
        """allow_sha1 adds sha1= without dropping sha256=."""
        verifier = HmacVerifier(secret(KEY), allow_sha1=True)
        sha1 = {"Hmac": "sha1=" + hex_mac(KEY, BODY, "sha1")}
        sha256 = {"Hmac": "sha256=" + hex_mac(KEY, BODY)}

        assert accepted(verifier, sha1)["algorithm"] == "sha1"
        assert accepted(verifier, sha256)["algorithm"] == "sha256"

    def test_sha1_digest_as_sha256_refused(self, secret: Secrets) -> None:
        """The prefix fixes the digest length: a SHA-1 hex is no sha256=."""
        headers = {"Hmac": "sha256=" + hex_mac(KEY, BODY, "sha1")}
        verifier = HmacVerifier(secret(KEY), allow_sha1=True)

        assert refused(verifier, headers)


class TestStripe:
    """Stripe-Signature: t and any v1 over <t>.<body>, key with whsec_."""

    @staticmethod
    def verifier(secret: Secrets, **options: Any) -> StripeVerifier:
        options.setdefault("clock", clock())
        return StripeVerifier(secret(STRIPE_KEY), **options)

    def test_accepts_and_reports_timestamp(self, secret: Secrets) -> None:
        """A fresh signature by the full secret verifies."""
        headers = stripe(STRIPE_KEY, NOW)

        claims = accepted(self.verifier(secret), headers)
        assert claims == {"timestamp": NOW, "key_index": 0}
        assert sign("stripe", STRIPE_KEY, BODY, timestamp=NOW) == headers

    def test_key_keeps_its_whsec_prefix(self, secret: Secrets) -> None:
        """Stripe signs with the whole string; a stripped key fails."""
        headers = stripe(STRIPE_KEY.removeprefix("whsec_"), NOW)

        assert "matches no key" in refused(self.verifier(secret), headers)

    def test_any_v1_may_match_v0_and_unknown_ignored(self, secret: Secrets) -> None:
        """Several v1 (one wrong), a v0 and an unknown field still verify."""
        headers = stripe(STRIPE_KEY, NOW, "v1=" + "0" * 64, "v0=" + "1" * 64, "x=yz")

        assert accepted(self.verifier(secret), headers)

    def test_only_v0_is_refused(self, secret: Secrets) -> None:
        """A correct v0 alone is refused: v0 is Stripe's legacy test mode."""
        v0 = hex_mac(STRIPE_KEY, f"{NOW}.".encode() + BODY)
        headers = {"Stripe-Signature": f"t={NOW},v0={v0}"}

        assert "v1=" in refused(self.verifier(secret), headers)

    @pytest.mark.parametrize(("offset", "ok"), TOLERANCE_CASES)
    def test_tolerance_both_ways(self, secret: Secrets, offset: int, ok: bool) -> None:
        """Old and future timestamps beyond the tolerance are refused."""
        headers = stripe(STRIPE_KEY, NOW + offset)

        if ok:
            assert accepted(self.verifier(secret), headers)
        else:
            assert "over 300 s" in refused(self.verifier(secret), headers)

    @pytest.mark.parametrize(
        "value",
        [
            "v1=" + "a" * 64,
            f"t={NOW}",
            f"t={NOW},t={NOW},v1=" + "a" * 64,
            f"t={NOW}, v1=" + "a" * 64,
            f"t={NOW},v1=" + "a" * 63,
            f"t={NOW},v1=",
            f"t={NOW},,v1=" + "a" * 64,
            f"t={NOW}.5,v1=" + "a" * 64,
            f"t=0{NOW},v1=" + "a" * 64,
            f"t=-{NOW},v1=" + "a" * 64,
            "t=soon,v1=" + "a" * 64,
            f"t={NOW}," + ",".join(["v1=" + "a" * 64] * 16),
        ],
    )
    def test_malformed_values_refused(self, secret: Secrets, value: str) -> None:
        """Missing or doubled t, bad hex, spaces, 17+ fields are refused."""
        verifier = self.verifier(secret)

        assert refused(verifier, {"Stripe-Signature": value})

    def test_replay_refused_even_reordered(self, secret: Secrets) -> None:
        """A copied request is refused; shuffling its v1 list does not help."""
        verifier = self.verifier(secret, replay=ReplayCache(300))
        first = stripe(STRIPE_KEY, NOW, "v1=" + "0" * 64)
        v1s = first["Stripe-Signature"].split(",")[1:]
        shuffled = ",".join([f"t={NOW}", *reversed(v1s)])

        assert accepted(verifier, first)
        assert "replay" in refused(verifier, first)
        assert "replay" in refused(verifier, {"Stripe-Signature": shuffled})

    def test_resigned_retry_is_not_a_replay(self, secret: Secrets) -> None:
        """Stripe re-signs a retry with a new t: that is a new delivery."""
        verifier = self.verifier(secret, replay=ReplayCache(300))

        assert accepted(verifier, stripe(STRIPE_KEY, NOW - 10))
        assert accepted(verifier, stripe(STRIPE_KEY, NOW))

    def test_future_stamp_remembered_past_ttl(self, secret: Secrets) -> None:
        """A stamp ahead of our clock stays a replay until it is too old."""
        wall, mono = [float(NOW)], [0.0]
        cache = ReplayCache(300, clock=lambda: mono[0])
        verifier = self.verifier(secret, replay=cache, clock=lambda: wall[0])
        headers = stripe(STRIPE_KEY, NOW + 250)

        assert accepted(verifier, headers)
        wall[0] += 400
        mono[0] += 400
        assert "replay" in refused(verifier, headers)


class TestSlack:
    """X-Slack-Signature v0 over v0:<ts>:<body>, ±tolerance."""

    @pytest.mark.parametrize(("offset", "ok"), TOLERANCE_CASES)
    def test_tolerance_both_ways(self, secret: Secrets, offset: int, ok: bool) -> None:
        """Requests more than five minutes off either way are refused."""
        verifier = SlackVerifier(secret(KEY), clock=clock())
        headers = slack(NOW + offset)

        if ok:
            assert accepted(verifier, headers)["timestamp"] == NOW + offset
        else:
            assert "over 300 s" in refused(verifier, headers)

    def test_custom_tolerance(self, secret: Secrets) -> None:
        """A tighter tolerance refuses what the default would accept."""
        verifier = SlackVerifier(secret(KEY), tolerance=60, clock=clock())

        assert "over 60 s" in refused(verifier, slack(NOW - 61))

    def test_rotation_and_wrong_key(self, secret: Secrets) -> None:
        """The old signing secret verifies during rotation; others fail."""
        verifier = SlackVerifier(secret(KEY, OLD_KEY), clock=clock())

        assert accepted(verifier, slack(key=OLD_KEY))["key_index"] == 1
        assert refused(verifier, slack(key="other"))

    @pytest.mark.parametrize(
        "change",
        [
            {"X-Slack-Request-Timestamp": ""},
            {"X-Slack-Signature": ""},
            {"X-Slack-Request-Timestamp": f"{NOW}.0"},
            {"X-Slack-Request-Timestamp": f" {NOW}"},
            {"X-Slack-Request-Timestamp": "1_700_000_000"},
            {"X-Slack-Signature": "v1=" + "a" * 64},
        ],
    )
    def test_missing_or_malformed_refused(
        self, secret: Secrets, change: dict[str, str]
    ) -> None:
        """Empty, non-integer or wrongly versioned values are refused."""
        verifier = SlackVerifier(secret(KEY), clock=clock())

        assert refused(verifier, {**slack(), **change})

    def test_signed_timestamp_cannot_be_swapped(self, secret: Secrets) -> None:
        """A newer timestamp header breaks the signature it is part of."""
        verifier = SlackVerifier(secret(KEY), clock=clock())
        headers = {**slack(NOW - 100), "X-Slack-Request-Timestamp": str(NOW)}

        assert "matches no key" in refused(verifier, headers)


class TestStandardWebhooks:
    """webhook-id/-timestamp/-signature, v1 HMAC and v1a Ed25519."""

    @staticmethod
    def verifier(secret: Secrets, *lines: str, **options: Any) -> Verifier:
        options.setdefault("clock", clock())
        keys = secret(*(lines or (STD_KEY,)))
        return StandardWebhooksVerifier(keys, **options)

    @pytest.mark.parametrize(
        "line",
        [
            STD_KEY,
            STD_KEY.removeprefix("whsec_"),
            "whsec_" + b64(bytes(range(25))).rstrip("="),
        ],
    )
    def test_v1_key_forms(self, secret: Secrets, line: str) -> None:
        """whsec_<b64>, bare base64 and unpadded base64 are HMAC keys."""
        raw = base64.b64decode(line.removeprefix("whsec_") + "==")

        assert accepted(self.verifier(secret, line), std(std_v1(raw))) == {
            "id": MSG,
            "timestamp": NOW,
            "version": "v1",
            "key_index": 0,
        }

    def test_v1a_ed25519(self, secret: Secrets) -> None:
        """A v1a signature verifies with the sender's whpk_ key only."""
        private = Ed25519PrivateKey.generate()
        public = b64(private.public_key().public_bytes_raw())
        other = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
        signed = f"{MSG}.{NOW}.".encode() + BODY
        headers = std("v1a," + b64(private.sign(signed)))

        right = self.verifier(secret, STD_KEY, f"whpk_{public}")
        claims = accepted(right, headers)
        assert (claims["version"], claims["key_index"]) == ("v1a", 1)
        wrong = self.verifier(secret, f"whpk_{b64(other)}")
        assert refused(wrong, headers)

    def test_signer_v1a_verifies_independently(self) -> None:
        """sign() with whsk_ (seed or NaCl 64-byte form) makes Ed25519."""
        private = Ed25519PrivateKey.generate()
        seed = private.private_bytes_raw()
        public = private.public_key()

        for raw in (seed, seed + public.public_bytes_raw()):
            key = "whsk_" + b64(raw)
            headers = sign("standard-webhooks", key, BODY, timestamp=NOW, msg_id="m1")
            version, encoded = headers["webhook-signature"].split(",")
            assert version == "v1a"
            signed = f"m1.{NOW}.".encode() + BODY
            public.verify(base64.b64decode(encoded), signed)

    def test_signature_list_mixed_and_unknown(self, secret: Secrets) -> None:
        """Any entry may match; unknown versions are skipped."""
        wrong = std_v1(b"x" * 24)
        verifier = self.verifier(secret)

        assert accepted(verifier, std(f"v2,AAAA {wrong} {std_v1()}"))
        reason = refused(verifier, std("v2,AAAA v3,BBBB"))
        assert "no v1 or v1a" in reason

    def test_svix_prefix(self, secret: Secrets) -> None:
        """header_prefix="svix" reads svix-* headers and not webhook-*."""
        verifier = self.verifier(secret, header_prefix="svix")

        assert accepted(verifier, std(std_v1(), prefix="svix"))
        reason = refused(verifier, std(std_v1()))
        assert "svix-id header missing" in reason

    @pytest.mark.parametrize(("offset", "ok"), TOLERANCE_CASES)
    def test_tolerance_both_ways(self, secret: Secrets, offset: int, ok: bool) -> None:
        """Like the reference library: too old and too new are refused."""
        stamp = NOW + offset
        headers = std(std_v1(stamp=stamp), stamp)

        if ok:
            assert accepted(self.verifier(secret), headers)
        else:
            assert "over 300 s" in refused(self.verifier(secret), headers)

    @pytest.mark.parametrize(
        "change",
        [
            {"webhook-timestamp": f"{NOW}.0"},
            {"webhook-id": "msg.1"},
            {"webhook-id": "msg 1"},
            {"webhook-signature": "v1,"},
            {"webhook-signature": "v1,abc"},
            {"webhook-signature": "v1," + "A" * 43 + "B="},
            {"webhook-signature": "v1," + "A" * 44},
            {"webhook-signature": "v1a," + "A" * 43 + "="},
            {"webhook-signature": "v1 AAAA"},
            {"webhook-signature": "v2,AAAA  v1,AAAA"},
            {"webhook-signature": " ".join(["v2,AAAA"] * 17)},
        ],
    )
    def test_malformed_values_refused(
        self, secret: Secrets, change: dict[str, str]
    ) -> None:
        """Float times, ids with dots, and bad base64 are refused."""
        assert refused(self.verifier(secret), {**std(std_v1()), **change})

    def test_non_canonical_base64_refused(self, secret: Secrets) -> None:
        """A v1 or v1a whose last digit has padding bits set is refused."""
        private = Ed25519PrivateKey.generate()
        public = b64(private.public_key().public_bytes_raw())
        v1a = b64(private.sign(f"{MSG}.{NOW}.".encode() + BODY))
        v1 = std_v1().removeprefix("v1,")
        verifier = self.verifier(secret, STD_KEY, f"whpk_{public}")

        for sig in (f"v1,{v1}", f"v1a,{v1a}"):
            assert accepted(verifier, std(sig))
        for sig in (f"v1,{non_canonical(v1)}", f"v1a,{non_canonical(v1a)}"):
            assert "bytes in base64" in refused(verifier, std(sig))

    def test_replay_by_message_id(self, secret: Secrets) -> None:
        """The same message id re-signed later is still a replay."""
        verifier = self.verifier(secret, replay=ReplayCache(600))
        earlier = std(std_v1(stamp=NOW - 60), NOW - 60)

        assert accepted(verifier, earlier)
        reason = refused(verifier, std(std_v1()))
        assert "webhook-id already accepted" in reason

    @pytest.mark.parametrize(
        ("line", "message"),
        [
            ("whsk_" + b64(bytes(32)), "whsk_ private key"),
            ("whsec_not*base64", "not whsec_<base64>"),
            ("whpk_" + b64(bytes(31)), "whpk_<base64 of 32"),
        ],
    )
    def test_unusable_key_lines_are_config_errors(
        self, secret: Secrets, line: str, message: str
    ) -> None:
        """A key line that cannot be used fails closed, naming the line."""
        verifier = self.verifier(secret, STD_KEY, line)

        with pytest.raises(ConfigError, match=message) as caught:
            verifier.verify(req(std(std_v1())))
        assert "key 2 of secret 'webhook-secret'" in str(caught.value)
        assert line.split("_", 1)[1] not in str(caught.value)


class TestShopify:
    """X-Shopify-Hmac-SHA256 (or Shopify-Hmac-Sha256), base64."""

    @pytest.mark.parametrize("name", ["X-Shopify-Hmac-SHA256", "shopify-hmac-sha256"])
    def test_both_header_names(self, secret: Secrets, name: str) -> None:
        """The classic and the newer header name both verify."""
        webhook_id = "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"
        headers = {
            name: b64_mac(KEY, BODY),
            "X-Shopify-Webhook-Id": webhook_id,
            "X-Shopify-Topic": "orders/create",
            "X-Shopify-Shop-Domain": "example.myshopify.com",
        }
        identity = ShopifyVerifier(secret(KEY)).verify(req(headers))

        assert identity.subject == webhook_id
        assert identity.claims == {
            "webhook_id": webhook_id,
            "topic": "orders/create",
            "shop": "example.myshopify.com",
            "key_index": 0,
        }

    @pytest.mark.parametrize(
        "value",
        [
            hex_mac(KEY, BODY),
            b64_mac(KEY, BODY).rstrip("="),
            non_canonical(b64_mac(KEY, BODY)),
            base64.urlsafe_b64encode(bytes([0xFB] * 32)).decode(),
        ],
        ids=["hex", "unpadded", "non-canonical", "url-safe"],
    )
    def test_malformed_values_refused(self, secret: Secrets, value: str) -> None:
        """Hex, unpadded, non-canonical or URL-safe base64 is refused."""
        headers = {"X-Shopify-Hmac-SHA256": value}

        assert refused(ShopifyVerifier(secret(KEY)), headers)

    def test_replay_and_missing_id(self, secret: Secrets) -> None:
        """With a replay cache, a webhook id is required and used once."""
        verifier = ShopifyVerifier(secret(KEY), replay=ReplayCache(300))
        signed = {"X-Shopify-Hmac-SHA256": b64_mac(KEY, BODY)}
        with_id = {**signed, "X-Shopify-Webhook-Id": "w-1"}

        assert "header missing; replay" in refused(verifier, signed)
        assert accepted(verifier, with_id)
        assert "replay" in refused(verifier, with_id)


SCHEME_OPTIONS: dict[str, dict[str, Any]] = {
    "stripe": {"clock": clock()},
    "slack": {"clock": clock()},
    "standard-webhooks": {"clock": clock()},
}
SCHEME_KEYS = {"standard-webhooks": STD_KEY}
# The headers each verifier reads (GitHub's legacy one only with sha1).
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
SCHEME_HEADERS = [
    (scheme, name) for scheme, names in READ_HEADERS.items() for name in names
]
BIG_BODY = os.urandom(5 * 1024 * 1024)


def signed_for(scheme: str, body: bytes = BODY) -> dict[str, str]:
    """What ``sign`` sends for ``scheme`` with the test key, now."""
    return sign(scheme, SCHEME_KEYS.get(scheme, KEY), body, timestamp=NOW)


class TestEveryScheme:
    """Behaviour every verifier shares, checked through ``sign``."""

    @staticmethod
    def make(secret: Secrets | SecretFile, scheme: str) -> Verifier:
        if not isinstance(secret, SecretFile):
            secret = secret(SCHEME_KEYS.get(scheme, KEY))
        verifier: Verifier = SCHEMES[scheme](secret, **SCHEME_OPTIONS.get(scheme, {}))
        return verifier

    @pytest.mark.parametrize("scheme", sorted(SCHEMES))
    @pytest.mark.parametrize("body", [b"", BIG_BODY], ids=["empty", "5MiB"])
    def test_empty_and_huge_bodies(
        self, secret: Secrets, scheme: str, body: bytes
    ) -> None:
        """Empty and 5 MiB bodies verify; one more byte does not."""
        verifier = self.make(secret, scheme)
        headers = signed_for(scheme, body)

        assert verifier.verify(req(headers, body)).scheme == scheme
        assert refused(verifier, headers, body + b"\0")

    @pytest.mark.parametrize("scheme", sorted(SCHEMES))
    def test_header_names_in_any_case(self, secret: Secrets, scheme: str) -> None:
        """Upper- and lower-cased header names verify alike."""
        verifier = self.make(secret, scheme)

        for case in (str.upper, str.lower):
            headers = {case(k): v for k, v in signed_for(scheme).items()}
            assert verifier.verify(req(headers)).scheme == scheme

    @pytest.mark.parametrize(("scheme", "name"), SCHEME_HEADERS)
    def test_header_sent_twice_is_refused(
        self, secret: Secrets, scheme: str, name: str
    ) -> None:
        """The same valid header twice (joined with ", ") is refused."""
        headers = list(signed_for(scheme).items())
        headers.append((name.lower(), dict(headers)[name]))

        assert refused(self.make(secret, scheme), headers)

    @pytest.mark.parametrize(("scheme", "name"), SCHEME_HEADERS)
    @pytest.mark.parametrize("garbage", ["\xff\xfe\x00", "é" * 64, "sha256=\x85\x00"])
    def test_garbage_header_is_refused(
        self, secret: Secrets, scheme: str, name: str, garbage: str
    ) -> None:
        """Non-UTF-8 bytes (WSGI's latin-1 text) in any header: refused."""
        headers = {**signed_for(scheme), name: garbage}

        assert refused(self.make(secret, scheme), headers)

    @pytest.mark.parametrize("scheme", sorted(SCHEMES))
    def test_missing_headers_refused(self, secret: Secrets, scheme: str) -> None:
        """A request without any signature header is refused as missing."""
        assert "missing" in refused(self.make(secret, scheme), {})

    @pytest.mark.parametrize("scheme", sorted(SCHEMES))
    def test_missing_or_empty_secret_is_config_error(
        self, tmp_path: Path, scheme: str
    ) -> None:
        """No secret file, or a blank one, fails closed with ConfigError."""
        blank = tmp_path / "blank"
        blank.write_text("\n \n")

        for path in (tmp_path / "absent", blank):
            verifier = self.make(SecretFile(path), scheme)
            with pytest.raises(ConfigError, match=path.name):
                verifier.verify(req(signed_for(scheme)))

    def test_rotated_file_takes_effect(self, secret: Secrets) -> None:
        """Replacing the secret file swaps the key without a new verifier."""
        verifier = GitHubVerifier(secret(OLD_KEY))
        assert refused(verifier, github(KEY))

        new = verifier.secret.path.with_suffix(".new")
        new.write_text(f"{KEY}\n")
        new.replace(verifier.secret.path)
        assert accepted(verifier, github(KEY))

    def test_every_verifier_needs_the_body(self) -> None:
        """The middleware must buffer the body for every webhook scheme."""
        assert all(cls.needs_body for cls in SCHEMES.values())
        assert [cls.scheme for cls in SCHEMES.values()] == list(SCHEMES)


class TestSign:
    """Argument errors of the signer name what to change."""

    def test_unknown_scheme(self) -> None:
        """An unknown scheme lists the ones that exist."""
        with pytest.raises(ValueError, match="'jwt'; use one of github"):
            sign("jwt", KEY, BODY)

    def test_header_only_where_it_applies(self) -> None:
        """header names hmac's header and Standard Webhooks' prefix."""
        assert list(sign("hmac", KEY, BODY, header="X-Sig")) == ["X-Sig"]
        svix = sign("standard-webhooks", STD_KEY, BODY, header="svix")
        assert sorted(svix) == ["svix-id", "svix-signature", "svix-timestamp"]
        with pytest.raises(ValueError, match="fixed header names"):
            sign("github", KEY, BODY, header="X-Sig")

    @pytest.mark.parametrize("key", ["plain text!", "whsk_" + "A" * 10, "whpk_AAAA"])
    def test_bad_standard_webhooks_key(self, key: str) -> None:
        """A key that is neither whsec_ nor a usable whsk_ is refused."""
        with pytest.raises(ValueError, match="key"):
            sign("standard-webhooks", key, BODY)


class TestReplayCache:
    """Bounded, expiring, thread-safe memory of accepted deliveries."""

    def test_remembers_until_ttl(self) -> None:
        """A key is refused within ttl and accepted again after it."""
        now = [0.0]
        cache = ReplayCache(10, clock=lambda: now[0])

        assert cache.check_and_remember("a")
        assert not cache.check_and_remember("a")
        now[0] = 9.9
        assert not cache.check_and_remember("a")
        now[0] = 10.0
        assert cache.check_and_remember("a")

    def test_full_cache_fails_closed_and_logs(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """At max_entries new keys are refused: one warning, then info."""
        now = [0.0]
        cache = ReplayCache(10, clock=lambda: now[0], max_entries=2)
        caplog.set_level(logging.INFO, "faas_runtime.webhooks")

        assert cache.check_and_remember("a")
        now[0] = 5
        assert cache.check_and_remember("b")
        assert not cache.check_and_remember("c")
        assert not cache.check_and_remember("d")
        now[0] = 10
        assert cache.check_and_remember("c")
        assert [r.levelname for r in caplog.records] == ["WARNING", "INFO"]

    def test_threads_accept_each_key_once(self) -> None:
        """Racing threads get exactly one True per key."""
        cache = ReplayCache(60)
        wins: list[int] = []
        start = threading.Barrier(8)

        def run() -> None:
            start.wait()
            keys = [f"k{i}" for i in range(500)]
            wins.append(sum(cache.check_and_remember(key) for key in keys))

        threads = [threading.Thread(target=run) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sum(wins) == 500

    @pytest.mark.parametrize(("ttl", "size"), [(0, 10), (-1, 10), (10, 0)])
    def test_bad_settings(self, ttl: float, size: int) -> None:
        """A ttl or size that could protect nothing is a ConfigError."""
        with pytest.raises(ConfigError, match="replay cache"):
            ReplayCache(ttl, max_entries=size)


@pytest.fixture
def server(secret: Secrets) -> Iterator[str]:
    """A real waitress server whose app checks GitHub signatures."""
    verifier = GitHubVerifier(secret(KEY))

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        size = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(size)
        headers = Headers.from_environ(environ)
        try:
            identity = verifier.verify(AuthRequest("POST", "/", "", headers, body))
        except AuthError as exc:
            start_response(f"{exc.status} Refused", [])
            return [exc.reason.encode()]
        start_response("200 OK", [])
        return [identity.subject.encode()]

    instance: Any = waitress.create_server(app, host="127.0.0.1", port=0)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{instance.effective_port}"

    # Close the sockets from the server's own loop, so select() never sees
    # a descriptor closed under it; the loop ends when none are left.
    instance.trigger.pull_trigger(lambda: close_all(instance._map))
    thread.join(timeout=5)
    instance.task_dispatcher.shutdown()


class TestOverRealServer:
    """What waitress hands over: joined duplicates, raw bytes, big bodies."""

    def test_signed_delivery_over_http(self, server: str) -> None:
        """A signed 3 MiB delivery verifies after a real HTTP round trip."""
        body = os.urandom(3 * 1024 * 1024)
        headers = sign("github", KEY, body, msg_id="d-1")

        response = httpx.post(server, content=body, headers=headers)
        assert (response.status_code, response.text) == (200, "d-1")

    def test_duplicate_header_over_http_refused(self, server: str) -> None:
        """Two copies of a valid signature header are refused."""
        value = github(KEY)["X-Hub-Signature-256"]
        headers = [
            ("X-Hub-Signature-256", value),
            ("x-hub-signature-256", value),
        ]

        response = httpx.post(server, content=BODY, headers=headers)
        assert response.status_code == 401
        assert "sent more than once" in response.text

    def test_non_utf8_header_bytes_over_http_refused(self, server: str) -> None:
        """Raw non-UTF-8 bytes in the signature header are a plain 401."""
        value = b"sha256=\xff\xfe" + b"a" * 62
        headers = [(b"X-Hub-Signature-256", value)]

        response = httpx.post(server, content=BODY, headers=headers)
        assert response.status_code == 401
        assert "is not sha256=<hex>" in response.text
