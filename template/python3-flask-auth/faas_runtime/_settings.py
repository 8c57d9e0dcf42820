"""Every setting of the runtime, read once from the environment.

Names follow OpenFaaS's watchdog where it has one (``port``,
``write_timeout``, ``max_inflight``...), so a function's ``environment:`` in
stack.yml means the same thing here as behind of-watchdog. Durations take
seconds or a Go duration (``30s``, ``1m5s``), as the watchdog does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from ._errors import ConfigError

_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)")
_UNIT_SECONDS = {
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 1e-3,
    "us": 1e-6,
    "µs": 1e-6,
    "ns": 1e-9,
}


def duration(text: str) -> float:
    """Seconds from ``"30"``, ``"30s"`` or ``"1m5s"``."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass

    parts = _GO_DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30, 30s or 1m5s)")
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


def boolean(text: str) -> bool:
    """True for ``true``/``1``/``yes``/``on``, in any case."""
    return text.strip().lower() in {"true", "1", "yes", "on"}


def count(text: str) -> int:
    """A whole number, zero or more."""
    value = int(text)
    if value < 0:
        raise ValueError(f"must not be negative: {text!r}")
    return value


def _field(default: Any, convert: Callable[[str], Any], doc: str) -> Any:
    return field(default=default, metadata={"convert": convert, "doc": doc})


@dataclass(frozen=True)
class Settings:
    """The runtime's settings; each field is one environment variable."""

    port: int = _field(8080, int, "TCP port; OpenFaaS always dials 8080")
    listen_address: str = _field(
        "0.0.0.0", str, "address to bind; the emulator uses 127.0.0.1"
    )
    secret_mount_path: str = _field(
        "/var/openfaas/secrets", str, "folder holding one file per secret"
    )
    lock_file: str = _field(
        # OpenFaaS's fixed path: image health checks test for this file.
        "/tmp/.lock",  # noqa: S108
        str,
        "created once serving; the image HEALTHCHECK tests it",
    )
    suppress_lock: bool = _field(False, boolean, "do not write the lock file")
    read_timeout: float = _field(30.0, duration, "idle client connections")
    write_timeout: float = _field(30.0, duration, "also bounds the drain")
    # Off unless set. A Python thread cannot be interrupted, so enforcing a
    # deadline means running handlers on a second pool and handing every
    # request over to it, which costs about 15% of a hello handler's
    # throughput (benchmarks/runtime.py). The gateway's upstream timeout
    # still bounds what a caller waits.
    exec_timeout: float = _field(0.0, duration, "handler time limit; 0 = none")
    healthcheck_interval: float | None = _field(
        None, duration, "wait after SIGTERM; default write_timeout"
    )
    max_inflight: int = _field(0, count, "concurrent requests; 0 = unlimited")
    waitress_threads: int = _field(
        8, count, "worker threads; 8 kept CPU per request flat at 64 clients"
    )
    max_request_body: int = _field(
        64 * 1024 * 1024, count, "bytes; larger bodies get 413"
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Read every field from ``env``; a bad value names the variable."""
        values: dict[str, Any] = {}
        for spec in fields(cls):
            raw = env.get(spec.name)
            if raw is None or raw == "":
                continue
            try:
                values[spec.name] = spec.metadata["convert"](raw)
            except ValueError as exc:
                raise ConfigError(
                    f"environment variable {spec.name}={raw!r} is invalid: {exc}"
                ) from exc
        return cls(**values)

    @property
    def drain_wait(self) -> float:
        """How long to keep serving after SIGTERM before draining."""
        if self.healthcheck_interval is None:
            return self.write_timeout
        return self.healthcheck_interval
