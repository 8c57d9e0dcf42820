"""The gateway's TLS certificates: a local CA and a server certificate.

OpenFaaS asks for HTTPS whenever traffic leaves a trusted network
(auth-guidance.md), so ``localfaas up --tls`` serves the gateway over TLS
with certificates it makes itself. The gateway's uvicorn server
(:class:`~localfaas.fastpath.GatewayServer`) loads ``cert.pem`` and
``key.pem`` from the :class:`TlsFiles` made here; clients trust ``ca.pem``,
and ``localfaas`` commands do so by themselves.

:func:`ensure_certificates` keeps a local CA (EC P-256, ten years,
``basicConstraints CA``) and a server certificate signed by it for the
host names and addresses the gateway is reached by, always including
``localhost``, ``127.0.0.1`` and ``::1``. Both are reused across runs;
the server certificate is made again when the names change, when it
expires within 30 days, or when it no longer matches the CA. Private
keys are 0600 in a 0700 folder, by default
``~/.local/share/localfaas/tls/`` (outside any project, so a key is
never committed and one CA serves every project).
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import ipaddress
import logging
import os
import re
import socket
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from localfaas.errors import ConfigurationError

__all__ = [
    "TlsFiles",
    "default_tls_dir",
    "ensure_certificates",
]

logger = logging.getLogger("localfaas.tls")

# Always in the certificate: the names a browser or curl uses on this host.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")

_CA_DAYS = 3650
# Within the 398 days that browsers and Apple platforms accept for server
# certificates, so the local CA's leaf is not refused for its lifetime.
_LEAF_DAYS = 397
# Made again this long before it expires, so a running week never spans it.
_RENEW_BEFORE = datetime.timedelta(days=30)
# A little backdating absorbs clock skew between this host and a client.
_BACKDATE = datetime.timedelta(hours=1)

_DNS_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


@dataclass(frozen=True)
class TlsFiles:
    """Where the CA certificate, server certificate and server key are."""

    ca: Path
    cert: Path
    key: Path


def default_tls_dir() -> Path:
    """``$XDG_DATA_HOME/localfaas/tls``, else ``~/.local/share/localfaas/tls``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "localfaas" / "tls"


def ensure_certificates(
    folder: Path,
    hosts: Iterable[str],
    *,
    now: datetime.datetime | None = None,
) -> TlsFiles:
    """Make or reuse the local CA and a server certificate for ``hosts``.

    ``hosts`` are DNS names or IP addresses the gateway is reached by; an
    unspecified bind address (``0.0.0.0``, ``::``) adds this machine's host
    name instead. ``now`` is for tests that need a later date.
    """
    moment = now or datetime.datetime.now(datetime.UTC)
    names = subject_names(hosts)
    files = TlsFiles(folder / "ca.pem", folder / "cert.pem", folder / "key.pem")
    ca_key_file = folder / "ca-key.pem"

    _make_private_folder(folder)
    # Two "up --tls" starting together must not pair one's key with the
    # other's certificate.
    with _locked(folder / ".lock"):
        ca = _load_ca(files.ca, ca_key_file, moment)
        if ca is None:
            ca = _new_ca(moment)
            _write(ca_key_file, _key_pem(ca[1]), private=True)
            _write(files.ca, _cert_pem(ca[0]), private=False)
            logger.info("created a local CA at %s", files.ca)

        if not _leaf_usable(files, ca[0], names, moment):
            leaf, key = _new_leaf(ca, names, moment)
            _write(files.key, _key_pem(key), private=True)
            _write(files.cert, _cert_pem(leaf), private=False)
            logger.info("created a server certificate for %s", ", ".join(names))
    return files


def subject_names(hosts: Iterable[str]) -> list[str]:
    """The certificate's names: ``hosts`` checked, plus the loopback names."""
    names: list[str] = []
    for host in [*hosts, *LOOPBACK_NAMES]:
        for name in _names_for(host):
            if name not in names:
                names.append(name)
    return names


# --- the CA and the leaf ---------------------------------------------------


def _names_for(host: str) -> list[str]:
    """One host as certificate names; a wildcard bind means this machine."""
    text = host.strip().strip("[]").lower()
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return [_dns_name(text, host)]

    if address.is_unspecified:
        machine = socket.gethostname().lower()
        return [machine] if _is_dns_name(machine) else []
    return [str(address)]


def _dns_name(text: str, given: str) -> str:
    if _is_dns_name(text):
        return text
    raise ConfigurationError(
        f"cannot put host {given!r} in a TLS certificate: it is neither an"
        " IP address nor a DNS name",
        hint="give a host such as localhost, 127.0.0.1 or my-laptop.local",
    )


def _is_dns_name(text: str) -> bool:
    labels = text.removeprefix("*.").split(".")
    return len(text) <= 253 and all(_DNS_LABEL.fullmatch(x) for x in labels)


def _new_ca(
    moment: datetime.datetime,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "localfaas"),
            x509.NameAttribute(NameOID.COMMON_NAME, _ca_common_name()),
        ]
    )
    # Critical basicConstraints and keyUsage, and both key identifiers:
    # OpenSSL's strict mode (the default from Python 3.13) requires them.
    identifier = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    usage = _key_usage(cert_sign=True)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(moment - _BACKDATE)
        .not_valid_after(moment + datetime.timedelta(days=_CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(identifier, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(identifier),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _ca_common_name() -> str:
    """Names whose CA this is, for someone reading a trust store."""
    try:
        user = os.getlogin()
    except OSError:
        user = os.environ.get("USER", "user")
    return f"localfaas local CA {user}@{socket.gethostname()}"[:64]


def _new_leaf(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    names: list[str],
    moment: datetime.datetime,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    ca_identifier = ca_cert.extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier
    ).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "localfaas"),
                    x509.NameAttribute(NameOID.COMMON_NAME, names[0]),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(moment - _BACKDATE)
        .not_valid_after(moment + datetime.timedelta(days=_LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(x509.SubjectAlternativeName(_general_names(names)), False)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                ca_identifier
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _general_names(names: list[str]) -> list[x509.GeneralName]:
    general: list[x509.GeneralName] = []
    for name in names:
        try:
            general.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            general.append(x509.DNSName(name))
    return general


# --- reuse ---------------------------------------------------------------


def _load_ca(
    cert_file: Path, key_file: Path, moment: datetime.datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    """The stored CA if it is whole, a CA, and not about to expire."""
    loaded = _load_pair(cert_file, key_file)
    if loaded is None:
        return None

    cert, key = loaded
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        return None
    if not constraints.value.ca or not _fresh(cert, moment):
        return None
    return cert, key


def _leaf_usable(
    files: TlsFiles,
    ca: x509.Certificate,
    names: list[str],
    moment: datetime.datetime,
) -> bool:
    """Whether the stored server certificate can be served as it is."""
    loaded = _load_pair(files.cert, files.key)
    if loaded is None:
        return False

    cert = loaded[0]
    try:
        cert.verify_directly_issued_by(ca)
        present = cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    return _fresh(cert, moment) and set(present) == set(_general_names(names))


def _load_pair(
    cert_file: Path, key_file: Path
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    """A certificate and its EC key, or None if missing, broken or unpaired."""
    try:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        key = serialization.load_pem_private_key(key_file.read_bytes(), None)
    except FileNotFoundError:
        return None
    except ValueError:
        logger.warning("replacing unreadable %s or %s", cert_file, key_file)
        return None
    except OSError as exc:
        raise _folder_error(cert_file.parent, exc) from exc

    if not isinstance(key, ec.EllipticCurvePrivateKey):
        return None
    if key.public_key() != cert.public_key():
        return None
    return cert, key


def _fresh(cert: x509.Certificate, moment: datetime.datetime) -> bool:
    """Valid now and for longer than the renewal margin."""
    return (
        cert.not_valid_before_utc <= moment
        and cert.not_valid_after_utc - moment > _RENEW_BEFORE
    )


# --- files ----------------------------------------------------------------


def _make_private_folder(folder: Path) -> None:
    """Create ``folder`` (0700), or narrow an existing one to 0700."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        # mkdir's mode passes through the umask, and an existing folder
        # keeps its own: the CA key lives here, so set it either way.
        os.chmod(folder, 0o700)
    except OSError as exc:
        raise _folder_error(folder, exc) from exc


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise _folder_error(path.parent, exc) from exc
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def _write(path: Path, data: bytes, *, private: bool) -> None:
    """Replace ``path`` atomically: a reader sees the old file or the new."""
    try:
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(descriptor, "wb") as stream:
            # mkstemp creates 0600; a certificate is public.
            if not private:
                os.fchmod(stream.fileno(), 0o644)
            stream.write(data)
        os.replace(temporary, path)
    except OSError as exc:
        raise _folder_error(path.parent, exc) from exc


def _folder_error(folder: Path, exc: OSError) -> ConfigurationError:
    return ConfigurationError(
        f"cannot keep TLS files in {str(folder)!r} ({exc.strerror or exc})",
        hint="make that folder writable by you, or remove it to start afresh",
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)
