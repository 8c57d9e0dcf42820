"""Bearer tokens and API keys (RFC 6750), checked against a secret file.

The secret file holds one accepted token per line, so a new token can be
rolled out before the old one is removed::

    9f2c4e0b7d1a...                    a token as given to the caller
    sha256:3b7f0c...(64 hex digits)    the SHA-256 of a token
    ci-runner 9f2c4e0b7d1a...          a label, then a token or digest

Machine-made tokens carry enough entropy that SHA-256 is the right hash
at rest: a slow KDF would cost every request for no gain. A label is what
the function logs as the caller; without one the caller is named by the
first 12 hex digits of the token's digest, never by the token. A label is
logged, so never write two tokens on one line: the first would be taken
for a label.

Tokens use RFC 6750's b64token characters (letters, digits and
``-._~+/``, then optional ``=``), whichever way they are sent.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl

from ._errors import BadRequest, ConfigError, Unauthorized
from ._secrets import SecretFile
from ._types import AuthRequest, Identity

B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")

# RFC 9110 §5.6.2: a header name is a token.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

# RFC 9110 §5.6.4 quoted-string content: HTAB, SP, visible ASCII and
# obs-text; anything else (CR and LF above all) would break the header.
_QUOTABLE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")

# RFC 6750 §3: error and error_description exclude '"' and '\'.
_ERROR_TEXT = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")

_SHA256 = re.compile(r"sha256:([0-9a-fA-F]{64})")


def quoted(value: str) -> str:
    """Render ``value`` as an RFC 9110 quoted-string for a challenge."""
    if not _QUOTABLE.fullmatch(value):
        raise ValueError("contains control or non-Latin-1 characters")

    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def bearer_challenge(
    realm: str, error: str | None = None, description: str | None = None
) -> str:
    """The ``WWW-Authenticate`` value for a refused bearer request."""
    params = [f"realm={quoted(realm)}"]
    for name, value in (("error", error), ("error_description", description)):
        if value is None:
            continue
        if not _ERROR_TEXT.fullmatch(value):
            raise ValueError(f"{name} {value!r} has characters RFC 6750 bars")
        params.append(f"{name}={quoted(value)}")

    return "Bearer " + ", ".join(params)


def bearer_token(
    request: AuthRequest,
    *,
    realm: str,
    header: str | None = None,
    allow_query: bool = False,
) -> str:
    """The one token ``request`` carries, or the RFC 6750 §3.1 refusal."""
    found = _presented(request, header, allow_query)
    if not found:
        # §3.1: a request with no credentials gets no error code, so a
        # client cannot tell "forgot the token" from "token is wrong".
        raise Unauthorized(
            "no bearer token in the request",
            headers=[("WWW-Authenticate", bearer_challenge(realm))],
        )

    # §2: "Clients MUST NOT use more than one method to transmit the
    # token"; a header sent twice arrives joined with ", " and fails the
    # character check below.
    places = ", ".join(place for place, _ in found)
    if len(found) > 1:
        reason = f"token sent {len(found)} ways ({places})"
        raise _invalid_request(realm, reason)

    token = found[0][1]
    if not token:
        raise _invalid_request(realm, f"empty token in {places}")
    if not B64TOKEN.fullmatch(token):
        raise _invalid_request(realm, f"token in {places} is not a b64token")
    return token


def _presented(
    request: AuthRequest, header: str | None, allow_query: bool
) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []

    authorization = request.headers.get("Authorization")
    if authorization is not None:
        scheme, _, rest = authorization.strip().partition(" ")
        # RFC 9110 §11.1: auth scheme names are case-insensitive.
        if scheme.lower() == "bearer":
            found.append(("Authorization", rest.strip()))

    if header is not None and header in request.headers:
        found.append((header, request.headers[header].strip()))

    if allow_query:
        pairs = parse_qsl(request.query, keep_blank_values=True)
        found += [("query", v) for name, v in pairs if name == "access_token"]
    return found


def _invalid_request(realm: str, reason: str) -> BadRequest:
    challenge = bearer_challenge(realm, "invalid_request")
    return BadRequest(reason, headers=[("WWW-Authenticate", challenge)])


@dataclass(frozen=True)
class _Entry:
    digest: bytes
    subject: str


class BearerVerifier:
    """Accept requests whose bearer token or API key is in a secret file."""

    scheme = "bearer"
    needs_body = False

    def __init__(
        self,
        tokens: SecretFile,
        *,
        realm: str = "api",
        header: str | None = None,
        allow_query: bool = False,
    ) -> None:
        try:
            self._refusal = bearer_challenge(realm, "invalid_token")
        except ValueError as exc:
            raise ConfigError(
                f"bearer realm {realm!r} {exc}; use printable text"
            ) from exc
        if header is not None and (
            not _TOKEN.fullmatch(header) or header.lower() == "authorization"
        ):
            raise ConfigError(
                f"API key header {header!r} is not usable; name a header "
                "such as X-Api-Key (Authorization: Bearer is always read)"
            )

        self.realm = realm
        self.header = header
        self.allow_query = allow_query
        self._tokens = tokens
        self._cache: tuple[bytes, list[_Entry]] | None = None

    def verify(self, request: AuthRequest) -> Identity:
        """Return the caller named by the token's line, or refuse."""
        token = bearer_token(
            request,
            realm=self.realm,
            header=self.header,
            allow_query=self.allow_query,
        )
        entries = self._entries()
        digest = hashlib.sha256(token.encode("ascii")).digest()
        subject = _match(digest, entries)
        if subject is None:
            raise Unauthorized(
                f"token matches none of the {len(entries)} entries in "
                f"secret {self._tokens.name!r}",
                headers=[("WWW-Authenticate", self._refusal)],
            )
        return Identity(scheme=self.scheme, subject=subject)

    def _entries(self) -> list[_Entry]:
        # SecretFile hands back the same bytes until the file changes, so
        # the file is parsed once per version, not once per request.
        data = self._tokens.read_bytes()
        cache = self._cache
        if cache is not None and cache[0] is data:
            return cache[1]

        entries = [
            _entry(line, number, self._tokens.name)
            for number, line in enumerate(self._tokens.lines(), start=1)
        ]
        self._cache = (data, entries)
        return entries


def _match(digest: bytes, entries: list[_Entry]) -> str | None:
    subject = None
    for entry in entries:
        # Every entry is compared, in constant time, so the answer's
        # timing does not tell how many entries precede the match.
        if hmac.compare_digest(digest, entry.digest) and subject is None:
            subject = entry.subject
    return subject


def _entry(line: str, number: int, secret: str) -> _Entry:
    fields = line.split()
    if len(fields) > 2:
        raise ConfigError(
            f"entry {number} of secret {secret!r} has {len(fields)} fields; "
            "write TOKEN, sha256:<hex> or LABEL followed by one of them"
        )

    label = fields[0] if len(fields) == 2 else None
    if label is not None and not label.isprintable():
        raise ConfigError(
            f"the label of entry {number} in secret {secret!r} has control "
            "characters; use printable text"
        )

    digest = _digest(fields[-1], number, secret)
    return _Entry(digest, label or f"sha256:{digest.hex()[:12]}")


def _digest(value: str, number: int, secret: str) -> bytes:
    stored = _SHA256.fullmatch(value)
    if stored is not None:
        return bytes.fromhex(stored.group(1))

    if value.lower().startswith("sha256:"):
        raise ConfigError(
            f"entry {number} of secret {secret!r} starts with sha256: but "
            "is not followed by 64 hex digits; write sha256:<hex>"
        )
    if not B64TOKEN.fullmatch(value):
        raise ConfigError(
            f"the token of entry {number} in secret {secret!r} has characters "
            "no client can send (RFC 6750 b64token); generate a new one, e.g. "
            "openssl rand -hex 32"
        )
    return hashlib.sha256(value.encode("ascii")).digest()
