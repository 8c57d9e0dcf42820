"""``localfaas build`` without an engine: layout, arguments and errors.

The layout contract is faas-cli's (tooling.md §3.2): the whole template,
then the handler folder overlaid (minus ``build`` and ``template``), links
followed, modes and dotfiles kept. Every test runs with ``DOCKER_HOST``
pointing at a closed port, so a test that reached for an engine by mistake
would fail with ``EngineUnavailable`` instead of passing. The engine's side
of ``build()`` is fed from messages recorded from a real engine; the real
builds are in test_images.py.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localfaas.builder import (
    ADDITIONAL_PACKAGE,
    BuildFailed,
    EngineUnavailable,
    build,
    build_arguments,
    build_stack,
    image_problem,
    parse_build_args,
    run_build_command,
    shrinkwrap,
)
from localfaas.errors import ConfigurationError
from localfaas.stack import FunctionSpec, Stack, load_stack
from localfaas.templates import Template, find_template

SHIPPED = Path(__file__).resolve().parents[1] / "template"

TEMPLATE_YML = """\
language: py-fake
fprocess: python index.py
build_options:
  - name: dev
    packages: [gcc, make]
  - name: db
    packages: [libpq-dev, gcc]
"""

# A Dockerfile that, unlike the shipped templates', does not create the
# handler's package marker itself.
PLAIN_DOCKERFILE = "FROM scratch\nCOPY . /home/app/\n"


def closed_port() -> int:
    """A loopback port with nothing listening on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(autouse=True)
def no_engine(monkeypatch: pytest.MonkeyPatch) -> str:
    """Point DOCKER_HOST at a closed port; CI unset for faas-cli's modes."""
    url = f"tcp://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("DOCKER_HOST", url)
    monkeypatch.delenv("CI", raising=False)
    for name in ("http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    return url


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project with a fake template ``py-fake`` and a handler ``fn``."""
    folder = tmp_path / "project"
    make_template(folder / "template" / "py-fake")
    make_handler(folder / "fn")
    write_stack(folder, FUNCTION)
    return folder


FUNCTION = """\
  fn:
    lang: py-fake
    handler: ./fn
    image: example/fn:0.1
"""


def write_stack(project: Path, functions: str, configuration: str = "") -> Path:
    """Write ``stack.yaml`` with these function blocks."""
    text = "version: 1.0\nprovider:\n  name: openfaas\nfunctions:\n"
    path = project / "stack.yaml"
    path.write_text(text + functions + configuration)
    return path


def make_template(folder: Path, dockerfile: str = PLAIN_DOCKERFILE) -> None:
    """A template with sample handler files, a dotfile and a script."""
    (folder / "function").mkdir(parents=True)
    (folder / "template.yml").write_text(TEMPLATE_YML)
    (folder / "Dockerfile").write_text(dockerfile)
    (folder / "index.py").write_text("# entry point\n")
    (folder / ".dockerignore").write_text("*.pyc\n")
    (folder / "function" / "handler.py").write_text("# sample handler\n")
    (folder / "function" / "handler_test.py").write_text("# sample test\n")
    (folder / "function" / "requirements.txt").write_text("")
    script = folder / "entry.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)


def make_handler(folder: Path) -> None:
    """A handler folder: code, dotfiles, nested files, skipped folders."""
    (folder / "lib").mkdir(parents=True)
    (folder / "handler.py").write_text("# my handler\n")
    (folder / "lib" / "util.py").write_text("# util\n")
    (folder / ".env").write_text("A=1\n")
    (folder / ".config").mkdir()
    (folder / ".config" / "settings.ini").write_text("[x]\n")
    for skipped in ("build", "template"):
        (folder / skipped).mkdir()
        (folder / skipped / "leftover.txt").write_text("old\n")


def layout(project: Path, name: str = "fn") -> Path:
    """Shrinkwrap function *name* of the project's stack file."""
    stack = load_stack(project / "stack.yaml")
    return shrinkwrap(stack, stack.functions[name], project)


def files_under(folder: Path) -> dict[str, bytes]:
    """Every regular file below *folder*, by relative path, with content."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in folder.rglob("*")
        if path.is_file()
    }


class TestShrinkwrap:
    """The build context faas-cli lays out in ``build/<fn>``."""

    def test_returns_build_folder_of_the_function(self, project: Path) -> None:
        """The context is ``<project>/build/<fn>``."""
        assert layout(project) == project / "build" / "fn"

    def test_every_template_file_is_copied(self, project: Path) -> None:
        """All template files arrive, sample handler files included."""
        template = files_under(project / "template" / "py-fake")
        built = files_under(layout(project))

        overlaid = {"function/handler.py"}
        for name, content in template.items():
            if name not in overlaid:
                assert built[name] == content, name
        assert "function/handler_test.py" in built

    def test_handler_is_overlaid_on_the_handler_folder(self, project: Path) -> None:
        """The handler's files replace and join the template's samples."""
        function = layout(project) / "function"

        assert (function / "handler.py").read_text() == "# my handler\n"
        assert (function / "lib" / "util.py").read_text() == "# util\n"
        assert (function / "handler_test.py").read_text() == "# sample test\n"

    def test_build_and_template_entries_are_skipped(self, project: Path) -> None:
        """faas-cli never copies a handler's ``build`` or ``template``."""
        function = layout(project) / "function"

        assert not (function / "build").exists()
        assert not (function / "template").exists()

    def test_dotfiles_are_kept(self, project: Path) -> None:
        """Dotfiles of the template and of the handler are copied."""
        context = layout(project)

        assert (context / ".dockerignore").read_text() == "*.pyc\n"
        assert (context / "function" / ".env").read_text() == "A=1\n"
        settings = context / "function" / ".config" / "settings.ini"
        assert settings.read_text() == "[x]\n"

    @pytest.mark.parametrize("mode", [0o600, 0o640, 0o700, 0o755, 0o444])
    def test_file_modes_are_kept(self, project: Path, mode: int) -> None:
        """A handler file keeps its permission bits exactly."""
        source = project / "fn" / "tool"
        source.write_text("x\n")
        source.chmod(mode)

        copied = layout(project) / "function" / "tool"

        assert stat.S_IMODE(copied.stat().st_mode) == mode

    def test_template_script_stays_executable(self, project: Path) -> None:
        """The template's 0755 script is 0755 in the context."""
        script = layout(project) / "entry.sh"

        assert stat.S_IMODE(script.stat().st_mode) == 0o755

    def test_folders_are_private(self, project: Path) -> None:
        """``build/<fn>`` and its handler folder are 0700, as faas-cli makes."""
        context = layout(project)

        assert stat.S_IMODE(context.stat().st_mode) == 0o700
        assert stat.S_IMODE((context / "function").stat().st_mode) == 0o700

    def test_ci_makes_folders_open(
        self, project: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With CI=true faas-cli asks for 0777 (less the umask)."""
        monkeypatch.setenv("CI", "true")
        umask = os.umask(0)
        os.umask(umask)

        context = layout(project)

        assert stat.S_IMODE(context.stat().st_mode) == 0o777 & ~umask

    def test_links_are_followed(self, project: Path, tmp_path: Path) -> None:
        """Linked files and folders arrive as real copies of their targets."""
        outside = tmp_path / "shared"
        (outside / "pkg").mkdir(parents=True)
        (outside / "pkg" / "mod.py").write_text("# shared\n")
        (outside / "key.pem").write_text("pem\n")
        (project / "fn" / "pkg").symlink_to(outside / "pkg")
        (project / "fn" / "key.pem").symlink_to(outside / "key.pem")

        function = layout(project) / "function"

        assert not (function / "pkg").is_symlink()
        assert (function / "pkg" / "mod.py").read_text() == "# shared\n"
        assert not (function / "key.pem").is_symlink()
        assert (function / "key.pem").read_text() == "pem\n"

    def test_link_loop_is_refused(self, project: Path) -> None:
        """A folder linking to its parent is an error, not endless copying."""
        (project / "fn" / "lib" / "loop").symlink_to(project / "fn" / "lib")

        with pytest.raises(ConfigurationError, match="links back to"):
            layout(project)

    def test_dangling_link_names_the_file(self, project: Path) -> None:
        """A link to nothing is one error naming it, with a hint."""
        (project / "fn" / "gone.txt").symlink_to(project / "nowhere")

        with pytest.raises(ConfigurationError, match=r"gone\.txt") as caught:
            layout(project)

        assert caught.value.hint

    def test_previous_layout_is_replaced(self, project: Path) -> None:
        """Files from an earlier build of the function do not survive."""
        stale = project / "build" / "fn" / "function" / "removed.py"
        stale.parent.mkdir(parents=True)
        stale.write_text("# gone from the handler\n")

        layout(project)

        assert not stale.exists()

    def test_copy_paths_land_in_the_handler_folder(self, project: Path) -> None:
        """``configuration.copy`` entries go to ``build/<fn>/function/<path>``."""
        (project / "common" / "deep").mkdir(parents=True)
        (project / "common" / "deep" / "shared.py").write_text("# common\n")
        write_stack(project, FUNCTION, "configuration:\n  copy:\n    - ./common\n")

        function = layout(project) / "function"

        shared = function / "common" / "deep" / "shared.py"
        assert shared.read_text() == "# common\n"

    @pytest.mark.parametrize("path", ["..", ".", "../elsewhere"])
    def test_copy_path_outside_the_project_is_refused(
        self, project: Path, path: str
    ) -> None:
        """A copy path must be inside the project and not the project."""
        write_stack(project, FUNCTION, f"configuration:\n  copy:\n    - {path}\n")

        with pytest.raises(ConfigurationError, match="outside the project"):
            layout(project)

    def test_package_marker_added_when_dockerfile_lacks_it(self, project: Path) -> None:
        """Handler tests import ``.handler``, so the folder needs __init__.py."""
        function = layout(project) / "function"

        assert (function / "__init__.py").read_bytes() == b""

    def test_dockerfile_lang_overlays_the_context_itself(self, project: Path) -> None:
        """``lang: dockerfile`` copies the handler to ``build/<fn>`` only."""
        (project / "fn" / "Dockerfile").write_text("FROM scratch\n")
        write_stack(project, FUNCTION.replace("py-fake", "dockerfile"))

        context = layout(project)

        assert (context / "Dockerfile").read_text() == "FROM scratch\n"
        assert (context / "handler.py").read_text() == "# my handler\n"
        assert not (context / "function").exists()
        assert not (context / "__init__.py").exists()

    def test_shipped_template_layout(self, project: Path) -> None:
        """python3-http-auth: runtime, sample test and no extra marker."""
        write_stack(project, FUNCTION.replace("py-fake", "python3-http-auth"))
        (project / "fn" / "handler_test.py").unlink(missing_ok=True)

        context = layout(project)

        shipped = files_under(SHIPPED / "python3-http-auth")
        built = files_under(context)
        assert built["faas_runtime/_server.py"] == shipped["faas_runtime/_server.py"]
        assert built["Dockerfile"] == shipped["Dockerfile"]
        sample = shipped["function/handler_test.py"]
        assert built["function/handler_test.py"] == sample
        # The shipped Dockerfile creates function/__init__.py itself.
        assert "function/__init__.py" not in built


class TestShrinkwrapCommand:
    """``localfaas build --shrinkwrap``: faas-cli's lines, no engine."""

    def test_prints_faas_cli_lines(
        self, project: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Start, shrink-wrapped, done and total lines, in that order."""
        monkeypatch.chdir(project)
        lines: list[str] = []

        images = run_build_command(None, shrinkwrap=True, progress=lines.append)

        assert images == []
        assert lines[:2] == ["[0] > Building fn.", "fn shrink-wrapped to build/fn"]
        assert re.fullmatch(r"\[0\] < Building fn done in \d+\.\d\ds\.", lines[2])
        assert re.fullmatch(r"Total build time: \d+\.\d\ds", lines[3])
        assert len(lines) == 4
        assert (project / "build" / "fn" / "Dockerfile").is_file()

    def test_named_functions_only(self, project: Path) -> None:
        """Only the functions named are laid out."""
        make_handler(project / "other")
        other = FUNCTION.replace("fn:", "other:").replace("./fn", "./other")
        stack_file = write_stack(project, FUNCTION + other)

        run_build_command(stack_file, ["other"], shrinkwrap=True, progress=print)

        assert (project / "build" / "other").is_dir()
        assert not (project / "build" / "fn").exists()

    def test_skip_build_is_announced_and_skipped(self, project: Path) -> None:
        """``skip_build: true`` functions are named and left alone."""
        stack_file = write_stack(project, FUNCTION + "    skip_build: true\n")
        lines: list[str] = []

        run_build_command(stack_file, shrinkwrap=True, progress=lines.append)

        assert lines[0] == "Skipping build of: fn."
        assert not (project / "build" / "fn").exists()

    def test_unknown_function_name(self, project: Path) -> None:
        """A name the stack does not define is one error listing the names."""
        with pytest.raises(ConfigurationError, match=r'"nope".*it defines: fn'):
            run_build_command(project / "stack.yaml", ["nope"], shrinkwrap=True)


class TestInputErrors:
    """Bad input: one error with a hint, before any engine is contacted."""

    def build_project(self, project: Path) -> None:
        """Run a full build (not a shrinkwrap) of the project's stack."""
        run_build_command(project / "stack.yaml", progress=print)

    @pytest.mark.parametrize(
        ("image", "problem"),
        [
            ("Example/Fn:0.1", "must be lower-case"),
            ("example/my fn:0.1", "does not match"),
            ("example/fn:bad tag", "the tag 'bad tag'"),
            ("example/fn@sha256:" + "a" * 64, "a digest"),
            ("example//fn:1", "does not match"),
            ("-fn:1", "does not match"),
        ],
    )
    def test_invalid_image_reference(
        self, project: Path, image: str, problem: str
    ) -> None:
        """An image that cannot tag a build is named, with why and a fix."""
        write_stack(project, FUNCTION.replace("example/fn:0.1", f'"{image}"'))

        with pytest.raises(ConfigurationError) as caught:
            self.build_project(project)

        message = str(caught.value)
        assert f'function "fn": image {image!r} is not a valid image' in message
        assert problem in message
        assert "NAME:TAG in lower case" in (caught.value.hint or "")
        assert not (project / "build").exists()

    def test_missing_handler_folder(self, project: Path) -> None:
        """A handler folder that does not exist is named, with the stack."""
        shutil.rmtree(project / "fn")

        with pytest.raises(ConfigurationError) as caught:
            self.build_project(project)

        assert str(caught.value) == (
            f'function "fn": the handler folder {project / "fn"} does not'
            " exist or is not a folder"
        )
        assert "localfaas new fn --lang py-fake" in (caught.value.hint or "")

    def test_missing_template(self, project: Path) -> None:
        """An unknown lang names the template and what is available."""
        write_stack(project, FUNCTION.replace("py-fake", "py-missing"))

        with pytest.raises(ConfigurationError) as caught:
            self.build_project(project)

        message = str(caught.value)
        assert message.startswith('function "fn": language template: py-missing')
        assert "py-fake" in message
        assert "fix lang:" in (caught.value.hint or "")

    def test_unknown_build_option(self, project: Path) -> None:
        """A build option the template lacks gets faas-cli's wording."""
        write_stack(project, FUNCTION + "    build_options: [gpu]\n")

        with pytest.raises(ConfigurationError) as caught:
            self.build_project(project)

        assert str(caught.value).startswith(
            "You're using a build option unavailable for py-fake: 'gpu'"
        )
        assert "offered: db, dev" in str(caught.value)
        assert "template.yml" in (caught.value.hint or "")

    def test_build_secrets_need_buildkit(self, project: Path) -> None:
        """BuildKit's secret mounts are refused with a way out."""
        secrets = "    build_secrets:\n      token: ./token.txt\n"
        write_stack(project, FUNCTION + secrets)

        with pytest.raises(ConfigurationError, match="need BuildKit"):
            self.build_project(project)

    def test_second_function_checked_before_the_first_builds(
        self, project: Path
    ) -> None:
        """One bad function stops the run before anything is laid out."""
        bad = "  bad:\n    lang: py-fake\n    handler: ./fn\n    image: Bad:1\n"
        write_stack(project, FUNCTION + bad)

        with pytest.raises(ConfigurationError, match='function "bad"'):
            self.build_project(project)

        assert not (project / "build").exists()


class TestImageProblem:
    """Which names can tag a build (distribution's reference grammar)."""

    @pytest.mark.parametrize(
        "image",
        [
            "fn",
            "fn:latest",
            "example/fn:0.1",
            "ghcr.io/owner/fn:v1.2-rc_3",
            "localhost:5000/fn",
            "registry.example.com:443/team/a_b.c-d/fn:x",
            "a__b/c---d:1",
        ],
    )
    def test_valid_references(self, image: str) -> None:
        """Docker accepts these as ``-t`` values."""
        assert image_problem(image) is None

    def test_empty(self) -> None:
        """An empty image has its own reason."""
        assert image_problem("") == "it is empty"

    def test_overlong_tag(self) -> None:
        """Tags are at most 128 characters."""
        assert image_problem("fn:" + "t" * 129) is not None


class TestBuildArguments:
    """faas-cli's precedence and ADDITIONAL_PACKAGE rules (tooling.md §1.5)."""

    def spec(self, **fields: Any) -> FunctionSpec:
        return FunctionSpec(
            name="fn", lang="py-fake", handler=None, image="fn", **fields
        )

    def template(self, project: Path) -> Template:
        return find_template("py-fake", project)

    def test_cli_beats_stack(self, project: Path) -> None:
        """``--build-arg`` overrides the stack's ``build_args``."""
        spec = self.spec(build_args={"A": "stack", "B": "stack"})

        arguments = build_arguments(spec, self.template(project), {"B": "cli"})

        assert arguments == {"A": "stack", "B": "cli", ADDITIONAL_PACKAGE: ""}

    def test_additional_package_always_passed(self) -> None:
        """Even with no options and no template, the argument is there."""
        assert build_arguments(self.spec(), None, {}) == {ADDITIONAL_PACKAGE: ""}

    def test_packages_deduplicated_and_sorted(self, project: Path) -> None:
        """Options' packages and given ones merge once each, sorted."""
        spec = self.spec(
            build_options=["dev", "db"],
            build_args={ADDITIONAL_PACKAGE: "zlib1g gcc"},
        )

        arguments = build_arguments(spec, self.template(project), {})

        assert arguments[ADDITIONAL_PACKAGE] == "gcc libpq-dev make zlib1g"

    def test_proxy_variables_are_forwarded_first(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """http(s)_proxy come from the environment; explicit values win."""
        monkeypatch.setenv("http_proxy", "http://proxy:3128")
        monkeypatch.setenv("https_proxy", "http://proxy:3128")

        arguments = build_arguments(
            self.spec(), None, {"https_proxy": "http://other:8080"}
        )

        assert arguments["http_proxy"] == "http://proxy:3128"
        assert arguments["https_proxy"] == "http://other:8080"

    def test_parse_later_values_win(self) -> None:
        """A repeated key keeps its last value."""
        parsed = parse_build_args(["A=1", "B=x=y", "A=2"])

        assert parsed == {"A": "2", "B": "x=y"}

    def test_parse_repeated_additional_package_concatenates(self) -> None:
        """``ADDITIONAL_PACKAGE`` given twice keeps both lists."""
        parsed = parse_build_args(
            [f"{ADDITIONAL_PACKAGE}=git", f"{ADDITIONAL_PACKAGE}=curl"]
        )

        assert parsed == {ADDITIONAL_PACKAGE: "git curl"}

    @pytest.mark.parametrize("pair", ["=x", "K=", "K", " = "])
    def test_parse_refuses_empty_key_or_value(self, pair: str) -> None:
        """faas-cli rejects an empty key or value; so does localfaas."""
        with pytest.raises(ConfigurationError, match="is not KEY=VALUE"):
            parse_build_args([pair])


# Messages a real engine (20.10, classic builder) sent for a RUN step that
# failed: the step line and its newline arrive as separate messages.
FAILED_RUN: list[dict[str, Any]] = [
    {"stream": "Step 1/2 : FROM localfaas/python-base:bookworm"},
    {"stream": "\n"},
    {"stream": " ---> f4c8263c1053\n"},
    {"stream": "Step 2/2 : RUN python -m pip install -r requirements.txt"},
    {"stream": "\n"},
    {"stream": " ---> Running in 4872a735c975\n"},
    {"stream": "ERROR: No matching distribution found for nope==9\n"},
    {"stream": "Removing intermediate container 4872a735c975\n"},
    {
        "errorDetail": {"code": 1, "message": "The command returned 1"},
        "error": "The command returned 1",
    },
]

SUCCEEDED: list[dict[str, Any]] = [
    {"stream": "Step 1/1 : FROM localfaas/python-base:bookworm"},
    {"stream": "\n ---> f4c8263c1053\n"},
    {"aux": {"ID": "sha256:" + "f" * 64}},
    {"stream": "Successfully built f4c8263c1053\n"},
]


class FakeNetwork:
    def __init__(self, name: str) -> None:
        self.name = name


class FakeClient:
    """The parts of ``docker.DockerClient`` build() uses, replaying messages."""

    def __init__(self, messages: list[dict[str, Any]], networks: list[str]) -> None:
        self.messages = messages
        self.names = networks
        self.build_calls: list[dict[str, Any]] = []
        self.api = self
        self.networks = self

    def build(self, **options: Any) -> Iterator[dict[str, Any]]:
        self.build_calls.append(options)
        return iter(self.messages)

    def list(self, names: list[str]) -> list[FakeNetwork]:
        # The engine's name filter matches parts of names.
        return [FakeNetwork(n) for n in self.names if any(x in n for x in names)]


class TestBuildStream:
    """build() against replayed engine messages."""

    def spec(self, project: Path) -> FunctionSpec:
        return load_stack(project / "stack.yaml").functions["fn"]

    def test_lines_are_passed_whole(self, project: Path) -> None:
        """A line split over messages reaches progress as one line."""
        client, lines = FakeClient(SUCCEEDED, []), list[str]()

        image = build(
            self.spec(project),
            project,
            client=client,
            build_args={},
            progress=lines.append,
        )

        assert image == "sha256:" + "f" * 64
        assert lines == [
            "Step 1/1 : FROM localfaas/python-base:bookworm",
            " ---> f4c8263c1053",
            "Successfully built f4c8263c1053",
        ]

    @pytest.mark.parametrize(
        ("networks", "mode"), [([], "host"), (["my-bridge-net"], "host")]
    )
    def test_host_network_without_a_bridge(
        self, project: Path, networks: list[str], mode: str
    ) -> None:
        """No network named exactly ``bridge``: RUN steps use the host's."""
        client = FakeClient(SUCCEEDED, networks)

        build(self.spec(project), project, client=client, build_args={}, progress=print)

        assert client.build_calls[0]["network_mode"] == mode

    def test_default_network_with_a_bridge(self, project: Path) -> None:
        """An engine with its bridge keeps the default network."""
        client = FakeClient(SUCCEEDED, ["bridge", "host"])

        build(self.spec(project), project, client=client, build_args={}, progress=print)

        call = client.build_calls[0]
        assert call["network_mode"] is None
        assert call["tag"] == "example/fn:0.1"
        assert call["buildargs"] == {ADDITIONAL_PACKAGE: ""}
        assert call["forcerm"] is True

    def test_failed_step_is_named_with_its_output(self, project: Path) -> None:
        """BuildFailed names the step, repeats its output and hints at pip."""
        client = FakeClient(FAILED_RUN, [])

        with pytest.raises(BuildFailed) as caught:
            build(
                self.spec(project),
                project,
                client=client,
                build_args={},
                progress=print,
            )

        failure = caught.value
        step = "Step 2/2 : RUN python -m pip install -r requirements.txt"
        assert failure.step == step
        assert failure.output == ["ERROR: No matching distribution found for nope==9"]
        assert str(failure).startswith(
            f'building example/fn:0.1 (function "fn") failed at {step}:'
            " The command returned 1"
        )
        assert "  | ERROR: No matching distribution" in str(failure)
        assert "requirements.txt" in (failure.hint or "")


@pytest.fixture
def open_folder() -> Iterator[Path]:
    """A folder anyone may enter (pytest's tmp_path is 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="localfaas-builder-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


class TestEngine:
    """No engine, or one this user may not use: one line and a hint."""

    def test_closed_port(self, project: Path, no_engine: str) -> None:
        """DOCKER_HOST at a closed port: the one-line message, refused."""
        with pytest.raises(EngineUnavailable) as caught:
            run_build_command(project / "stack.yaml", progress=print)

        assert str(caught.value) == (
            f"no Docker engine at {no_engine}: start one (scripts/docker-engine"
            " as root) or use localfaas up without --docker"
        )
        assert "connection was refused" in (caught.value.hint or "")

    def test_missing_socket(
        self, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """DOCKER_HOST at a socket that does not exist says so."""
        socket_path = tmp_path / "docker.sock"
        monkeypatch.setenv("DOCKER_HOST", f"unix://{socket_path}")

        with pytest.raises(EngineUnavailable) as caught:
            run_build_command(project / "stack.yaml", progress=print)

        assert "\n" not in str(caught.value)
        assert str(caught.value).startswith(f"no Docker engine at unix://{socket_path}")
        assert f"no socket at {socket_path}" in (caught.value.hint or "")

    def test_nothing_laid_out_without_an_engine(self, project: Path) -> None:
        """The engine is asked for before any build folder is written."""
        with pytest.raises(EngineUnavailable):
            run_build_command(project / "stack.yaml", progress=print)

        assert not (project / "build").exists()

    @pytest.mark.skipif(os.geteuid() != 0, reason="setpriv needs root")
    @pytest.mark.skipif(shutil.which("setpriv") is None, reason="no setpriv")
    def test_permission_denied(self, open_folder: Path) -> None:
        """A socket the user may not open is reported as such, with a fix."""
        path = open_folder / "docker.sock"
        probe = (
            "from localfaas.builder import EngineUnavailable, connect\n"
            "try:\n    connect()\n"
            "except EngineUnavailable as error:\n"
            "    print(error.message); print(error.hint)\n"
        )

        with socket.socket(socket.AF_UNIX) as server:
            server.bind(str(path))
            server.listen()
            path.chmod(0o600)
            result = run_as_nobody(probe, {"DOCKER_HOST": f"unix://{path}"})

        message, hint = result.stdout.splitlines()
        assert (
            message
            == f"permission denied on the Docker engine's socket at unix://{path}"
        )
        assert "docker group" in hint


def run_as_nobody(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run Python *code* as user nobody with a plain environment."""
    nobody = pwd.getpwnam("nobody")
    command = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}"]
    return subprocess.run(
        [*command, "--clear-groups", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PATH": os.defpath, "HOME": "/", **env},
        cwd="/",
        timeout=30,
        check=True,
    )


def test_build_stack_with_no_functions_needs_no_engine(tmp_path: Path) -> None:
    """An empty selection builds nothing and contacts nothing."""
    stack = Stack(path=tmp_path / "stack.yaml", gateway="", functions={})

    assert (
        build_stack(stack, [], shrinkwrap_only=False, build_args={}, progress=print)
        == []
    )
