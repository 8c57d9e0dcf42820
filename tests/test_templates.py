"""Template lookup and ``new`` (tooling.md §2, §3.1).

Templates are small fakes written into ``tmp_path``; "shipped" templates
come from a second fake folder put in place of the repository's
``template/`` (the real one is checked once, for its location only).
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from localfaas import templates
from localfaas.stack import StackError, load_stack
from localfaas.templates import (
    NewFunctionError,
    Template,
    TemplateError,
    find_template,
    list_templates,
    new_function,
    shipped_templates_dir,
    uses_template,
)

STACK_TEXT = """\
version: 1.0
provider:
  name: openfaas
  gateway: http://127.0.0.1:8080
functions:
  hello:
    lang: py-fake
    handler: ./hello
    image: hello:latest

"""


def make_template(
    root: Path,
    name: str,
    template_yml: str | None = None,
    handler_folder: str = "function",
) -> Path:
    """A fake template: template.yml plus a handler folder with files."""
    folder = root / name
    (folder / handler_folder / "sub").mkdir(parents=True)
    (folder / handler_folder / "handler.py").write_text(f"# {name}\n")
    (folder / handler_folder / "sub" / "data.txt").write_text("data\n")
    (folder / "Dockerfile").write_text("FROM scratch\n")
    if template_yml is None:
        template_yml = (
            f"language: {name}\nfprocess: python index.py\n"
            f"welcome_message: Hello from {name}\n"
        )
    (folder / "template.yml").write_text(template_yml)
    return folder


@pytest.fixture
def shipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty stand-in for the templates localfaas ships."""
    folder = tmp_path / "shipped"
    folder.mkdir()
    monkeypatch.setattr(templates, "shipped_templates_dir", lambda: folder)
    return folder


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder with an empty ``template/``."""
    folder = tmp_path / "project"
    (folder / "template").mkdir(parents=True)
    return folder


def test_shipped_templates_are_the_repository_folder() -> None:
    """Without a wheel, the shipped templates are the repo's template/."""
    root = Path(__file__).resolve().parents[1]

    assert shipped_templates_dir() == root / "template"


class TestFinding:
    """Where a template is looked for, and what it says."""

    def test_reads_template_yml(self, shipped: Path, project: Path) -> None:
        """Every field of template.yml is read."""
        make_template(
            shipped,
            "py-fake",
            "language: python3-fake\nfprocess: python index.py\n"
            "welcome_message: |\n  Line one.\n  Line two.\n"
            "handler_folder: src\n"
            "build_options:\n  - name: dev\n    packages: [gcc, make]\n"
            "  - name: libpq\n    packages:\n      - libpq-dev\n",
            handler_folder="src",
        )

        found = find_template("py-fake", project)

        assert found == Template(
            name="py-fake",
            path=shipped / "py-fake",
            language="python3-fake",
            fprocess="python index.py",
            welcome_message="Line one.\nLine two.\n",
            handler_folder="src",
            build_options={"dev": ["gcc", "make"], "libpq": ["libpq-dev"]},
        )

    def test_defaults(self, shipped: Path, project: Path) -> None:
        """handler_folder defaults to ``function``; the rest to empty."""
        make_template(shipped, "bare", "language: bare\n")

        found = find_template("bare", project)

        assert found.handler_folder == "function"
        assert found.fprocess == ""
        assert found.welcome_message == ""
        assert found.build_options == {}

    def test_project_template_wins(self, shipped: Path, project: Path) -> None:
        """./template/<lang> overrides the shipped template of that name."""
        make_template(shipped, "py-fake")
        make_template(project / "template", "py-fake", "language: mine\n")

        found = find_template("py-fake", project)

        assert found.path == project / "template" / "py-fake"
        assert found.language == "mine"

    def test_shipped_template_is_the_fallback(
        self, shipped: Path, project: Path
    ) -> None:
        """A template the project lacks comes from localfaas."""
        make_template(shipped, "py-fake")

        assert find_template("py-fake", project).path == shipped / "py-fake"

    def test_folder_without_template_yml_is_no_template(
        self, shipped: Path, project: Path
    ) -> None:
        """faas-cli needs template.yml; a bare folder does not count."""
        (project / "template" / "py-fake").mkdir()
        make_template(shipped, "py-fake")

        assert find_template("py-fake", project).path == shipped / "py-fake"

    def test_missing_template_message(self, shipped: Path, project: Path) -> None:
        """faas-cli build's wording, then what is available."""
        make_template(shipped, "zeta")
        make_template(project / "template", "alpha")

        with pytest.raises(TemplateError) as caught:
            find_template("python9", project)

        message = str(caught.value)
        assert message.startswith(
            "language template: python9 not supported, build a custom"
            " Dockerfile, error: template python9 not found"
        )
        assert "available: alpha, zeta" in message

    def test_no_templates_at_all(self, shipped: Path, project: Path) -> None:
        """With nothing available, the hint says how to get templates."""
        with pytest.raises(TemplateError, match="template store pull"):
            find_template("python3-http", project)

    @pytest.mark.parametrize("lang", ["../shipped/py-fake", "..", "", "a/b"])
    def test_lang_cannot_leave_the_template_folders(
        self, shipped: Path, project: Path, lang: str
    ) -> None:
        """A lang is a folder name, never a path."""
        make_template(shipped, "py-fake")

        with pytest.raises(TemplateError):
            find_template(lang, project)

    def test_broken_template_yml(self, shipped: Path, project: Path) -> None:
        """An unreadable template.yml is named in the error."""
        make_template(shipped, "broken", "language: [unclosed\n")

        with pytest.raises(TemplateError) as caught:
            find_template("broken", project)

        assert str(shipped / "broken" / "template.yml") in str(caught.value)

    def test_dockerfile_uses_no_template(self) -> None:
        """``lang: dockerfile`` builds the handler's own Dockerfile."""
        assert not uses_template("dockerfile")
        assert not uses_template("Dockerfile")
        assert uses_template("python3-http")


def test_list_templates(shipped: Path, project: Path) -> None:
    """Both sources, sorted by name, the project's copy winning."""
    make_template(shipped, "zeta")
    make_template(shipped, "shared", "language: from-shipped\n")
    make_template(project / "template", "shared", "language: from-project\n")
    make_template(project / "template", "alpha")
    (project / "template" / "not-a-template").mkdir()

    found = list_templates(project)

    assert [t.name for t in found] == ["alpha", "shared", "zeta"]
    assert found[1].language == "from-project"


class TestNew:
    """``new`` as faas-cli does it."""

    def test_creates_everything(self, shipped: Path, project: Path) -> None:
        """Folder (0700) with the handler files, .gitignore and stack.yaml."""
        make_template(shipped, "py-fake")

        notes = new_function("hello", "py-fake", project)

        folder = project / "hello"
        assert notes == "Hello from py-fake"
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert (folder / "handler.py").read_text() == "# py-fake\n"
        assert (folder / "sub" / "data.txt").read_text() == "data\n"
        assert not (folder / "Dockerfile").exists()
        assert (project / ".gitignore").read_text() == "template\nbuild\n.secrets\n"
        assert (project / "stack.yaml").read_text() == STACK_TEXT

    def test_result_loads_and_finds_its_template(
        self, shipped: Path, project: Path
    ) -> None:
        """What new writes is a stack file load_stack accepts."""
        make_template(shipped, "py-fake")
        new_function("hello", "py-fake", project)

        fn = load_stack(project / "stack.yaml", {}).functions["hello"]

        assert fn.handler == project / "hello"
        assert fn.image == "hello:latest"
        assert find_template(fn.lang, project).name == "py-fake"

    def test_options(self, shipped: Path, project: Path) -> None:
        """--handler, --prefix, --gateway and resources reach the file."""
        make_template(shipped, "py-fake")

        new_function(
            "hello",
            "py-fake",
            project,
            handler="src",
            gateway="http://gw:31112",
            prefix=" ghcr.io/me ",
            limits={"memory": "128Mi"},
        )

        assert (project / "src" / "handler.py").exists()
        assert (project / "stack.yaml").read_text() == (
            "version: 1.0\nprovider:\n  name: openfaas\n"
            "  gateway: http://gw:31112\nfunctions:\n"
            "  hello:\n    lang: py-fake\n    handler: ./src\n"
            "    image: ghcr.io/me/hello:latest\n"
            "    limits:\n      memory: 128Mi\n\n"
        )

    def test_custom_handler_folder(self, shipped: Path, project: Path) -> None:
        """The template's handler_folder is what gets copied."""
        make_template(shipped, "py-fake", "language: x\nhandler_folder: src\n", "src")

        new_function("hello", "py-fake", project)

        assert (project / "hello" / "handler.py").exists()

    def test_gitignore_entries_are_not_repeated(
        self, shipped: Path, project: Path
    ) -> None:
        """Existing lines stay; only missing ones are added."""
        make_template(shipped, "py-fake")
        (project / ".gitignore").write_text("*.pyc\nbuild")

        new_function("hello", "py-fake", project)
        new_function("world", "py-fake", project, append=Path("stack.yaml"))

        assert (project / ".gitignore").read_text() == (
            "*.pyc\nbuild\ntemplate\n.secrets\n"
        )

    def test_append(self, shipped: Path, project: Path) -> None:
        """--append adds only the function block to an existing file."""
        make_template(shipped, "py-fake")
        new_function("hello", "py-fake", project)

        notes = new_function("world", "py-fake", project, append=Path("stack.yaml"))

        assert notes == "Hello from py-fake"
        assert (project / "stack.yaml").read_text() == STACK_TEXT + (
            "  world:\n    lang: py-fake\n    handler: ./world\n"
            "    image: world:latest\n\n"
        )
        functions = load_stack(project / "stack.yaml", {}).functions
        assert list(functions) == ["hello", "world"]

    def test_dockerfile_flag_is_lower_cased(
        self,
        shipped: Path,
        project: Path,
    ) -> None:
        """faas-cli lower-cases ``--lang Dockerfile`` only."""
        make_template(shipped, "dockerfile", "language: dockerfile\n")

        new_function("img", "Dockerfile", project)

        assert "    lang: dockerfile\n" in (project / "stack.yaml").read_text()

    @pytest.mark.parametrize("name", ["Hello", "hello_world", "-x", "a" * 64])
    def test_invalid_name(self, shipped: Path, project: Path, name: str) -> None:
        """faas-cli's wording; nothing is created."""
        make_template(shipped, "py-fake")

        with pytest.raises(NewFunctionError) as caught:
            new_function(name, "py-fake", project)

        assert name in str(caught.value)
        assert sorted(p.name for p in project.iterdir()) == ["template"]

    def test_invalid_name_text(self, shipped: Path, project: Path) -> None:
        """The rule is faas-cli's sentence."""
        with pytest.raises(
            NewFunctionError,
            match=r"^function name can only contain a-z, 0-9 and dashes",
        ):
            new_function("Hello", "py-fake", project)

    def test_missing_template(self, shipped: Path, project: Path) -> None:
        """faas-cli new's wording for a template it cannot find."""
        make_template(shipped, "py-fake")

        with pytest.raises(TemplateError) as caught:
            new_function("hello", "python9", project)

        message = str(caught.value)
        where = "in the templates folder or in the store"
        assert message.startswith(f'template: "python9" was not found {where}')
        assert "available: py-fake" in message
        assert not (project / "hello").exists()

    def test_existing_folder(self, shipped: Path, project: Path) -> None:
        """faas-cli's refusal; the folder is left untouched."""
        make_template(shipped, "py-fake")
        (project / "hello").mkdir()
        (project / "hello" / "mine.py").write_text("keep")

        with pytest.raises(NewFunctionError, match=r"^folder: hello already exists"):
            new_function("hello", "py-fake", project)

        assert [p.name for p in (project / "hello").iterdir()] == ["mine.py"]
        assert not (project / "stack.yaml").exists()

    def test_existing_stack_file(self, shipped: Path, project: Path) -> None:
        """faas-cli's refusal, pointing at --append; no folder is made."""
        make_template(shipped, "py-fake")
        stack = project / "stack.yaml"
        stack.write_text(STACK_TEXT)

        with pytest.raises(StackError) as caught:
            new_function("world", "py-fake", project)

        hint = f'Try "faas-cli new --append {stack}" instead'
        assert str(caught.value) == f"file: {stack} already exists. {hint}"
        assert not (project / "world").exists()

    def test_append_duplicate_creates_nothing(
        self, shipped: Path, project: Path
    ) -> None:
        """Append problems are found before the folder is made."""
        make_template(shipped, "py-fake")
        (project / "stack.yaml").write_text(STACK_TEXT)

        with pytest.raises(StackError, match="Function hello already exists"):
            new_function(
                "hello",
                "py-fake",
                project,
                handler="other",
                append=Path("stack.yaml"),
            )

        assert not (project / "other").exists()
        assert not (project / ".gitignore").exists()

    def test_append_to_missing_file(self, shipped: Path, project: Path) -> None:
        """faas-cli's not-found wording; nothing is created."""
        make_template(shipped, "py-fake")

        with pytest.raises(StackError, match="unable to find file"):
            new_function("hello", "py-fake", project, append=Path("fns.yml"))

        assert not (project / "hello").exists()

    def test_missing_handler_folder_in_template(
        self, shipped: Path, project: Path
    ) -> None:
        """A template without its handler folder is reported, not half-used."""
        broken = make_template(
            shipped, "py-fake", "language: x\nhandler_folder: nope\n"
        )

        with pytest.raises(TemplateError) as caught:
            new_function("hello", "py-fake", project)

        assert str(broken / "template.yml") in str(caught.value)
        assert "'nope'" in str(caught.value)
        assert not (project / "hello").exists()
