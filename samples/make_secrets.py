"""Create local values for the sample functions' secrets, and tokens to try.

Only the secrets the samples in stack.yml declare are made, only when
missing, and each one is announced with its path: secrets of your own
functions are yours to create (faas-cli's convention: .secrets/<name>).

    python samples/make_secrets.py            # create what is missing
    python samples/make_secrets.py --token    # print a JWT for jwt-api
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import sys
import time
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

ROOT = Path(__file__).resolve().parents[1]
SECRETS = ROOT / ".secrets"
SIGNING_KEY = ROOT / ".localfaas" / "samples" / "jwt-signing-key.pem"
ISSUER = "https://issuer.localfaas.test"
AUDIENCE = "jwt-api"


def _write(path: Path, value: bytes) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(value)


def _signing_key() -> ec.EllipticCurvePrivateKey:
    if not SIGNING_KEY.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write(SIGNING_KEY, pem)
        print(f"made the sample JWT signing key: {SIGNING_KEY}", file=sys.stderr)
    loaded = serialization.load_pem_private_key(SIGNING_KEY.read_bytes(), None)
    assert isinstance(loaded, ec.EllipticCurvePrivateKey)
    return loaded


def _public_pem() -> bytes:
    return (
        _signing_key()
        .public_key()
        .public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )
    )


def _values() -> dict[str, bytes]:
    whsec = base64.b64encode(secrets.token_bytes(32)).decode()
    return {
        "github-webhook-secret": secrets.token_hex(20).encode(),
        "payload-secret": secrets.token_urlsafe(24).encode(),
        "webhook-secret": f"whsec_{whsec}".encode(),
        "portal-users": f"demo:{secrets.token_urlsafe(12)}\n".encode(),
        "api-tokens": f"demo {secrets.token_urlsafe(32)}\n".encode(),
    }


def make_missing() -> list[Path]:
    """Create each sample secret that does not exist yet."""
    made = []
    for name, value in _values().items():
        path = SECRETS / name
        if not path.exists():
            _write(path, value)
            made.append(path)
    public = SECRETS / "jwt-public-key"
    if not public.exists():
        _write(public, _public_pem())
        made.append(public)
    return made


def token(subject: str = "demo", lifetime: int = 3600) -> str:
    """A JWT that the jwt-api sample accepts, signed with the sample key."""
    now = int(time.time())
    claims = {
        "sub": subject,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + lifetime,
        "scope": "read",
    }
    return jwt.encode(claims, _signing_key(), algorithm="ES256")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--token", action="store_true", help="print a JWT")
    args = parser.parse_args()
    if args.token:
        print(token())
        return

    made = make_missing()
    for path in made:
        print(f"made a local value for the sample secret: {path}", file=sys.stderr)
    if not made:
        print(f"sample secrets already present in {SECRETS}", file=sys.stderr)


if __name__ == "__main__":
    main()
