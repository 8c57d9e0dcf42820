"""Password hashes for Basic auth secret files, and a tool to make them.

Two encodings, in the PHC string style (fields separated by ``$``, salt and
hash in standard base64 without padding; padded input is accepted too)::

    $scrypt$n=<N>,r=<r>,p=<p>$<salt>$<hash>
    $pbkdf2-sha256$i=<iterations>$<salt>$<hash>

Both KDFs come with Python's ``hashlib``, so the runtime needs no extra
dependency. To print an entry for the secret file::

    python -m faas_runtime._passwords --user alice        # prompts twice
    echo 's3cret' | python -m faas_runtime._passwords     # reads stdin

Any value that starts like ``$name$`` is taken as a hash, so a pasted
argon2 or bcrypt hash is refused as unsupported instead of silently
becoming a plain-text password.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import getpass
import hashlib
import hmac
import os
import re
import sys
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from ._errors import ConfigError

SCHEMES = ("scrypt", "pbkdf2-sha256")
_KNOWN = ", ".join(SCHEMES)

# scrypt's cost as recommended for interactive logins (RFC 7914 §2 and
# OWASP's password storage cheat sheet): N=2**15, r=8, p=1 is about
# 32 MiB and 0.1 s per check.
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1

# OWASP's current figure for PBKDF2-HMAC-SHA256.
PBKDF2_ITERATIONS = 600_000

SALT_BYTES = 16
HASH_BYTES = 32

# Upper bounds keep a typo in a secret file from pinning a CPU or
# exhausting memory on every request: N=2**20 with r=8 already needs 1 GiB.
_MAX_SCRYPT_N = 2**20
_MAX_SCRYPT_R = 32
_MAX_SCRYPT_P = 16
_MAX_PBKDF2_ITERATIONS = 10_000_000

_LOOKS_HASHED = re.compile(r"\$[a-z0-9-]+\$")
_SCRYPT_PARAMS = re.compile(r"n=(\d+),r=(\d+),p=(\d+)")
_PBKDF2_PARAMS = re.compile(r"i=(\d+)")


def is_hashed(value: str) -> bool:
    """Tell whether a secret-file value is a hash rather than a password."""
    return _LOOKS_HASHED.match(value) is not None


def normalize(password: str) -> str:
    """Bring a password to the form that is hashed and compared.

    RFC 7617 §2.1 (charset="UTF-8") asks for the OpaqueString profile of
    RFC 8265, whose normalisation step is Unicode NFC: the same password
    typed on two keyboards must compare equal.
    """
    return unicodedata.normalize("NFC", password)


@dataclass(frozen=True)
class PasswordHash:
    """A parsed, checkable password hash from a secret file."""

    scheme: str
    params: tuple[int, ...]
    salt: bytes
    digest: bytes

    @classmethod
    def parse(cls, encoded: str) -> PasswordHash:
        """Read ``encoded``; raise ``ValueError`` saying what is wrong.

        The message never repeats the hash itself, so callers can put it
        in an error next to the user name.
        """
        parts = encoded.split("$")
        if len(parts) != 5 or parts[0]:
            raise ValueError("a hash reads $<scheme>$<params>$<salt>$<hash>")

        _, scheme, params, salt, digest = parts
        return cls(
            scheme=scheme,
            params=_parse_params(scheme, params),
            salt=_b64decode(salt, "salt"),
            digest=_b64decode(digest, "hash"),
        )

    def verify(self, password: str) -> bool:
        """Tell whether ``password`` is the one that was hashed."""
        text, size = normalize(password), len(self.digest)
        computed = _derive(self.scheme, text, self.salt, self.params, size)
        return hmac.compare_digest(computed, self.digest)

    def encode(self) -> str:
        """The one-line form written into secret files."""
        if self.scheme == "scrypt":
            n, r, p = self.params
            params = f"n={n},r={r},p={p}"
        else:
            params = f"i={self.params[0]}"
        return f"${self.scheme}${params}${_b64(self.salt)}${_b64(self.digest)}"


def hash_password(password: str, *, scheme: str = "scrypt") -> str:
    """Hash ``password`` with a fresh salt and return the encoded line."""
    if scheme not in SCHEMES:
        raise ValueError(
            f"unknown password hash scheme {scheme!r}; use one of {_KNOWN}"
        )

    params: tuple[int, ...] = (PBKDF2_ITERATIONS,)
    if scheme == "scrypt":
        params = (SCRYPT_N, SCRYPT_R, SCRYPT_P)
    salt = os.urandom(SALT_BYTES)
    digest = _derive(scheme, normalize(password), salt, params, HASH_BYTES)
    return PasswordHash(scheme, params, salt, digest).encode()


def verify_password(password: str, encoded: str) -> bool:
    """Check ``password`` against ``encoded``; ``ConfigError`` if malformed."""
    try:
        parsed = PasswordHash.parse(encoded)
    except ValueError as exc:
        raise ConfigError(
            f"malformed password hash: {exc}; make a new one with "
            "python -m faas_runtime._passwords"
        ) from exc
    return parsed.verify(password)


def _parse_params(scheme: str, text: str) -> tuple[int, ...]:
    if scheme == "scrypt":
        return _scrypt_params(text)
    if scheme == "pbkdf2-sha256":
        return _pbkdf2_params(text)
    raise ValueError(f"hash scheme {scheme!r} is not supported; use {_KNOWN}")


def _scrypt_params(text: str) -> tuple[int, ...]:
    match = _SCRYPT_PARAMS.fullmatch(text)
    if match is None:
        raise ValueError("scrypt parameters read n=<N>,r=<r>,p=<p>")

    n, r, p = (int(group) for group in match.groups())
    # hashlib.scrypt needs N to be a power of two greater than one.
    if n < 2 or n & (n - 1) or n > _MAX_SCRYPT_N:
        raise ValueError(f"scrypt n={n} is not a power of two up to 2**20")
    if not 1 <= r <= _MAX_SCRYPT_R or not 1 <= p <= _MAX_SCRYPT_P:
        raise ValueError(f"scrypt r={r}, p={p} are out of range")
    return (n, r, p)


def _pbkdf2_params(text: str) -> tuple[int, ...]:
    match = _PBKDF2_PARAMS.fullmatch(text)
    if match is None:
        raise ValueError("pbkdf2-sha256 parameters read i=<iterations>")

    iterations = int(match.group(1))
    if not 1 <= iterations <= _MAX_PBKDF2_ITERATIONS:
        raise ValueError(f"pbkdf2-sha256 i={iterations} is out of range")
    return (iterations,)


def _b64decode(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"the {what} is not base64") from exc
    if len(raw) < 16:
        raise ValueError(f"the {what} is shorter than 16 bytes")
    return raw


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii").rstrip("=")


def _derive(
    scheme: str, password: str, salt: bytes, params: tuple[int, ...], size: int
) -> bytes:
    secret = password.encode("utf-8")
    if scheme == "pbkdf2-sha256":
        return hashlib.pbkdf2_hmac("sha256", secret, salt, params[0], size)

    n, r, p = params
    # OpenSSL refuses anything above maxmem (32 MiB by default), and the
    # recommended N=2**15, r=8 needs slightly more: 128*r*(N+2) for V plus
    # 128*r*p for B, with room to spare.
    maxmem = 128 * r * (n + 2) + 128 * r * p + 2**20
    return hashlib.scrypt(
        secret,
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=maxmem,
        dklen=size,
    )


def _read_password() -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")

    first = getpass.getpass("Password: ")
    if getpass.getpass("Repeat password: ") != first:
        raise SystemExit("Error: the two passwords differ; run it again")
    return first


def main(argv: Sequence[str] | None = None) -> int:
    """Print a hashed entry for a Basic auth secret file."""
    parser = argparse.ArgumentParser(
        prog="python -m faas_runtime._passwords",
        description="Hash a password (read from stdin, or prompted for "
        "twice) for a Basic auth secret file.",
    )
    parser.add_argument("--scheme", choices=SCHEMES, default="scrypt")
    parser.add_argument(
        "--user", help="print 'USER:<hash>', ready to paste as one line"
    )
    args = parser.parse_args(argv)

    if args.user is not None and (":" in args.user or not args.user.strip()):
        parser.error(f"--user {args.user!r} must be non-empty without ':'")

    password = _read_password()
    if not password:
        parser.error("the password is empty; pipe one line or type one")
    if any(unicodedata.category(char) == "Cc" for char in password):
        # RFC 7617 §2 forbids control characters, so no client could
        # ever send this password.
        parser.error("the password contains control characters")

    encoded = hash_password(password, scheme=args.scheme)
    print(encoded if args.user is None else f"{args.user}:{encoded}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
