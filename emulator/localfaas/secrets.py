"""The emulator's secrets: what OpenFaaS keeps behind ``/system/secrets``.

A name can come from two places:

* ``<project>/.secrets/<name>``, faas-cli's local-run convention (faas-cli
  mounts that folder into the function; ``faas-cli secret apply`` uploads it).
  These files belong to the user's editor, so the API treats them as
  read-only: they are listed and readable, creating such a name is a
  conflict (409, as for any existing secret) and updating or deleting one
  raises ``SecretReadOnly``. If a file and a stored secret share a name, the
  file wins, as it would under ``faas-cli local-run``.
* secrets created through the API, kept in ``<state_dir>/secrets/``,
  encrypted at rest with AES-256-GCM under a key stored outside the project
  (``$XDG_DATA_HOME/localfaas/secrets.key`` by default, mode 0600).

The errors, with the status the gateway should answer (gateway-contract
§8.8; faas-netes maps Kubernetes reasons the same way)::

    SecretError
    ├── InvalidSecretName   422 (500 for an empty name, as faas-netes)
    ├── SecretExists        409 (faas-cli ``create --replace`` then PUTs)
    ├── SecretNotFound      404
    ├── SecretReadOnly      409: the name is a file in ``.secrets/``
    ├── MissingSecrets      400 at deploy: listed secrets do not exist
    ├── SecretUnreadable    500: a stored secret cannot be decrypted
    └── SecretKeyError      500: the key file is unusable

Messages name the secret, the file and what to do; no value is ever logged
or put in a message.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import logging
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "InvalidSecretName",
    "MissingSecrets",
    "SecretError",
    "SecretExists",
    "SecretKeyError",
    "SecretNotFound",
    "SecretReadOnly",
    "SecretStore",
    "SecretUnreadable",
    "default_key_path",
    "validate_secret_name",
]

log = logging.getLogger("localfaas.secrets")

# Kubernetes, which faas-netes leaves the check to, wants a DNS-1123
# subdomain of at most 253 characters; faas-cli checks the same pattern
# (gateway-contract §11). The pattern also rules out "/", ".." and a
# leading ".", so a valid name is always a safe file name.
_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_NAME = re.compile(rf"{_LABEL}(\.{_LABEL})*")
_MAX_NAME = 253

# A stored secret is a file named like the secret (253 characters fit in
# NAME_MAX, 255) holding _MAGIC + nonce + AES-GCM ciphertext and tag.
_MAGIC = b"LFS1"
_NONCE_BYTES = 12
_TAG_BYTES = 16


class SecretError(Exception):
    """Base class of the secret store's errors; ``status`` is for the API."""

    status = 500


class InvalidSecretName(SecretError, ValueError):
    """A name that is not a DNS-1123 subdomain of at most 253 characters."""

    def __init__(self, name: str) -> None:
        self.name = name

        # faas-netes answers an empty name with 500 and any other invalid
        # one with Kubernetes's 422 (gateway-contract §8.8).
        self.status = 422 if name else 500
        if not name:
            super().__init__("secret name is empty: name it, e.g. 'api-key'")
            return
        super().__init__(
            f"secret name {name!r} is invalid: use lower-case letters, "
            "digits, '-' and '.', starting and ending with a letter or "
            f"digit, at most {_MAX_NAME} characters (a DNS-1123 subdomain)"
        )


class SecretExists(SecretError):
    """Creating a name that already exists (409)."""

    status = 409

    def __init__(self, name: str, file: Path | None = None) -> None:
        self.name = name
        if file is not None:
            super().__init__(
                f"secret {name!r} already exists as the file {str(file)!r}: "
                "edit that file, or pick another name"
            )
            return
        super().__init__(
            f"secret {name!r} already exists: replace it with 'localfaas "
            f"secret update {name}', or pick another name"
        )


class SecretNotFound(SecretError):
    """Reading, updating or deleting a name that does not exist (404)."""

    status = 404

    def __init__(self, name: str, project_secrets: Path) -> None:
        self.name = name
        super().__init__(
            f"secret {name!r} does not exist: create it with 'localfaas "
            f"secret create {name}' or as the file "
            f"{str(project_secrets / name)!r}"
        )


class SecretReadOnly(SecretError):
    """Updating or deleting a secret that is a file in ``.secrets/`` (409)."""

    status = 409

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        super().__init__(
            f"secret {name!r} is the file {str(path)!r}, which the API does "
            "not change: edit or remove that file instead"
        )


class MissingSecrets(SecretError):
    """Secrets a function lists that exist nowhere (400 at deploy)."""

    status = 400

    def __init__(self, names: list[str], project_secrets: Path) -> None:
        self.names = names
        listed = ", ".join(names)
        files = ", ".join(str(project_secrets / name) for name in names)
        commands = ", ".join(f"'localfaas secret create {n}'" for n in names)

        # Worded like faas-cli local-run's "missing files: create the
        # following secrets (a, b) in: <path>", plus the API route.
        super().__init__(
            f"missing secrets: create the following secrets ({listed}) in: "
            f'"{project_secrets}" (as {files}) or with {commands}'
        )


class SecretUnreadable(SecretError):
    """A stored secret that cannot be read or decrypted (500)."""

    def __init__(self, name: str, path: Path, key: Path, why: str) -> None:
        self.name = name
        super().__init__(
            f"secret {name!r} in {str(path)!r} cannot be decrypted with the "
            f"key {str(key)!r}: {why}; restore the key it was written "
            f"with, or set it again with 'localfaas secret update {name}'"
        )


class SecretKeyError(SecretError):
    """The key file is misplaced, unreadable or not a key (500)."""


def validate_secret_name(name: str) -> str:
    """Return ``name`` if OpenFaaS accepts it, else raise InvalidSecretName."""
    if len(name) > _MAX_NAME or _NAME.fullmatch(name) is None:
        raise InvalidSecretName(name)
    return name


def default_key_path() -> Path:
    """Where the key lives: ``$XDG_DATA_HOME/localfaas/secrets.key``."""
    # The XDG base-directory spec says a relative value must be ignored.
    data_home = os.environ.get("XDG_DATA_HOME", "")
    if os.path.isabs(data_home):
        return Path(data_home) / "localfaas" / "secrets.key"
    return Path.home() / ".local" / "share" / "localfaas" / "secrets.key"


class SecretStore:
    """One emulator's secrets: ``.secrets/`` files plus encrypted API secrets.

    Thread-safe within one process; two emulators must not share a
    ``state_dir`` (they may share the key file).
    """

    def __init__(
        self,
        project_secrets: Path,
        state_dir: Path,
        key_path: Path | None = None,
    ) -> None:
        self.project_secrets = Path(project_secrets).absolute()
        self.folder = Path(state_dir).absolute() / "secrets"
        self.key_path = Path(key_path or default_key_path()).absolute()
        self._refuse_key_inside(Path(state_dir), self.project_secrets)

        self._lock = threading.RLock()
        self._cipher: AESGCM | None = None

    def list(self) -> builtins.list[str]:
        """Every secret name, sorted; values are never listed."""
        with self._lock:
            return sorted(set(self._file_names()) | set(self._stored_names()))

    def exists(self, name: str) -> bool:
        """Whether ``name`` is a ``.secrets/`` file or a stored secret."""
        validate_secret_name(name)
        with self._lock:
            return self._file(name).is_file() or self._entry(name).is_file()

    def get(self, name: str) -> bytes:
        """The value of ``name``; raise SecretNotFound if it does not exist."""
        validate_secret_name(name)
        with self._lock:
            if self._file(name).is_file():
                return self._read_file(name)
            try:
                blob = self._entry(name).read_bytes()
            except FileNotFoundError:
                raise SecretNotFound(name, self.project_secrets) from None
            return self._decrypt(name, blob)

    def create(self, name: str, value: bytes) -> None:
        """Store a new secret; raise SecretExists if the name is taken."""
        validate_secret_name(name)
        _check_value(value)
        with self._lock:
            if self._file(name).is_file():
                raise SecretExists(name, self._file(name))
            if self._entry(name).exists():
                raise SecretExists(name)
            self._write(name, value)
        log.info("secret created name=%s", name)

    def update(self, name: str, value: bytes) -> None:
        """Replace a stored secret's value; raise SecretNotFound if absent."""
        validate_secret_name(name)
        _check_value(value)
        with self._lock:
            self._refuse_file(name)
            if not self._entry(name).is_file():
                raise SecretNotFound(name, self.project_secrets)

            # Overwriting needs no decryption, so this also repairs an
            # entry written under a key that is gone.
            self._write(name, value)
        log.info("secret updated name=%s", name)

    def delete(self, name: str) -> None:
        """Remove a stored secret; raise SecretNotFound if absent."""
        validate_secret_name(name)
        with self._lock:
            self._refuse_file(name)
            try:
                self._entry(name).unlink()
            except FileNotFoundError:
                raise SecretNotFound(name, self.project_secrets) from None
            _fsync_folder(self.folder)
        log.info("secret deleted name=%s", name)

    def materialize(self, names: Iterable[str], folder: Path) -> None:
        """Make ``folder`` hold exactly ``names``, one 0400 file each.

        Every value is read before anything is written, so a missing or
        unreadable secret leaves the folder as it was. Each file is replaced
        by a rename, so a running function sees the old or the new value,
        never part of one.
        """
        wanted = list(dict.fromkeys(names))
        for name in wanted:
            validate_secret_name(name)

        with self._lock:
            missing = [name for name in wanted if not self.exists(name)]
            if missing:
                raise MissingSecrets(missing, self.project_secrets)
            values = {name: self.get(name) for name in wanted}

            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(folder, 0o700)
            for name, value in values.items():
                _place(folder / name, value)
            _prune(folder, keep=set(values))
            _fsync_folder(folder)

    def _file(self, name: str) -> Path:
        return self.project_secrets / name

    def _entry(self, name: str) -> Path:
        return self.folder / name

    def _file_names(self) -> builtins.list[str]:
        if not self.project_secrets.is_dir():
            return []
        return [
            path.name
            for path in self.project_secrets.iterdir()
            if _is_name(path.name) and path.is_file()
        ]

    def _stored_names(self) -> builtins.list[str]:
        if not self.folder.is_dir():
            return []
        return [p.name for p in self.folder.iterdir() if _is_name(p.name)]

    def _refuse_file(self, name: str) -> None:
        if self._file(name).is_file():
            raise SecretReadOnly(name, self._file(name))

    def _refuse_key_inside(self, state_dir: Path, secrets: Path) -> None:
        # A key beside the data it protects makes encryption at rest moot,
        # and one inside .secrets/ would itself be listed as a secret.
        key = self.key_path.resolve()
        for folder in (state_dir.absolute(), secrets):
            if key.is_relative_to(folder.resolve()):
                raise SecretKeyError(
                    f"the secret key {str(self.key_path)!r} is inside "
                    f"{str(folder)!r}: keep it outside the project, e.g. at "
                    f"{str(default_key_path())!r}"
                )

    def _read_file(self, name: str) -> bytes:
        path = self._file(name)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise SecretNotFound(name, self.project_secrets) from None
        except OSError as exc:
            raise SecretError(
                f"secret {name!r} cannot be read from {str(path)!r} "
                f"({exc.strerror}): check the file's permissions"
            ) from exc

    def _write(self, name: str, value: bytes) -> None:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._writing_cipher().encrypt(nonce, value, _aad(name))

        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_atomically(self._entry(name), _MAGIC + nonce + sealed, 0o600)

    def _decrypt(self, name: str, blob: bytes) -> bytes:
        path = self._entry(name)
        header = len(_MAGIC) + _NONCE_BYTES
        if not blob.startswith(_MAGIC) or len(blob) < header + _TAG_BYTES:
            why = "the file is truncated or not a localfaas secret"
            raise SecretUnreadable(name, path, self.key_path, why)

        cipher = self._reading_cipher()
        if cipher is None:
            why = "that key file is missing"
            raise SecretUnreadable(name, path, self.key_path, why)

        nonce, sealed = blob[len(_MAGIC) : header], blob[header:]
        try:
            return cipher.decrypt(nonce, sealed, _aad(name))
        except InvalidTag:
            why = "the key has changed or the file was altered"
            raise SecretUnreadable(name, path, self.key_path, why) from None

    # AES-GCM rather than Fernet: the secret's name goes in as associated
    # data, so swapping or renaming encrypted files is detected, and the key
    # is 256 bits. A random 96-bit nonce per write stays safe far beyond the
    # writes a local store sees (NIST SP 800-38D allows 2^32 per key).

    def _reading_cipher(self) -> AESGCM | None:
        if self._cipher is None:
            key = _load_key(self.key_path)
            self._cipher = None if key is None else AESGCM(key)
        return self._cipher

    def _writing_cipher(self) -> AESGCM:
        cipher = self._reading_cipher()
        if cipher is None:
            cipher = self._cipher = AESGCM(_create_key(self.key_path))
        return cipher


def _is_name(name: str) -> bool:
    return len(name) <= _MAX_NAME and _NAME.fullmatch(name) is not None


def _check_value(value: bytes) -> None:
    if not isinstance(value, bytes):
        raise TypeError(
            f"a secret value must be bytes, not {type(value).__name__}: "
            "encode text first, e.g. value.encode()"
        )


def _aad(name: str) -> bytes:
    return b"localfaas secret v1\x00" + name.encode("ascii")


def _load_key(path: Path) -> bytes | None:
    try:
        mode = path.stat().st_mode
        text = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SecretKeyError(
            f"the secret key {str(path)!r} cannot be read ({exc.strerror}): "
            "run the emulator as the user who owns it"
        ) from exc

    # Like ssh with a private key, refuse a key others could read.
    if mode & 0o077:
        raise SecretKeyError(
            f"the secret key {str(path)!r} is readable by other users "
            f"(mode {mode & 0o777:o}): run 'chmod 600 {path}'"
        )
    try:
        key = base64.urlsafe_b64decode(text.strip())
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise SecretKeyError(
            f"the secret key {str(path)!r} is not a localfaas key (32 bytes, "
            "base64): restore the original file"
        )
    return key


def _create_key(path: Path) -> bytes:
    key = AESGCM.generate_key(bit_length=256)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)

    # Write the key in full under a temporary name (mkstemp makes it 0600),
    # then link it into place: if another emulator got there first, its key
    # stays and is used, rather than two processes overwriting each other.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".secrets.key.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(base64.urlsafe_b64encode(key) + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.link(tmp, path)
    except FileExistsError:
        return _load_existing_key(path)
    finally:
        os.unlink(tmp)

    _fsync_folder(path.parent)
    log.info("secret key created path=%s", path)
    return key


def _load_existing_key(path: Path) -> bytes:
    key = _load_key(path)
    if key is None:
        raise SecretKeyError(
            f"the secret key {str(path)!r} appeared and vanished while it was "
            "being created: check what else manages that folder"
        )
    return key


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    # A temporary file in the same folder, then rename(2): readers see the
    # old file or the new one. The leading "." keeps it out of listings,
    # since no valid secret name starts with one.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def _place(path: Path, value: bytes) -> None:
    # An unchanged file keeps its inode, so a function caching by inode
    # (faas_runtime's SecretFile) does not re-read it for nothing.
    if path.is_file() and not path.is_symlink() and path.read_bytes() == value:
        os.chmod(path, 0o400)
        return

    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    _write_atomically(path, value, 0o400)


def _prune(folder: Path, keep: set[str]) -> None:
    for child in folder.iterdir():
        if child.name in keep:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _fsync_folder(folder: Path) -> None:
    # rename(2) and unlink(2) are durable only once the folder is synced.
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
