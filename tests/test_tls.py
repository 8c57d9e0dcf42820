"""The local CA and the server certificate that ``localfaas up --tls`` serves.

Certificates are checked with ``cryptography``; real TLS handshakes with
them against the gateway's server are in ``test_fastpath.py``.
"""

from __future__ import annotations

import datetime
import os
import re
import socket
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from localfaas.errors import ConfigurationError
from localfaas.tls import TlsFiles, default_tls_dir, ensure_certificates

# --- helpers ---------------------------------------------------------------


def leaf(files: TlsFiles) -> x509.Certificate:
    """The server certificate."""
    return x509.load_pem_x509_certificate(files.cert.read_bytes())


def ca(files: TlsFiles) -> x509.Certificate:
    """The CA certificate."""
    return x509.load_pem_x509_certificate(files.ca.read_bytes())


def san(cert: x509.Certificate) -> set[str]:
    """The subject alternative names as text."""
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return {str(name.value) for name in names.value}


def mode(path: Path) -> int:
    """Permission bits of ``path``."""
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def files(tmp_path: Path) -> TlsFiles:
    """A fresh local CA and server certificate for localhost and one name."""
    return ensure_certificates(tmp_path / "tls", ["gateway.test"])


# --- certificates ----------------------------------------------------------


class TestCertificates:
    """The local CA and server certificate: content, reuse, renewal."""

    def test_leaf_is_signed_by_the_ca_for_the_hosts_and_loopback(
        self, files: TlsFiles
    ) -> None:
        """The leaf names the hosts plus localhost, 127.0.0.1 and ::1."""
        cert, authority = leaf(files), ca(files)

        cert.verify_directly_issued_by(authority)
        assert san(cert) == {"gateway.test", "localhost", "127.0.0.1", "::1"}
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
        assert list(usage.value) == [ExtendedKeyUsageOID.SERVER_AUTH]
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
        assert constraints.value.ca is False

    def test_ca_is_a_ten_year_ca_limited_to_leaves(self, files: TlsFiles) -> None:
        """The CA is marked CA (critical), signs leaves only, lasts ten years."""
        authority = ca(files)
        constraints = authority.extensions.get_extension_for_class(
            x509.BasicConstraints
        )

        assert constraints.critical
        assert constraints.value.ca is True
        assert constraints.value.path_length == 0
        lifetime = authority.not_valid_after_utc - authority.not_valid_before_utc
        assert lifetime.days >= 3650

    def test_leaf_lifetime_stays_within_what_browsers_accept(
        self, files: TlsFiles
    ) -> None:
        """A server certificate lasts at most 398 days."""
        cert = leaf(files)
        assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days <= 398

    def test_private_keys_are_0600_in_a_0700_folder(self, files: TlsFiles) -> None:
        """Keys are owner-only, certificates readable, the folder private."""
        folder = files.key.parent

        assert mode(folder) == 0o700
        assert mode(files.key) == 0o600
        assert mode(folder / "ca-key.pem") == 0o600
        assert mode(files.cert) == 0o644
        assert mode(files.ca) == 0o644

    def test_an_open_existing_folder_is_narrowed_to_0700(self, tmp_path: Path) -> None:
        """A folder made by hand with 0755 holds the CA key only as 0700."""
        folder = tmp_path / "tls"
        folder.mkdir(mode=0o755)
        os.chmod(folder, 0o755)  # noqa: S103 - the open folder under test

        ensure_certificates(folder, [])
        assert mode(folder) == 0o700

    def test_second_call_reuses_every_file(self, files: TlsFiles) -> None:
        """Nothing is rewritten when the hosts are the same and time is left."""
        before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in all_files(files)}

        again = ensure_certificates(files.ca.parent, ["gateway.test"])

        assert again == files
        assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in before} == before

    def test_new_hosts_get_a_new_leaf_from_the_same_ca(self, files: TlsFiles) -> None:
        """Changing the hosts replaces the leaf and keeps the CA clients trust."""
        old_ca, old_leaf = files.ca.read_bytes(), files.cert.read_bytes()

        ensure_certificates(files.ca.parent, ["other.test", "192.0.2.7"])

        assert files.ca.read_bytes() == old_ca
        assert files.cert.read_bytes() != old_leaf
        assert san(leaf(files)) == {
            "other.test",
            "192.0.2.7",
            "localhost",
            "127.0.0.1",
            "::1",
        }
        leaf(files).verify_directly_issued_by(ca(files))

    def test_a_leaf_expiring_within_30_days_is_renewed(self, files: TlsFiles) -> None:
        """370 days on, the 397-day leaf has under 30 left and is replaced."""
        old_ca, old_leaf = files.ca.read_bytes(), files.cert.read_bytes()
        later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=370)

        ensure_certificates(files.ca.parent, ["gateway.test"], now=later)

        assert files.ca.read_bytes() == old_ca
        assert files.cert.read_bytes() != old_leaf
        assert leaf(files).not_valid_after_utc > later + datetime.timedelta(days=300)

    def test_an_expiring_ca_is_replaced_with_its_leaf(self, files: TlsFiles) -> None:
        """Near the CA's end both are made again, and they chain."""
        old_ca = files.ca.read_bytes()
        later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=3640)

        ensure_certificates(files.ca.parent, ["gateway.test"], now=later)

        assert files.ca.read_bytes() != old_ca
        leaf(files).verify_directly_issued_by(ca(files))

    def test_a_broken_leaf_or_mismatched_key_is_replaced(self, files: TlsFiles) -> None:
        """Garbage in cert.pem, or a key of another pair, means a new leaf."""
        files.cert.write_bytes(b"not a certificate")
        ensure_certificates(files.ca.parent, ["gateway.test"])
        leaf(files).verify_directly_issued_by(ca(files))

        files.key.write_bytes((files.ca.parent / "ca-key.pem").read_bytes())
        ensure_certificates(files.ca.parent, ["gateway.test"])
        assert files.key.read_bytes() != (files.ca.parent / "ca-key.pem").read_bytes()

    def test_an_unspecified_bind_address_names_this_machine(
        self, tmp_path: Path
    ) -> None:
        """Binding 0.0.0.0 puts the host name in, not 0.0.0.0."""
        files = ensure_certificates(tmp_path / "tls", ["0.0.0.0"])

        names = san(leaf(files))
        assert "0.0.0.0" not in names
        assert socket.gethostname().lower() in names

    @pytest.mark.parametrize("host", ["bad host", "-dash.test", "a..b", "x" * 64])
    def test_a_host_that_is_no_name_or_address_is_refused(
        self, tmp_path: Path, host: str
    ) -> None:
        """The error repeats the host as given."""
        with pytest.raises(ConfigurationError, match=re.escape(repr(host))):
            ensure_certificates(tmp_path / "tls", [host])

    def test_default_folder_is_outside_the_project(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """XDG_DATA_HOME wins; otherwise ~/.local/share/localfaas/tls."""
        monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
        assert default_tls_dir() == tmp_path / "data" / "localfaas" / "tls"

        monkeypatch.delenv("XDG_DATA_HOME")
        monkeypatch.setenv("HOME", str(tmp_path))
        assert default_tls_dir() == tmp_path / ".local/share/localfaas/tls"


def all_files(files: TlsFiles) -> list[Path]:
    """Every file ensure_certificates keeps."""
    folder = files.ca.parent
    return [files.ca, files.cert, files.key, folder / "ca-key.pem"]
