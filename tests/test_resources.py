"""limits and requests as Kubernetes quantities, turned into engine caps."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from localfaas.resources import (
    ResourceError,
    container_resources,
    mebibytes,
    memory_limit,
    quantity,
    resident_memory,
)

# A child that touches 96 MiB (b"x" * n writes every page; bytes(n) would
# leave them unmapped) and says so once it holds them, and its parent.
_HOLDER = "b = b'x' * (96 << 20); print('holding', flush=True); input()"
_PARENT = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {_HOLDER!r}])"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("128Mi", 128 * 2**20),
        ("1Gi", 2**30),
        ("1.5Gi", 1.5 * 2**30),
        ("500k", 500_000),
        ("20M", 20_000_000),
        ("100m", 0.1),
        ("2", 2),
        ("0.5", 0.5),
        (".25", 0.25),
        (" 64Mi ", 64 * 2**20),
    ],
)
def test_quantities_read_as_kubernetes_reads_them(text: str, value: float) -> None:
    assert quantity(text, "limits.memory") == pytest.approx(value)


@pytest.mark.parametrize("text", ["", "lots", "128 Mi", "128MiB", "-1Gi", "1e3", "Mi"])
def test_what_is_no_quantity_is_refused_with_its_value(text: str) -> None:
    with pytest.raises(ResourceError) as caught:
        quantity(text, "limits.cpu")
    assert f"limits.cpu {text!r} is not a Kubernetes quantity" in str(caught.value)


def test_limits_and_requests_become_engine_options() -> None:
    options = container_resources(
        {"memory": "40Mi", "cpu": "100m"}, {"memory": "20Mi", "cpu": "50m"}
    )
    assert options == {
        "mem_limit": 40 * 2**20,
        "nano_cpus": 100_000_000,
        "mem_reservation": 20 * 2**20,
    }
    assert container_resources({}, {}) == {}


def test_a_request_above_its_limit_is_refused() -> None:
    with pytest.raises(ResourceError, match=r"requests\.memory '1Gi' is more than"):
        container_resources({"memory": "512Mi"}, {"memory": "1Gi"})


def test_a_memory_limit_below_what_the_engine_allows_is_refused() -> None:
    with pytest.raises(ResourceError, match=r"limits\.memory '4Mi' is below the 6Mi"):
        container_resources({"memory": "4Mi"}, {})


def test_the_memory_limit_is_read_in_bytes_and_none_when_unset() -> None:
    assert memory_limit({"memory": "128Mi", "cpu": "1"}) == 128 * 2**20
    assert memory_limit({"cpu": "1"}) is None
    with pytest.raises(ResourceError, match=r"limits\.memory 'lots'"):
        memory_limit({"memory": "lots"})


def test_resident_memory_counts_the_descendants_of_a_process() -> None:
    """A parent whose child holds 96 MiB is charged for it, as a cgroup is."""
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        assert parent.stdout.readline() == "holding\n"
        used = resident_memory(parent.pid)
    finally:
        # End of input ends the child, and with it the parent.
        assert parent.stdin is not None
        parent.stdin.close()
        parent.wait(timeout=10)

    assert 96 * 2**20 <= used < 200 * 2**20


def test_a_process_that_is_gone_holds_no_memory() -> None:
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    time.sleep(0.01)

    assert resident_memory(done.pid) == 0


def test_sizes_are_written_as_stack_yml_writes_them() -> None:
    assert mebibytes(128 * 2**20) == "128.0Mi"
    assert mebibytes(1.5 * 2**20) == "1.5Mi"
