"""Bearer tokens and API keys (faas_runtime._bearer), per RFC 6750.

Stored digests are computed here with hashlib; the challenges are compared
with RFC 6750 §3's wording.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faas_runtime._bearer import BearerVerifier, bearer_challenge
from faas_runtime._errors import AuthError, BadRequest, ConfigError, Unauthorized
from faas_runtime._secrets import SecretFile
from faas_runtime._types import AuthRequest, Headers, Identity

TOKEN = "tok_3f9a1c2e8b7d6a5f4e3d2c1b0a9f8e7d"
OLD_TOKEN = "tok_old0123456789abcdef0123456789ab"
DIGEST = hashlib.sha256(TOKEN.encode()).hexdigest()

BARE = ("WWW-Authenticate", 'Bearer realm="api"')
INVALID_REQUEST = ("WWW-Authenticate", 'Bearer realm="api", error="invalid_request"')
INVALID_TOKEN = ("WWW-Authenticate", 'Bearer realm="api", error="invalid_token"')

Tokens = Callable[..., SecretFile]


@pytest.fixture
def tokens(tmp_path: Path) -> Tokens:
    """Write the given lines to the tokens secret file (replaced atomically)."""

    def write(*lines: str) -> SecretFile:
        path = tmp_path / "api-tokens"
        staged = tmp_path / "staged"
        staged.write_text("".join(f"{line}\n" for line in lines))
        os.replace(staged, path)
        return SecretFile(path)

    return write


def request(*headers: tuple[str, str], query: str = "") -> AuthRequest:
    """A GET carrying ``headers`` (repeats allowed) and ``query``."""
    return AuthRequest("GET", "/", query, Headers(list(headers)))


def bearer(token: str, scheme: str = "Bearer") -> tuple[str, str]:
    """An Authorization header carrying ``token``."""
    return ("Authorization", f"{scheme} {token}")


def refusal(verifier: BearerVerifier, req: AuthRequest) -> AuthError:
    """The AuthError that ``req`` causes (any other outcome fails)."""
    with pytest.raises(AuthError) as caught:
        verifier.verify(req)
    return caught.value


class TestRfc6750Rows:
    """One test per row of RFC 6750 §3.1's error mapping."""

    def test_no_credentials_is_a_bare_401(self, tokens: Tokens) -> None:
        """No token: 401 whose challenge has no error attribute."""
        error = refusal(BearerVerifier(tokens(TOKEN)), request())

        assert isinstance(error, Unauthorized)
        assert error.status == 401
        assert error.headers == [BARE]

    @pytest.mark.parametrize(
        ("headers", "query", "reason"),
        [
            ((("Authorization", "Bearer"),), "", "empty token"),
            ((("Authorization", "Bearer   "),), "", "empty token"),
            ((bearer("two words"),), "", "not a b64token"),
            ((bearer("t\u00f6ken"),), "", "not a b64token"),
            ((bearer('tok"en'),), "", "not a b64token"),
            ((bearer("abc==def"),), "", "not a b64token"),
            ((bearer(TOKEN), bearer(TOKEN)), "", "not a b64token"),
            ((bearer(TOKEN),), f"access_token={TOKEN}", "2 ways"),
            ((), f"access_token={TOKEN}&access_token={TOKEN}", "2 ways"),
            ((), "access_token=", "empty token in query"),
            ((), "access_token=a+b", "not a b64token"),
        ],
    )
    def test_malformed_requests_are_400_invalid_request(
        self,
        tokens: Tokens,
        headers: tuple[tuple[str, str], ...],
        query: str,
        reason: str,
    ) -> None:
        """Malformed credentials: 400 with error="invalid_request"."""
        verifier = BearerVerifier(tokens(TOKEN), allow_query=True)

        error = refusal(verifier, request(*headers, query=query))

        assert isinstance(error, BadRequest)
        assert error.status == 400
        assert error.headers == [INVALID_REQUEST]
        assert reason in error.reason

    def test_unknown_token_is_401_invalid_token(self, tokens: Tokens) -> None:
        """A well-formed token not in the file: 401 error="invalid_token"."""
        error = refusal(BearerVerifier(tokens(TOKEN)), request(bearer("nope")))

        assert isinstance(error, Unauthorized)
        assert error.headers == [INVALID_TOKEN]
        assert "nope" not in error.reason
        assert "1 entries in secret 'api-tokens'" in error.reason

    def test_known_token_is_accepted(self, tokens: Tokens) -> None:
        """A token listed in the file authenticates, named by its digest."""
        identity = BearerVerifier(tokens(TOKEN)).verify(request(bearer(TOKEN)))

        assert identity == Identity(scheme="bearer", subject=f"sha256:{DIGEST[:12]}")


class TestAccepts:
    @pytest.mark.parametrize("scheme", ["bearer", "BEARER", "bEaReR"])
    def test_scheme_name_is_case_insensitive(self, tokens: Tokens, scheme: str) -> None:
        """'Bearer' in any case selects the scheme (RFC 9110 §11.1)."""
        verifier = BearerVerifier(tokens(TOKEN))

        assert verifier.verify(request(bearer(TOKEN, scheme)))

    def test_b64token_with_padding(self, tokens: Tokens) -> None:
        """Tokens may use every b64token character and trailing '='."""
        token = "aZ09-._~+/xyz=="
        verifier = BearerVerifier(tokens(token))

        assert verifier.verify(request(bearer(token)))

    @pytest.mark.parametrize("case", [str.lower, str.upper])
    def test_hashed_lines(self, tokens: Tokens, case: Callable[[str], str]) -> None:
        """A 'sha256:<hex>' line accepts the token hashing to it."""
        verifier = BearerVerifier(tokens(f"sha256:{case(DIGEST)}"))

        identity = verifier.verify(request(bearer(TOKEN)))

        assert identity.subject == f"sha256:{DIGEST[:12]}"
        assert TOKEN not in identity.subject

    @pytest.mark.parametrize("stored", [TOKEN, f"sha256:{DIGEST}"])
    def test_labels_name_the_caller(self, tokens: Tokens, stored: str) -> None:
        """'LABEL TOKEN' and 'LABEL sha256:<hex>' report the label as subject."""
        verifier = BearerVerifier(tokens("ci-runner " + stored, "other " + OLD_TOKEN))

        assert verifier.verify(request(bearer(TOKEN))).subject == "ci-runner"
        assert verifier.verify(request(bearer(OLD_TOKEN))).subject == "other"

    def test_rotation_with_two_lines(self, tokens: Tokens) -> None:
        """Old and new token both work until the old line is removed."""
        verifier = BearerVerifier(tokens(OLD_TOKEN, TOKEN))
        assert verifier.verify(request(bearer(OLD_TOKEN)))
        assert verifier.verify(request(bearer(TOKEN)))

        tokens(TOKEN)

        assert verifier.verify(request(bearer(TOKEN)))
        assert refusal(verifier, request(bearer(OLD_TOKEN))).status == 401


class TestApiKeyHeader:
    @pytest.mark.parametrize("name", ["X-Api-Key", "x-api-key", "X-API-KEY"])
    def test_raw_key_in_the_configured_header(self, tokens: Tokens, name: str) -> None:
        """With header="X-Api-Key" the header carries the bare key."""
        verifier = BearerVerifier(tokens(f"ops {TOKEN}"), header="X-Api-Key")

        assert verifier.verify(request((name, TOKEN))).subject == "ops"

    def test_authorization_bearer_still_works(self, tokens: Tokens) -> None:
        """Setting a key header does not turn off Authorization: Bearer."""
        verifier = BearerVerifier(tokens(TOKEN), header="X-Api-Key")

        assert verifier.verify(request(bearer(TOKEN)))

    def test_key_in_both_places_is_a_400(self, tokens: Tokens) -> None:
        """A key in the header and a Bearer token is one token too many."""
        verifier = BearerVerifier(tokens(TOKEN), header="X-Api-Key")

        error = refusal(verifier, request(bearer(TOKEN), ("X-Api-Key", TOKEN)))

        assert error.status == 400
        assert "Authorization, X-Api-Key" in error.reason

    def test_other_authorization_schemes_are_left_alone(self, tokens: Tokens) -> None:
        """A Basic Authorization header does not clash with the key header."""
        verifier = BearerVerifier(tokens(TOKEN), header="X-Api-Key")

        req = request(("Authorization", "Basic YTpi"), ("X-Api-Key", TOKEN))

        assert verifier.verify(req)

    def test_unknown_key_gets_the_bearer_challenge(self, tokens: Tokens) -> None:
        """A wrong API key answers with RFC 6750's invalid_token."""
        verifier = BearerVerifier(tokens(TOKEN), header="X-Api-Key")

        error = refusal(verifier, request(("X-Api-Key", "wrong")))

        assert error.headers == [INVALID_TOKEN]


class TestQueryParameter:
    def test_query_is_ignored_unless_enabled(self, tokens: Tokens) -> None:
        """By default ?access_token= counts as no credentials at all."""
        verifier = BearerVerifier(tokens(TOKEN))

        error = refusal(verifier, request(query=f"access_token={TOKEN}"))

        assert error.status == 401
        assert error.headers == [BARE]

    def test_query_works_when_enabled(self, tokens: Tokens) -> None:
        """With allow_query the token may come as ?access_token= (RFC 6750 §2.3)."""
        verifier = BearerVerifier(tokens(TOKEN), allow_query=True)

        req = request(query=f"a=1&access_token={TOKEN}&b=2")

        assert verifier.verify(req)

    def test_query_token_is_percent_decoded(self, tokens: Tokens) -> None:
        """'+' and '/' arrive form-encoded in the query (RFC 6750 §2.3)."""
        verifier = BearerVerifier(tokens("a+b/c="), allow_query=True)

        assert verifier.verify(request(query="access_token=a%2Bb%2Fc%3D"))


class TestChallenge:
    def test_rfc_6750_example(self) -> None:
        """The §3 example challenge is rendered exactly."""
        value = bearer_challenge("example", "invalid_token", "The access token expired")

        assert value == (
            'Bearer realm="example", error="invalid_token", '
            'error_description="The access token expired"'
        )

    def test_realm_is_escaped(self) -> None:
        """Quotes and backslashes in the realm are escaped; spaces are kept."""
        value = bearer_challenge('IAM "function" \\ invoke')

        assert value == 'Bearer realm="IAM \\"function\\" \\\\ invoke"'

    @pytest.mark.parametrize(
        ("realm", "error", "description"),
        [
            ("x\r\ny", None, None),
            ("api", 'bad"code', None),
            ("api", None, "back\\slash"),
            ("api", None, "caf\u00e9"),
        ],
    )
    def test_unrepresentable_values_are_refused(
        self, realm: str, error: str | None, description: str | None
    ) -> None:
        """Values RFC 6750 §3 or a header cannot carry raise ValueError."""
        with pytest.raises(ValueError, match="characters"):
            bearer_challenge(realm, error, description)


class TestConfiguration:
    @pytest.mark.parametrize(
        ("lines", "complaint"),
        [
            (("a b c",), "entry 1 of secret 'api-tokens' has 3 fields"),
            ((TOKEN, "sha256:abc"), "entry 2 of secret 'api-tokens' starts with"),
            (("label sha256:" + "g" * 64,), "64 hex digits"),
            (("t\u00f6ken",), "b64token"),
            (("la\x1bbel " + TOKEN,), "label of entry 1"),
        ],
    )
    def test_unusable_lines_are_config_errors(
        self, tokens: Tokens, lines: tuple[str, ...], complaint: str
    ) -> None:
        """A bad tokens file fails closed with the entry number, not the value."""
        verifier = BearerVerifier(tokens(*lines))

        with pytest.raises(ConfigError) as caught:
            verifier.verify(request(bearer(TOKEN)))

        assert complaint in str(caught.value)
        assert TOKEN not in str(caught.value)

    @pytest.mark.parametrize("header", ["Authorization", "X Api Key", ""])
    def test_unusable_key_header_is_refused(self, tokens: Tokens, header: str) -> None:
        """The key header must be a header name other than Authorization."""
        with pytest.raises(ConfigError, match="header"):
            BearerVerifier(tokens(TOKEN), header=header)

    def test_realm_with_a_line_break_is_refused(self, tokens: Tokens) -> None:
        """A realm that would split the header is a ConfigError at start-up."""
        with pytest.raises(ConfigError, match="realm"):
            BearerVerifier(tokens(TOKEN), realm="api\nX: y")


def attempt(verifier: BearerVerifier, req: AuthRequest) -> Identity | AuthError:
    """Verify ``req``; return the identity or the refusal."""
    try:
        return verifier.verify(req)
    except AuthError as exc:
        return exc


PROPERTY_SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


class TestParsingProperties:
    @PROPERTY_SETTINGS
    @given(value=st.text())
    def test_any_authorization_is_an_identity_or_an_auth_error(
        self, tokens: Tokens, value: str
    ) -> None:
        """Whatever Authorization holds, the answer is an Identity or AuthError."""
        verifier = BearerVerifier(tokens(TOKEN))

        outcome = attempt(verifier, request(("Authorization", value)))

        assert isinstance(outcome, Identity | AuthError)
        if isinstance(outcome, Identity):
            assert value.strip().split()[-1] == TOKEN

    @PROPERTY_SETTINGS
    @given(
        token=st.text(alphabet=st.characters(codec="latin-1")),
        key=st.none() | st.text(),
        query=st.text(),
    )
    def test_any_combination_is_an_identity_or_an_auth_error(
        self, tokens: Tokens, token: str, key: str | None, query: str
    ) -> None:
        """Header, key header and query together never raise anything else."""
        verifier = BearerVerifier(tokens(TOKEN), header="X-Api-Key", allow_query=True)
        headers = [bearer(token)] + ([] if key is None else [("X-Api-Key", key)])

        outcome = attempt(verifier, request(*headers, query=query))

        assert isinstance(outcome, Identity | AuthError)


HANDLER = """
def handle(event, context):
    return {"statusCode": 200, "body": f"hello {event.auth.subject}"}
"""


def test_a_real_function_answers_per_rfc_6750(
    function_process: Callable[..., Any],
) -> None:
    """Through waitress: bare 401, 400 invalid_request, then 200 for the key."""
    fn = function_process(HANDLER)
    fn.write_secret("api-tokens", f"ci {TOKEN}\n")
    fn.start(auth_scheme="bearer", auth_header="X-Api-Key")

    missing = httpx.get(fn.url)
    malformed = httpx.get(fn.url, headers={"Authorization": "Bearer a b"})
    admitted = httpx.get(fn.url, headers={"X-Api-Key": TOKEN})

    assert (missing.status_code, missing.headers["WWW-Authenticate"]) == (401, BARE[1])
    assert malformed.status_code == 400
    assert malformed.headers["WWW-Authenticate"] == INVALID_REQUEST[1]
    assert (admitted.status_code, admitted.text) == (200, "hello ci")
