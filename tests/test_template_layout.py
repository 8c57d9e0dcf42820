"""The faas-cli template contract, and one runtime shared by both templates."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, TEMPLATES

NAMES = ["python3-http-auth", "python3-flask-auth"]


@pytest.mark.parametrize("name", NAMES)
def test_template_has_what_faas_cli_reads(name: str) -> None:
    """template.yml names the language, fprocess and a welcome message."""
    folder = TEMPLATES / name
    meta = yaml.safe_load((folder / "template.yml").read_text())
    assert meta["language"] == name
    assert meta["fprocess"] == "python index.py"
    assert "auth_scheme" in meta["welcome_message"]
    for option in meta["build_options"]:
        assert option["name"]
        assert option["packages"]
    for path in ("Dockerfile", "index.py", "requirements.txt"):
        assert (folder / path).is_file(), path
    for path in ("handler.py", "handler_test.py", "requirements.txt"):
        assert (folder / "function" / path).is_file(), path
    # faas-cli new copies function/ as is; the build creates __init__.py.
    assert not (folder / "function" / "__init__.py").exists()


@pytest.mark.parametrize("name", NAMES)
def test_dockerfile_runs_on_openfaas(name: str) -> None:
    """Public base by default, overridable; non-root; 8080; health check."""
    text = (TEMPLATES / name / "Dockerfile").read_text()
    assert "ARG PYTHON_IMAGE=python:3.12-slim-bookworm" in text
    assert "FROM ${PYTHON_IMAGE}" in text
    assert "\nUSER app\n" in text
    assert "EXPOSE 8080" in text
    assert "HEALTHCHECK" in text
    assert "/tmp/.lock" in text
    assert text.index("-r requirements.txt") < text.index("function/requirements.txt")


def test_flask_template_carries_an_identical_runtime() -> None:
    """The flask copy of faas_runtime is byte-identical to the source."""
    source = TEMPLATES / "python3-http-auth"
    copy = TEMPLATES / "python3-flask-auth"
    names = sorted(p.name for p in (source / "faas_runtime").glob("*.py"))
    copied = sorted(p.name for p in (copy / "faas_runtime").glob("*.py"))
    assert names == copied, "run scripts/sync-templates"
    _match, mismatch, errors = filecmp.cmpfiles(
        source / "faas_runtime", copy / "faas_runtime", names, shallow=False
    )
    assert (mismatch, errors) == ([], []), "run scripts/sync-templates"
    for shared in ("Dockerfile", ".dockerignore"):
        assert filecmp.cmp(source / shared, copy / shared, shallow=False), shared


@pytest.mark.parametrize("name", NAMES)
def test_sample_handler_test_passes_as_the_build_runs_it(
    name: str, tmp_path: Path
) -> None:
    """What TEST_ENABLED=true runs in the image passes on the template."""
    import shutil

    shutil.copytree(TEMPLATES / name, tmp_path / "app")
    (tmp_path / "app" / "function" / "__init__.py").touch()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "function"],
        cwd=tmp_path / "app",
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()


def test_every_sample_in_stack_yml_uses_a_shipped_template() -> None:
    """The root stack.yml wires each sample to one of our templates."""
    stack = yaml.safe_load((ROOT / "stack.yml").read_text())
    schemes = set()
    for name, spec in stack["functions"].items():
        assert spec["lang"] in NAMES, name
        assert (ROOT / spec["handler"] / "handler.py").is_file(), name
        schemes.add(spec["environment"]["auth_scheme"])
    assert {"github", "standard-webhooks", "basic", "bearer", "jwt"} <= schemes
