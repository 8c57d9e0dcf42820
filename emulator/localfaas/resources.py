"""A function's ``limits`` and ``requests``, as a container engine takes them.

stack.yml and the deploy API give them as Kubernetes quantities
(``memory: 128Mi``, ``cpu: 100m``; tooling.md §1.2). faas-netes and faasd
enforce ``limits``: a function past its memory limit is killed, one past
its CPU limit is throttled. ``localfaas up --docker`` does the same with the
engine's cgroup settings, so that failure shows up before production.
``requests`` only place a function on a node; locally the memory request
becomes a soft reservation and the CPU one has nothing to do.

Local processes have no cgroup of their own, so there the memory limit is
kept by watching: ``resident_memory`` is what the supervisor compares with
``memory_limit`` to kill a process that went over, as the OOM killer would
kill its container. The CPU limit is not applied to processes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import psutil

__all__ = [
    "ResourceError",
    "container_resources",
    "mebibytes",
    "memory_limit",
    "quantity",
    "resident_memory",
]

# Kubernetes' suffixes: binary (Ki..Ei), decimal (k..E) and milli.
_FACTORS = {
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
    "m": 1e-3,
    "": 1,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
}
_QUANTITY = re.compile(r"(\d+(?:\.\d*)?|\.\d+)([a-zA-Z]{0,2})")

# The Docker engine refuses a smaller memory limit.
_MIN_MEMORY = 6 * 2**20


class ResourceError(ValueError):
    """A limit or request that cannot be applied; the message says why."""


def quantity(text: str, where: str) -> float:
    """``"128Mi"`` -> 134217728.0, ``"100m"`` -> 0.1; ``where`` names it."""
    match = _QUANTITY.fullmatch(text.strip())
    if match is None or match.group(2) not in _FACTORS:
        raise ResourceError(
            f"{where} {text!r} is not a Kubernetes quantity; write it as "
            "128Mi or 1Gi for memory, 500m or 1 for cpu"
        )
    return float(match.group(1)) * _FACTORS[match.group(2)]


def container_resources(
    limits: Mapping[str, str], requests: Mapping[str, str]
) -> dict[str, int]:
    """docker SDK ``containers.create`` options for ``limits``/``requests``."""
    options: dict[str, int] = {}
    if "memory" in limits:
        options["mem_limit"] = _memory_limit(limits["memory"])
    if "cpu" in limits:
        options["nano_cpus"] = round(quantity(limits["cpu"], "limits.cpu") * 1e9)
    if "memory" in requests:
        memory = quantity(requests["memory"], "requests.memory")
        options["mem_reservation"] = int(memory)

    # Kubernetes refuses a request above its limit; so does the engine.
    reserved = options.get("mem_reservation", 0)
    if reserved > options.get("mem_limit", reserved):
        raise ResourceError(
            f"requests.memory {requests['memory']!r} is more than limits.memory "
            f"{limits['memory']!r}; a request must fit within its limit"
        )
    return options


def memory_limit(limits: Mapping[str, str]) -> int | None:
    """``limits.memory`` in bytes, None when unset; ``ResourceError`` if bad."""
    if "memory" not in limits:
        return None
    return _memory_limit(limits["memory"])


def resident_memory(pid: int) -> int:
    """Bytes of RAM held by process ``pid`` and its descendants; 0 if gone.

    The sum of each process's resident set, which is close to, not the
    same as, what a cgroup charges: pages a parent shares with a forked
    child count twice here, and the page cache a cgroup also charges does
    not count.
    """
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.Error:
            # It exited between the listing and the reading.
            continue
    return total


def mebibytes(size: float) -> str:
    """``134217728`` -> ``"128.0Mi"``, as a limit is written in stack.yml."""
    return f"{size / 2**20:.1f}Mi"


def _memory_limit(text: str) -> int:
    size = int(quantity(text, "limits.memory"))
    if size < _MIN_MEMORY:
        raise ResourceError(
            f"limits.memory {text!r} is below the 6Mi the container engine "
            "allows at least"
        )
    return size
