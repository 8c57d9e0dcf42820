"""Keys and credentials from OpenFaaS secrets, which are files.

OpenFaaS mounts each secret as ``/var/openfaas/secrets/<name>``. A file is
re-read when it changes on disk, so a rotated secret takes effect without a
restart, and every non-empty line counts as one value, so a new key can be
added before the old one is removed.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from ._errors import ConfigError


class SecretFile:
    """One secret file, cached until its size, mtime or inode change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._data = b""
        self._lines: list[str] | None = None

    @property
    def name(self) -> str:
        return self.path.name

    def read_bytes(self) -> bytes:
        """The file's content; raise ``ConfigError`` if absent or empty."""
        try:
            stat = os.stat(self.path)
        except OSError as exc:
            raise ConfigError(self._missing(exc)) from exc

        stamp = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        with self._lock:
            if stamp != self._stamp:
                self._data = self._load()
                self._lines = None
                self._stamp = stamp
            return self._data

    def lines(self) -> list[str]:
        """Each non-empty line, stripped: one key, token or user each."""
        data = self.read_bytes()
        cached = self._lines
        if cached is not None:
            return list(cached)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"secret {self.name!r} is not UTF-8 text; write one value per line"
            ) from exc
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        self._lines = lines
        return list(lines)

    def _load(self) -> bytes:
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise ConfigError(self._missing(exc)) from exc
        if not data.strip():
            raise ConfigError(
                f"secret {self.name!r} at {str(self.path)!r} is empty; "
                "write the key into it"
            )
        return data

    def _missing(self, exc: OSError) -> str:
        return (
            f"secret {self.name!r} cannot be read at {str(self.path)!r} "
            f"({exc.strerror}); create it (faas-cli secret create "
            f"{self.name}) and list it under the function's secrets"
        )
