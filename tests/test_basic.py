"""HTTP Basic authentication (faas_runtime._basic), per RFC 7617.

Credentials are built here with base64 by hand or taken from RFC 7617's
own examples.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faas_runtime._basic import BasicVerifier
from faas_runtime._errors import AuthError, ConfigError, Unauthorized
from faas_runtime._passwords import PasswordHash, hash_password
from faas_runtime._secrets import SecretFile
from faas_runtime._types import AuthRequest, Headers, Identity

CHALLENGE = ("WWW-Authenticate", 'Basic realm="Restricted", charset="UTF-8"')

Users = Callable[..., SecretFile]


@pytest.fixture
def users(tmp_path: Path) -> Users:
    """Write the given lines to a users secret file (replaced atomically)."""

    def write(*lines: str) -> SecretFile:
        path = tmp_path / "basic-auth-users"
        staged = tmp_path / "staged"
        staged.write_text("".join(f"{line}\n" for line in lines), "utf-8")
        os.replace(staged, path)
        return SecretFile(path)

    return write


def basic(user: str, password: str, scheme: str = "Basic") -> str:
    """An Authorization value for ``user`` and ``password`` as UTF-8."""
    raw = f"{user}:{password}".encode()
    return f"{scheme} {base64.b64encode(raw).decode()}"


def request(*authorization: str) -> AuthRequest:
    """A GET with the given Authorization header(s), each sent as a line."""
    pairs = [("Authorization", value) for value in authorization]
    return AuthRequest("GET", "/", "", Headers(pairs))


def refusal(verifier: BasicVerifier, req: AuthRequest) -> Unauthorized:
    """The Unauthorized that ``req`` causes (any other outcome fails)."""
    with pytest.raises(Unauthorized) as caught:
        verifier.verify(req)
    return caught.value


class TestAccepts:
    def test_rfc_7617_example(self, users: Users) -> None:
        """RFC 7617 §2's Aladdin / open sesame header is accepted."""
        verifier = BasicVerifier(users("Aladdin:open sesame"))

        identity = verifier.verify(request("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="))

        assert identity == Identity(scheme="basic", subject="Aladdin")

    def test_rfc_7617_utf8_example(self, users: Users) -> None:
        """RFC 7617 §2.1's 'test' / '123£' arrives as dGVzdDoxMjPCow==."""
        verifier = BasicVerifier(users("test:123\u00a3"))

        identity = verifier.verify(request("Basic dGVzdDoxMjPCow=="))

        assert identity.subject == "test"

    @pytest.mark.parametrize("scheme", ["basic", "BASIC", "bAsIc"])
    def test_scheme_name_is_case_insensitive(self, users: Users, scheme: str) -> None:
        """'basic' in any case selects the scheme (RFC 9110 §11.1)."""
        verifier = BasicVerifier(users("alice:wonderland"))

        identity = verifier.verify(request(basic("alice", "wonderland", scheme)))

        assert identity.subject == "alice"

    def test_utf8_user_names(self, users: Users) -> None:
        """Non-ASCII user names work and are reported as typed."""
        verifier = BasicVerifier(
            users("J\u00fcrgen:gr\u00fc\u00df dich", "\u674e:\u5bc6")
        )

        assert verifier.verify(request(basic("J\u00fcrgen", "gr\u00fc\u00df dich")))
        assert verifier.verify(request(basic("\u674e", "\u5bc6"))).subject == "\u674e"

    def test_names_compare_after_nfc_normalisation(self, users: Users) -> None:
        """A decomposed 'ü' from the client matches the precomposed file entry."""
        verifier = BasicVerifier(users("J\u00fcrgen:pw"))

        identity = verifier.verify(request(basic("Ju\u0308rgen", "pw")))

        assert identity.subject == "J\u00fcrgen"

    def test_colons_belong_to_the_password(self, users: Users) -> None:
        """Both file and header split on the first colon only."""
        verifier = BasicVerifier(users("alice:pa:ss:word"))

        assert verifier.verify(request(basic("alice", "pa:ss:word")))
        refusal(verifier, request(basic("alice", "pa")))

    def test_several_users(self, users: Users) -> None:
        """Each line is one user, each with their own password."""
        verifier = BasicVerifier(users("alice:one", "bob:two"))

        assert verifier.verify(request(basic("bob", "two"))).subject == "bob"
        refusal(verifier, request(basic("bob", "one")))

    def test_a_changed_file_takes_effect(self, users: Users) -> None:
        """Rewriting the secret file rotates the password without a restart."""
        secret = users("alice:old")
        verifier = BasicVerifier(secret)
        assert verifier.verify(request(basic("alice", "old")))

        users("alice:new-and-longer")

        assert verifier.verify(request(basic("alice", "new-and-longer")))
        refusal(verifier, request(basic("alice", "old")))


class TestHashedEntries:
    @pytest.mark.parametrize("scheme", ["scrypt", "pbkdf2-sha256"])
    def test_hashed_password_accepts_only_its_password(
        self, users: Users, scheme: str
    ) -> None:
        """A 'user:<hash>' line checks the password against the hash."""
        verifier = BasicVerifier(users(f"bob:{hash_password('b0b', scheme=scheme)}"))

        assert verifier.verify(request(basic("bob", "b0b"))).subject == "bob"
        refusal(verifier, request(basic("bob", "b0b!")))

    def test_only_the_first_success_pays_for_the_kdf(
        self, users: Users, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A verified password is remembered; a wrong one is checked each time."""
        calls = count_kdf_calls(monkeypatch)
        verifier = BasicVerifier(users(f"bob:{hash_password('b0b')}"))

        for _ in range(3):
            verifier.verify(request(basic("bob", "b0b")))
        assert len(calls) == 1

        for _ in range(2):
            refusal(verifier, request(basic("bob", "wrong")))
        assert len(calls) == 3

    def test_a_new_hash_forgets_earlier_successes(
        self, users: Users, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """After the hash changes, the password is checked against the new one."""
        calls = count_kdf_calls(monkeypatch)
        verifier = BasicVerifier(users(f"bob:{hash_password('b0b')}"))
        verifier.verify(request(basic("bob", "b0b")))

        users(f"bob:{hash_password('other')}")

        refusal(verifier, request(basic("bob", "b0b")))
        assert len(calls) == 2

    def test_unknown_user_costs_a_hash_too(
        self, users: Users, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An unknown name is checked against a stand-in hash, then refused."""
        calls = count_kdf_calls(monkeypatch)
        verifier = BasicVerifier(users("plain:text", f"bob:{hash_password('b0b')}"))

        error = refusal(verifier, request(basic("mallory", "b0b")))

        assert len(calls) == 1
        assert error.reason == "unknown user"

    def test_the_cache_keeps_no_password(
        self, users: Users, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """What the verifier remembers contains neither password nor user."""
        verifier = BasicVerifier(users(f"bob:{hash_password('b0b-s3cret')}"))
        verifier.verify(request(basic("bob", "b0b-s3cret")))

        remembered = b"".join(verifier._verified._seen)
        assert len(remembered) == 32
        assert b"b0b-s3cret" not in remembered


def count_kdf_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record each call of the real PasswordHash.verify."""
    calls: list[str] = []
    real = PasswordHash.verify

    def spy(self: PasswordHash, password: str) -> bool:
        calls.append(self.scheme)
        return real(self, password)

    monkeypatch.setattr(PasswordHash, "verify", spy)
    return calls


class TestRefuses:
    @pytest.mark.parametrize(
        ("authorization", "reason"),
        [
            ((), "no Authorization header"),
            ((basic("alice", "wrong"),), "wrong password for user 'alice'"),
            ((basic("mallory", "wonderland"),), "unknown user"),
            ((basic("Alice", "wonderland"),), "unknown user"),
            ((basic("alice", ""),), "wrong password"),
            (("Basic",), "no ':'"),
            (("Basic !!!notbase64",), "not base64"),
            (("Basic YWxpY2U6d29uZGVybGFuZA",), "not base64"),
            (("Basic " + base64.b64encode(b"alice:\xff").decode(),), "UTF-8"),
            (("Basic " + base64.b64encode(b"alice").decode(),), "no ':'"),
            ((basic("alice", "wonder\nland"),), "control characters"),
            ((basic("al\x00ice", "wonderland"),), "control characters"),
            (("Bearer YWxpY2U6d29uZGVybGFuZA==",), "not Basic"),
            (("YWxpY2U6d29uZGVybGFuZA==",), "not Basic"),
            (("Basic\tYWxpY2U6d29uZGVybGFuZA==",), "not Basic"),
            (
                (basic("alice", "wonderland"), basic("alice", "wonderland")),
                "not base64",
            ),
        ],
    )
    def test_every_401_carries_the_challenge(
        self, users: Users, authorization: tuple[str, ...], reason: str
    ) -> None:
        """Each refusal is a 401 with the Basic challenge (RFC 9110 §15.5.2)."""
        verifier = BasicVerifier(users("alice:wonderland"))

        error = refusal(verifier, request(*authorization))

        assert error.status == 401
        assert error.headers == [CHALLENGE]
        assert reason in error.reason

    def test_reasons_never_contain_the_password(self, users: Users) -> None:
        """The logged reason names a known user but never a password."""
        verifier = BasicVerifier(users("alice:wonderland"))

        error = refusal(verifier, request(basic("alice", "guess-1234")))

        assert "guess-1234" not in error.reason

    def test_realm_is_quoted(self, users: Users) -> None:
        """A realm with quotes and backslashes is escaped (RFC 9110 §5.6.4)."""
        verifier = BasicVerifier(users("a:b"), realm='My "app" \\ admin')

        error = refusal(verifier, request())

        assert error.headers == [
            (
                "WWW-Authenticate",
                'Basic realm="My \\"app\\" \\\\ admin", charset="UTF-8"',
            )
        ]


class TestConfiguration:
    @pytest.mark.parametrize(
        ("lines", "complaint"),
        [
            (("alice",), "entry 1 of secret 'basic-auth-users'"),
            (("ok:fine", ":nouser"), "entry 2"),
            (("alice:",), "user 'alice' in secret 'basic-auth-users' has an empty"),
            (("alice:a", "alice:b"), "user 'alice' appears twice"),
            (("bob:$argon2id$v=19$m=1$c2FsdA$aGFzaA",), "user 'bob'"),
            (("bob:$scrypt$n=3,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAA",), "power of two"),
        ],
    )
    def test_unusable_files_are_config_errors(
        self, users: Users, lines: tuple[str, ...], complaint: str
    ) -> None:
        """A bad users file fails every request with a message naming the entry."""
        verifier = BasicVerifier(users(*lines))

        with pytest.raises(ConfigError) as caught:
            verifier.verify(request(basic("alice", "a")))

        assert complaint in str(caught.value)
        assert "AAAAAAAAAAAAAAAA" not in str(caught.value)

    def test_missing_file_is_a_config_error(self, tmp_path: Path) -> None:
        """A users secret that does not exist fails closed with a 500."""
        verifier = BasicVerifier(SecretFile(tmp_path / "nope"))

        with pytest.raises(ConfigError, match="nope"):
            verifier.verify(request(basic("alice", "a")))

    def test_realm_with_a_line_break_is_refused(self, users: Users) -> None:
        """A realm that would split the header is a ConfigError at start-up."""
        with pytest.raises(ConfigError, match="realm"):
            BasicVerifier(users("a:b"), realm="x\r\nSet-Cookie: y")


class TestParsingProperties:
    @settings(
        max_examples=300,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(value=st.text())
    def test_any_header_is_an_identity_or_an_auth_error(
        self, users: Users, value: str
    ) -> None:
        """Whatever the header holds, the answer is an Identity or AuthError."""
        outcome = attempt(BasicVerifier(users("alice:wonderland")), value)

        assert isinstance(outcome, Identity | AuthError)

    @settings(
        max_examples=300,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(raw=st.binary(), scheme=st.sampled_from(["Basic", "basic", "BASIC"]))
    def test_any_decoded_credentials_are_handled(
        self, users: Users, raw: bytes, scheme: str
    ) -> None:
        """Any bytes behind valid base64 give an Identity or an AuthError."""
        value = f"{scheme} {base64.b64encode(raw).decode()}"

        outcome = attempt(BasicVerifier(users("alice:wonderland")), value)

        assert isinstance(outcome, Identity | AuthError)
        if isinstance(outcome, Identity):
            assert raw == b"alice:wonderland"


def attempt(verifier: BasicVerifier, value: str) -> Identity | AuthError:
    """Verify one Authorization value; return the identity or the refusal."""
    try:
        return verifier.verify(request(value))
    except AuthError as exc:
        return exc


HANDLER = """
def handle(event, context):
    return {"statusCode": 200, "body": f"hello {event.auth.subject}"}
"""


def test_a_real_function_challenges_and_admits(
    function_process: Callable[..., Any],
) -> None:
    """Through waitress: 401 with the challenge, then 200 for the user."""
    fn = function_process(HANDLER)
    fn.write_secret("basic-auth-users", f"alice:{hash_password('s3cret')}\n")
    fn.start(auth_scheme="basic")

    refused = httpx.get(fn.url, auth=("alice", "nope"))
    admitted = httpx.get(fn.url, auth=("alice", "s3cret"))

    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == CHALLENGE[1]
    assert admitted.status_code == 200
    assert admitted.text == "hello alice"
