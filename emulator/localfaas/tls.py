"""HTTPS for the gateway: a local CA, a server certificate, and a listener.

OpenFaaS asks for HTTPS whenever traffic leaves a trusted network
(auth-guidance.md), so ``localfaas up --tls`` serves the gateway over TLS
with certificates it makes itself.

Certificates
    :func:`ensure_certificates` keeps a local CA (EC P-256, ten years,
    ``basicConstraints CA``) and a server certificate signed by it for the
    host names and addresses the gateway is reached by, always including
    ``localhost``, ``127.0.0.1`` and ``::1``. Both are reused across runs;
    the server certificate is made again when the names change, when it
    expires within 30 days, or when it no longer matches the CA. Private
    keys are 0600 in a 0700 folder, by default
    ``~/.local/share/localfaas/tls/`` (outside any project, so a key is
    never committed and one CA serves every project). Clients trust
    ``ca.pem``; ``localfaas`` commands do so by themselves.

Serving
    The gateway's uvicorn server loads ``cert.pem`` and ``key.pem`` itself.
    :func:`serve_tls` is for a WSGI app served by waitress, which has no
    TLS: rather than a second WSGI server for TLS mode, with its own
    handling of chunked bodies, streaming and headers, it keeps waitress
    and puts a TLS-terminating relay in front of it. The standard library's
    ``asyncio`` accepts TLS connections on the public address and copies
    bytes both ways to waitress on a private loopback port, so the app
    behaves byte for byte as in plain mode. The relay remembers which
    client each of its loopback connections carries, and a thin WSGI layer
    restores that client's address in ``REMOTE_ADDR`` and ``REMOTE_PORT``
    (``X-Forwarded-For`` needs it) and sets ``wsgi.url_scheme`` to
    ``https``. A request that reaches the private port without coming
    through the relay is refused (403), so the plain port is no way around
    TLS. The cost is one extra copy on loopback per byte, which a local
    server does not feel.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import fcntl
import ipaddress
import logging
import os
import re
import socket
import ssl
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

import waitress
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from waitress import wasyncore

from localfaas.errors import ConfigurationError

__all__ = [
    "TlsFiles",
    "TlsServer",
    "default_tls_dir",
    "ensure_certificates",
    "serve_tls",
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
_CHUNK = 64 * 1024


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


# --- serving ----------------------------------------------------------------


def server_context(files: TlsFiles) -> ssl.SSLContext:
    """The listener's TLS settings: TLS 1.2 or later, HTTP/1.1 only."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # waitress speaks HTTP/1.1; say so, so a client does not try h2.
    context.set_alpn_protocols(["http/1.1"])
    try:
        context.load_cert_chain(files.cert, files.key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(
            f"cannot load the TLS certificate {str(files.cert)!r} and key"
            f" {str(files.key)!r} ({exc})",
            hint="remove them; localfaas makes new ones on the next start",
        ) from exc
    return context


class TlsServer:
    """A TLS listener relaying to waitress on a private loopback port.

    Both sockets are bound on creation, so a busy port fails here. Call
    :meth:`run` to serve (it blocks) and :meth:`stop` from any thread or a
    signal handler to end it.
    """

    def __init__(
        self,
        app: WSGIApplication,
        host: str,
        port: int,
        files: TlsFiles,
        threads: int,
        **adjustments: Any,
    ) -> None:
        self._context = server_context(files)
        self._clients: dict[int, tuple[str, int]] = {}
        self._listener = _listen(host, port)
        self._backend = waitress.create_server(
            _ClientAddress(app, self._clients),
            host="127.0.0.1",
            port=0,
            threads=threads,
            url_scheme="https",
            **adjustments,
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stop_requested = threading.Event()

    @property
    def effective_port(self) -> int:
        """The TLS port, useful when 0 was asked for."""
        return int(self._listener.getsockname()[1])

    @property
    def backend_port(self) -> int:
        """The private loopback port waitress listens on."""
        return int(self._backend.effective_port)

    def run(self) -> None:
        """Serve until :meth:`stop` or Ctrl-C; close everything on the way out."""
        backend = threading.Thread(
            target=self._backend.run, name="localfaas-tls-backend", daemon=True
        )
        backend.start()
        try:
            asyncio.run(self._serve())
        finally:
            self._close_backend(backend)

    def stop(self) -> None:
        """Ask :meth:`run` to return; safe from any thread, any number of times."""
        self._stop_requested.set()
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed
                loop.call_soon_threadsafe(stop.set)

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.set_exception_handler(_quiet_tls_errors)
        self._stop = asyncio.Event()
        if self._stop_requested.is_set():
            return

        server = await asyncio.start_server(
            self._accept,
            sock=self._listener,
            ssl=self._context,
            ssl_handshake_timeout=10,
            limit=_CHUNK,
        )
        try:
            await self._stop.wait()
        finally:
            server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await server.wait_closed()

    async def _accept(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        try:
            await self._relay(reader, writer)
        finally:
            writer.close()

    async def _relay(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Copy one client's bytes to waitress and back, until either ends."""
        client = writer.get_extra_info("peername")
        try:
            backend = await asyncio.open_connection(
                "127.0.0.1", self.backend_port, limit=_CHUNK
            )
        except OSError as exc:
            logger.error("TLS relay cannot reach the gateway: %s", exc)
            return

        # Registered before any byte goes through, so waitress never sees a
        # request from this connection without knowing the client.
        local_port = backend[1].get_extra_info("sockname")[1]
        self._clients[local_port] = (str(client[0]), int(client[1]))
        try:
            await asyncio.gather(
                _pump(reader, backend[1], end=_half_close),
                _pump(backend[0], writer, end=_close),
            )
        except (OSError, ssl.SSLError):
            pass  # the client or waitress went away; both sides close below
        finally:
            del self._clients[local_port]
            backend[1].close()

    def _close_backend(self, thread: threading.Thread) -> None:
        _stop_waitress(self._backend, thread)
        self._listener.close()


def _stop_waitress(server: Any, thread: threading.Thread) -> None:
    """Stop a waitress server whose loop runs in ``thread``, from outside.

    waitress has no stop call for this. Closing its sockets from here while
    its loop sits in select() on them fails with EBADF, so the closing runs
    inside the loop, through its trigger (a pipe). The trigger stays open
    until the loop and the worker threads are done: the loop may run the
    closing on a worker's wake-up before our own pull has written to the
    pipe, and a worker finishing late pulls it too.
    """
    trigger = server.trigger

    def close_all_but_trigger() -> None:
        for dispatcher in list(server._map.values()):
            if dispatcher is server:
                # The server's own close() would close the trigger as well.
                wasyncore.dispatcher.close(server)
            elif dispatcher is not trigger:
                dispatcher.close()
        trigger.del_channel()  # an empty map ends the loop

    trigger.pull_trigger(close_all_but_trigger)
    thread.join(5)
    server.task_dispatcher.shutdown()
    trigger.close()


def serve_tls(
    app: WSGIApplication,
    host: str,
    port: int,
    files: TlsFiles,
    threads: int,
    **adjustments: Any,
) -> TlsServer:
    """A :class:`TlsServer` for ``app``; ``adjustments`` go to waitress."""
    return TlsServer(app, host, port, files, threads, **adjustments)


class _ClientAddress:
    """Give the app the real client's address; refuse bypassing requests."""

    def __init__(self, app: WSGIApplication, clients: dict[int, tuple[str, int]]):
        self.app = app
        self.clients = clients

    def __call__(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        """Restore REMOTE_ADDR/PORT from the relay, or answer 403."""
        client = self.clients.get(int(environ.get("REMOTE_PORT") or 0))
        if client is None:
            body = b"connect through the gateway's TLS port\n"
            start_response(
                "403 Forbidden",
                [
                    ("Content-Type", "text/plain; charset=utf-8"),
                    ("Content-Length", str(len(body))),
                ],
            )
            return [body]

        environ["REMOTE_ADDR"] = environ["REMOTE_HOST"] = client[0]
        environ["REMOTE_PORT"] = str(client[1])
        environ["HTTPS"] = "on"
        return self.app(environ, start_response)


def _listen(host: str, port: int) -> socket.socket:
    """Bind the public TLS socket; a busy or bad address is the user's to fix."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family, backlog=1024)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc})",
            hint="choose another --port, or stop what is using it",
        ) from exc


async def _pump(
    source: asyncio.StreamReader,
    target: asyncio.StreamWriter,
    *,
    end: Callable[[asyncio.StreamWriter], None],
) -> None:
    while chunk := await source.read(_CHUNK):
        target.write(chunk)
        await target.drain()
    end(target)


def _half_close(writer: asyncio.StreamWriter) -> None:
    """The client is done sending: tell waitress, keep reading its answer."""
    if writer.can_write_eof():
        writer.write_eof()
    else:
        writer.close()


def _close(writer: asyncio.StreamWriter) -> None:
    """waitress closed the connection: close the client's too."""
    writer.close()


def _quiet_tls_errors(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """One log line for a client that failed its handshake, not a traceback."""
    error = context.get("exception")
    if isinstance(error, ssl.SSLError | ConnectionError | TimeoutError):
        logger.info("TLS connection failed: %s", error)
        return
    loop.default_exception_handler(context)
