"""HTTP Basic authentication (RFC 7617) against a secret file of users.

The secret file holds one user per line, split on the first colon (RFC
7617 §2: a user-id cannot contain one, a password can)::

    alice:correct horse battery staple
    bob:$scrypt$n=32768,r=8,p=1$<salt>$<hash>

A value that starts like ``$name$`` is a hash (see ``_passwords``); make
one with ``python -m faas_runtime._passwords --user bob``. Plain-text
passwords lose trailing spaces, as every line of a secret file is
stripped. User names and passwords are compared after Unicode NFC
normalisation, as RFC 7617 §2.1 asks when ``charset="UTF-8"`` is sent.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import os
import threading
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass

from ._bearer import quoted
from ._errors import ConfigError, Unauthorized
from ._passwords import PasswordHash, is_hashed, normalize
from ._secrets import SecretFile
from ._types import AuthRequest, Identity


@dataclass(frozen=True)
class _Entry:
    user: str
    user_digest: bytes
    # A parsed hash, or the SHA-256 of a plain-text password: both make
    # comparisons fixed-length, and the plain text is not kept around.
    password: PasswordHash | bytes
    # The encoded hash, part of the cache key: a changed hash forgets
    # what the old one verified.
    version: str


class _Verified:
    """Passwords that passed a slow hash check, as keyed digests only.

    The key is random per process, so the digests are useless outside
    it, and the plain password is never stored.
    """

    def __init__(self, size: int = 1024) -> None:
        self._key = os.urandom(32)
        self._size = size
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()

    def digest(self, *fields: str) -> bytes:
        """A keyed digest of ``fields``, each length-prefixed."""
        mac = hmac.new(self._key, digestmod=hashlib.sha256)
        for field in fields:
            raw = field.encode("utf-8")
            mac.update(len(raw).to_bytes(4, "big") + raw)
        return mac.digest()

    def __contains__(self, digest: bytes) -> bool:
        with self._lock:
            if digest not in self._seen:
                return False
            self._seen.move_to_end(digest)
            return True

    def add(self, digest: bytes) -> None:
        """Remember ``digest``, forgetting the least recently used."""
        with self._lock:
            self._seen[digest] = None
            self._seen.move_to_end(digest)
            while len(self._seen) > self._size:
                self._seen.popitem(last=False)


class BasicVerifier:
    """Accept requests whose Basic credentials match a secret file."""

    scheme = "basic"
    needs_body = False

    def __init__(self, users: SecretFile, *, realm: str = "Restricted") -> None:
        try:
            challenge = f'Basic realm={quoted(realm)}, charset="UTF-8"'
        except ValueError as exc:
            raise ConfigError(
                f"Basic realm {realm!r} {exc}; use printable text"
            ) from exc

        self.realm = realm
        self._users = users
        self._challenge = [("WWW-Authenticate", challenge)]
        self._cache: tuple[bytes, list[_Entry]] | None = None
        self._verified = _Verified()

    def verify(self, request: AuthRequest) -> Identity:
        """Return the user the credentials name, or refuse with a 401."""
        user, password = self._credentials(request)
        entries = self._entries()

        entry, user_ok = _find(entries, user)
        password_ok = self._password_ok(entry, password, user_ok)
        # '&', not 'and': both checks have already run in full, whatever
        # either found (an unknown user is checked against another
        # user's password, so it costs the same hash).
        if not (user_ok & password_ok):
            # An unknown name is not logged: people type passwords into it.
            known = f"wrong password for user {user!r}"
            raise self._refuse(known if user_ok else "unknown user")
        return Identity(scheme=self.scheme, subject=user)

    def _credentials(self, request: AuthRequest) -> tuple[str, str]:
        value = request.headers.get("Authorization")
        if value is None:
            raise self._refuse("no Authorization header")

        scheme, _, encoded = value.strip().partition(" ")
        # RFC 9110 §11.1: the scheme name is case-insensitive. The value is
        # not logged: without a scheme it may be a bare secret.
        if scheme.lower() != "basic":
            raise self._refuse("Authorization is not Basic")

        try:
            raw = binascii.a2b_base64(encoded.strip(), strict_mode=True)
            decoded = raw.decode("utf-8")
        except (ValueError, UnicodeError):
            raise self._refuse("credentials are not base64 of UTF-8") from None

        user, colon, password = decoded.partition(":")
        if not colon:
            raise self._refuse("credentials have no ':' after the user")
        if _has_control(decoded):
            # RFC 7617 §2: neither part may contain control characters.
            raise self._refuse("credentials contain control characters")
        return normalize(user), normalize(password)

    def _password_ok(self, entry: _Entry, password: str, user_ok: bool) -> bool:
        if isinstance(entry.password, bytes):
            presented = hashlib.sha256(password.encode("utf-8")).digest()
            return hmac.compare_digest(presented, entry.password)

        # A KDF is slow by design; only the first success per user,
        # password and hash pays for it.
        key = self._verified.digest(entry.user, password, entry.version)
        if user_ok and key in self._verified:
            return True

        verified = entry.password.verify(password)
        if verified and user_ok:
            self._verified.add(key)
        return verified

    def _entries(self) -> list[_Entry]:
        # SecretFile hands back the same bytes until the file changes, so
        # the file is parsed once per version, not once per request.
        data = self._users.read_bytes()
        cache = self._cache
        if cache is not None and cache[0] is data:
            return cache[1]

        entries = _parse(self._users.lines(), self._users.name)
        self._cache = (data, entries)
        return entries

    def _refuse(self, reason: str) -> Unauthorized:
        # RFC 9110 §15.5.2: every 401 carries a challenge.
        return Unauthorized(reason, headers=list(self._challenge))


def _find(entries: list[_Entry], user: str) -> tuple[_Entry, bool]:
    wanted = hashlib.sha256(user.encode("utf-8")).digest()
    # An unknown user is checked against a stand-in, preferably a hashed
    # one, so a wrong name costs the same KDF as a wrong password.
    hashed = [e for e in entries if isinstance(e.password, PasswordHash)]
    found, matched = (hashed or entries)[0], False
    for entry in entries:
        # Every entry is compared, in constant time, so timing tells
        # neither whether the user exists nor where it is in the file.
        if hmac.compare_digest(entry.user_digest, wanted):
            found, matched = entry, True
    return found, matched


def _parse(lines: list[str], secret: str) -> list[_Entry]:
    numbered = enumerate(lines, start=1)
    entries = [_entry(line, number, secret) for number, line in numbered]
    seen: set[str] = set()
    for entry in entries:
        if entry.user in seen:
            raise ConfigError(
                f"user {entry.user!r} appears twice in secret {secret!r}; "
                "keep one line per user"
            )
        seen.add(entry.user)
    return entries


def _entry(line: str, number: int, secret: str) -> _Entry:
    user, colon, password = line.partition(":")
    user = normalize(user)
    if not colon or not user or _has_control(user):
        raise ConfigError(
            f"entry {number} of secret {secret!r} is not 'user:password' "
            "with a non-empty user name free of control characters"
        )

    user_digest = hashlib.sha256(user.encode("utf-8")).digest()
    if is_hashed(password):
        parsed = _hash(password, user, secret)
        return _Entry(user, user_digest, parsed, password)

    if not password:
        raise ConfigError(
            f"user {user!r} in secret {secret!r} has an empty password; "
            "set one, or hash one with python -m faas_runtime._passwords"
        )
    plain = hashlib.sha256(normalize(password).encode("utf-8")).digest()
    return _Entry(user, user_digest, plain, "")


def _hash(encoded: str, user: str, secret: str) -> PasswordHash:
    try:
        return PasswordHash.parse(encoded)
    except ValueError as exc:
        # The message names the user, never the hash.
        raise ConfigError(
            f"the password hash of user {user!r} in secret {secret!r} is "
            f"malformed: {exc}; make a new one with python -m "
            f"faas_runtime._passwords --user {user}"
        ) from exc


def _has_control(text: str) -> bool:
    return any(unicodedata.category(char) == "Cc" for char in text)
