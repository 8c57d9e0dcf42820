"""Function templates: finding them, and ``new`` as faas-cli does it.

A template is a folder ``<lang>/`` holding ``template.yml`` (tooling.md
§2.1), a Dockerfile, an entry point and a handler folder. faas-cli only
knows ``./template/<lang>/`` in the working directory; localfaas looks
there first and then in the templates it ships (the repository's top-level
``template/`` folder), so a project can override a shipped template by
pulling or copying its own.

``lang: dockerfile`` (any case) names no template: faas-cli builds the
handler folder's own Dockerfile and reads no ``template.yml`` for it
(builder ``isLanguageTemplate``); :func:`uses_template` says so. Like
faas-cli, ``new --lang Dockerfile`` is lower-cased and then treated as any
other template (the store has one called ``dockerfile``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localfaas.stack import (
    DEFAULT_GATEWAY,
    STACK_FILE_NAMES,
    StackError,
    append_function,
    check_append,
    function_name_problem,
    parse_yaml,
    write_new_stack,
)

__all__ = [
    "NewFunctionError",
    "Template",
    "TemplateError",
    "find_template",
    "list_templates",
    "new_function",
    "shipped_templates_dir",
    "uses_template",
]

TEMPLATE_FILE = "template.yml"

# What faas-cli new adds to .gitignore: build outputs, pulled templates and
# the local-run secrets folder.
_IGNORED = ("template", "build", ".secrets")


class TemplateError(Exception):
    """A template is missing, or its ``template.yml`` cannot be used."""


class NewFunctionError(Exception):
    """``new`` refuses: the name is invalid or the folder already exists."""


@dataclass(frozen=True)
class Template:
    """A template folder and what its ``template.yml`` says."""

    name: str
    path: Path
    language: str
    fprocess: str
    welcome_message: str
    handler_folder: str = "function"
    build_options: dict[str, list[str]] = field(default_factory=dict)


def shipped_templates_dir() -> Path:
    """The folder of templates that come with localfaas."""
    # The repository layout: emulator/localfaas/templates.py -> template/.
    # Kept in one function so a wheel can point elsewhere later.
    return Path(__file__).resolve().parents[2] / "template"


def uses_template(lang: str) -> bool:
    """False for ``dockerfile``, which builds the handler's own Dockerfile."""
    return lang.lower() != "dockerfile"


def find_template(lang: str, project_dir: Path) -> Template:
    """The template for *lang*: the project's ``template/`` first, then ours."""
    folder = _locate(lang, project_dir)
    if folder is None:
        raise TemplateError(
            f"language template: {lang} not supported, build a custom"
            f" Dockerfile, error: template {lang} not found;"
            f" {_available_hint(project_dir)}"
        )
    return _read_template(folder)


def list_templates(project_dir: Path) -> list[Template]:
    """Every template available to *project_dir*, by name; the project's win."""
    found: dict[str, Path] = {}
    for root in (shipped_templates_dir(), project_dir / "template"):
        found.update({folder.name: folder for folder in _template_folders(root)})
    return [_read_template(found[name]) for name in sorted(found)]


def new_function(
    name: str,
    lang: str,
    project_dir: Path,
    handler: str | None = None,
    *,
    gateway: str = DEFAULT_GATEWAY,
    prefix: str = "",
    append: Path | None = None,
    requests: Mapping[str, str] | None = None,
    limits: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """Do what ``faas-cli new NAME --lang LANG`` does; return the notes.

    Copies the template's handler folder to ``<project_dir>/<handler>``
    (default: *name*, mode 0700), adds ``template``, ``build`` and
    ``.secrets`` to ``.gitignore``, and writes ``stack.yaml`` or appends to
    *append* (relative to *project_dir*). Every check runs before anything
    is written, in faas-cli's order. Returns the template's welcome
    message, ``""`` when it has none.
    """
    problem = function_name_problem(name)
    if problem:
        raise NewFunctionError(f'{problem}; "{name}" is not a valid name')

    # faas-cli lower-cases only this spelling of the --lang flag.
    lang = "dockerfile" if lang == "Dockerfile" else lang
    template = _template_for_new(lang, project_dir)
    stack_file = project_dir / (append or STACK_FILE_NAMES[0])
    if append is not None:
        check_append(stack_file, name, env)

    folder_name = handler or name
    folder = project_dir / folder_name
    _check_free(folder, folder_name, stack_file, append is not None)

    _copy_handler(template, folder)
    _ignore_outputs(project_dir / ".gitignore")
    _write_stack(
        stack_file,
        append is not None,
        gateway=gateway,
        name=name,
        lang=lang,
        handler=folder_name,
        image=_new_image(name, prefix),
        requests=requests,
        limits=limits,
        env=env,
    )
    return template.welcome_message


# --- finding and reading -------------------------------------------------


def _locate(lang: str, project_dir: Path) -> Path | None:
    """The first ``<root>/<lang>/`` holding a template.yml, or None."""
    # A lang with a path separator must not reach outside the roots.
    if not lang or "/" in lang or "\\" in lang or lang in (".", ".."):
        return None

    for root in (project_dir / "template", shipped_templates_dir()):
        if (root / lang / TEMPLATE_FILE).is_file():
            return root / lang
    return None


def _template_folders(root: Path) -> list[Path]:
    """Sub-folders of *root* that hold a template.yml (faas-cli's test)."""
    if not root.is_dir():
        return []
    return [
        folder
        for folder in sorted(root.iterdir())
        if (folder / TEMPLATE_FILE).is_file()
    ]


def _available_hint(project_dir: Path) -> str:
    """Name what is available, by folder name only (nothing is parsed)."""
    names = sorted(
        {
            folder.name
            for root in (project_dir / "template", shipped_templates_dir())
            for folder in _template_folders(root)
        }
    )
    if not names:
        return (
            "no templates found; pull some into ./template with"
            ' "faas-cli template store pull NAME"'
        )
    return (
        f"available: {', '.join(names)} (from {project_dir / 'template'} and"
        " localfaas's own templates)"
    )


def _read_template(folder: Path) -> Template:
    """Parse ``<folder>/template.yml`` into a :class:`Template`."""
    source = folder / TEMPLATE_FILE
    try:
        document = parse_yaml(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        problem = f"{source}: cannot read the template: {error}"
        raise TemplateError(problem) from error

    fields = _mapping(document, source, "the top level")
    return Template(
        name=folder.name,
        path=folder,
        language=_text(fields.get("language"), source, "language"),
        fprocess=_text(fields.get("fprocess"), source, "fprocess"),
        welcome_message=_text(
            fields.get("welcome_message"),
            source,
            "welcome_message",
        ),
        handler_folder=_text(fields.get("handler_folder"), source, "handler_folder")
        or "function",
        build_options=_build_options(fields.get("build_options"), source),
    )


def _build_options(value: object, source: Path) -> dict[str, list[str]]:
    """``build_options``: a list of ``{name, packages}``."""
    if value is None:
        return {}
    if not isinstance(value, list):
        raise TemplateError(
            f"{source}: build_options must be a list of {{name, packages}}"
        )

    options: dict[str, list[str]] = {}
    for entry in value:
        fields = _mapping(entry, source, "a build_options entry")
        packages = fields.get("packages") or []
        if not isinstance(packages, list):
            raise TemplateError(f"{source}: build option packages must be a list")
        name = _text(fields.get("name"), source, "build option name")
        options[name] = [_text(p, source, "package") for p in packages]
    return options


def _mapping(value: object, source: Path, what: str) -> dict[Any, Any]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    raise TemplateError(f"{source}: {what} must be a map of 'key: value' lines")


def _text(value: object, source: Path, key: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str | int | float):
        return str(value)
    raise TemplateError(f"{source}: {key} must be a single value")


# --- new -----------------------------------------------------------------


def _template_for_new(lang: str, project_dir: Path) -> Template:
    """The template, or faas-cli new's own not-found message."""
    folder = _locate(lang, project_dir)
    if folder is None:
        raise TemplateError(
            f'template: "{lang}" was not found in the templates folder or in'
            f" the store; localfaas does not download templates, so pull it"
            f' with "faas-cli template store pull {lang}" or pick one;'
            f" {_available_hint(project_dir)}"
        )
    return _read_template(folder)


def _check_free(folder: Path, shown: str, stack: Path, appending: bool) -> None:
    """faas-cli's last two refusals: an existing folder or stack file."""
    if folder.exists() or folder.is_symlink():
        raise NewFunctionError(
            f"folder: {shown} already exists; choose another function name"
            " or --handler folder, or move that folder away"
        )
    if not appending and stack.exists():
        hint = f'Try "faas-cli new --append {stack}" instead'
        raise StackError(f"file: {stack} already exists. {hint}")


def _copy_handler(template: Template, folder: Path) -> None:
    """Create *folder* (0700, as faas-cli) with the template's handler files."""
    source = template.path / template.handler_folder
    if not source.is_dir():
        raise TemplateError(
            f"{template.path / TEMPLATE_FILE}: handler_folder"
            f" {template.handler_folder!r} does not exist in the template;"
            " fix the template or pull it again"
        )

    folder.mkdir(mode=0o700)
    shutil.copytree(source, folder, dirs_exist_ok=True)
    # copytree gives the folder the source's mode and mkdir's mode passes
    # through the umask; faas-cli's folder is 0700 either way.
    os.chmod(folder, 0o700)


def _ignore_outputs(gitignore: Path) -> None:
    """Add ``template``, ``build`` and ``.secrets`` lines when missing."""
    existing = gitignore.read_text(encoding="utf-8") if gitignore.exists() else ""
    present = {line.strip() for line in existing.splitlines()}
    missing = [entry for entry in _IGNORED if entry not in present]
    if not missing:
        return

    prefix = "\n" if existing and not existing.endswith("\n") else ""
    with gitignore.open("a", encoding="utf-8") as stream:
        stream.write(prefix + "".join(f"{entry}\n" for entry in missing))


def _new_image(name: str, prefix: str) -> str:
    """``NAME:latest``, under ``PREFIX/`` when a prefix is given."""
    prefix = prefix.strip()
    return f"{prefix}/{name}:latest" if prefix else f"{name}:latest"


def _write_stack(
    stack_file: Path,
    appending: bool,
    *,
    gateway: str,
    name: str,
    lang: str,
    handler: str,
    image: str,
    requests: Mapping[str, str] | None,
    limits: Mapping[str, str] | None,
    env: Mapping[str, str] | None,
) -> None:
    if appending:
        append_function(
            stack_file,
            name,
            lang,
            handler,
            image,
            requests=requests,
            limits=limits,
            env=env,
        )
        return

    write_new_stack(
        stack_file,
        gateway,
        name,
        lang,
        handler,
        image,
        requests=requests,
        limits=limits,
    )
