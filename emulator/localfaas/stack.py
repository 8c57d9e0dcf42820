"""The stack file (``stack.yaml``), read and written by faas-cli's rules.

:func:`load_stack` follows openfaas/go-sdk ``stack.ParseYAMLFile`` (the
parser faas-cli 0.18 uses; tooling.md §1):

1. the whole text goes through :func:`~localfaas.envsubst.substitute`
   first, so ``${VAR}`` may appear anywhere, even in keys;
2. the YAML is decoded the way ``gopkg.in/yaml.v3`` decodes into Go
   strings: a scalar keeps the text it was written with (``0.25`` stays
   ``"0.25"``, ``true`` stays ``"true"``, an empty value is ``""``),
   duplicate keys are an error, unknown keys are ignored;
3. ``provider.name`` must be ``openfaas`` and ``version``, when present,
   ``1.0``, refused with faas-cli's own messages;
4. each function is checked and normalised: the name must be a DNS label,
   the handler folder is resolved against the stack file's folder, the
   image gets ``:latest`` when it has no tag, and the files listed in
   ``environment_file`` are merged over ``environment`` in list order.

``environment_file`` paths are relative to the **working directory**, not
to the stack file: faas-cli reads them with ``os.ReadFile(path)``
(openfaas/faas-cli commands/deploy.go ``readFiles``), and a stack file that
works with faas-cli must work here. Their contents are not substituted.

Every problem is a :class:`StackError` whose message starts with the stack
file (and the line, when known), names the function and the value, and says
what to do. :func:`write_new_stack` and :func:`append_function` write text
byte for byte as ``faas-cli new`` does (commands/new_function.go).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from localfaas.envsubst import EnvsubstError, substitute

__all__ = [
    "DEFAULT_GATEWAY",
    "FUNCTION_NAME_RULE",
    "STACK_FILE_NAMES",
    "FunctionSpec",
    "Stack",
    "StackError",
    "TemplateSource",
    "append_function",
    "check_append",
    "find_stack_file",
    "function_name_problem",
    "load_stack",
    "parse_yaml",
    "select",
    "tag_image",
    "write_new_stack",
]

DEFAULT_GATEWAY = "http://127.0.0.1:8080"

# faas-cli looks for stack.yaml first since 0.17.1 (tooling.md §1.4).
STACK_FILE_NAMES = ("stack.yaml", "stack.yml")

# faas-cli's wording (commands/new_function.go validateFunctionName).
FUNCTION_NAME_RULE = "function name can only contain a-z, 0-9 and dashes"

# An RFC 1123 label, as Kubernetes requires of a Service name.
_FUNCTION_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_MAX_FUNCTION_NAME = 63

_PROVIDER_NAME = "openfaas"

# faas-cli new's text (prepareYAMLContent), line for line.
_NEW_STACK = """\
version: 1.0
provider:
  name: openfaas
  gateway: {gateway}
functions:
"""
_FUNCTION_BLOCK = """\
  {name}:
    lang: {lang}
    handler: {handler}
    image: {image}
"""
_VALID_VERSIONS = ("1.0",)


class StackError(Exception):
    """The stack file cannot be found, read, substituted, parsed or used."""


@dataclass(frozen=True)
class TemplateSource:
    """One ``configuration.templates`` entry: where to pull a template."""

    name: str
    source: str | None = None


@dataclass(frozen=True)
class FunctionSpec:
    """One function of a stack file, normalised as faas-cli uses it.

    ``environment`` already holds the ``environment_file`` values (later
    files win); ``environment_file`` keeps their absolute paths so a watcher
    can follow them. ``constraints``, ``limits`` and ``requests`` are None
    when the stack file does not set them, because faas-cli treats an
    absent list differently from an empty one (``--constraint``).
    """

    name: str
    lang: str
    handler: Path | None
    image: str
    fprocess: str | None = None
    environment: dict[str, str] = field(default_factory=dict)
    environment_file: list[Path] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    limits: dict[str, str] | None = None
    requests: dict[str, str] | None = None
    constraints: list[str] | None = None
    build_args: dict[str, str] = field(default_factory=dict)
    build_options: list[str] = field(default_factory=list)
    build_secrets: dict[str, str] = field(default_factory=dict)
    namespace: str | None = None
    skip_build: bool = False
    readonly_root_filesystem: bool = False


@dataclass(frozen=True)
class Stack:
    """A loaded stack file; ``functions`` keeps the file's order."""

    path: Path
    gateway: str
    functions: dict[str, FunctionSpec]
    templates: list[TemplateSource] = field(default_factory=list)
    copy: list[str] = field(default_factory=list)


def find_stack_file(folder: Path) -> Path:
    """Return ``stack.yaml`` in *folder*, else ``stack.yml``, as faas-cli."""
    for name in STACK_FILE_NAMES:
        candidate = folder / name
        if candidate.is_file():
            return candidate

    looked = " or ".join(str(folder / name) for name in STACK_FILE_NAMES)
    raise StackError(
        f"no stack file found: looked for {looked}; create one with"
        ' "localfaas new NAME --lang LANG" or name a file with -f'
    )


def load_stack(path: Path, env: Mapping[str, str] | None = None) -> Stack:
    """Read the stack file at *path*, substituting ``${VAR}`` from *env*.

    *env* defaults to ``os.environ``; relative ``environment_file`` paths
    are read from the working directory, as faas-cli reads them.
    """
    where = _Where(Path(os.path.abspath(path)))
    document = _read_document(where, os.environ if env is None else env)

    provider = _mapping(document.get("provider"), "provider", where)
    configuration = _mapping(document.get("configuration"), "configuration", where)
    raw_functions = _mapping(document.get("functions"), "functions", where)
    functions = {
        str(key): _function(key, raw, where) for key, raw in raw_functions.items()
    }
    return Stack(
        path=where.path,
        gateway=_text(provider.get("gateway"), "provider.gateway", where),
        functions=functions,
        templates=_template_sources(configuration.get("templates"), where),
        copy=_text_list(configuration.get("copy"), "configuration.copy", where),
    )


def select(
    stack: Stack,
    names: Iterable[str] = (),
    regex: str | None = None,
    filter: str | None = None,
) -> Stack:
    """Keep the functions named, and those matching ``--regex``/``--filter``.

    ``regex`` is searched anywhere in the name (``b`` matches ``fn-b``);
    ``filter`` is a whole-name glob where only ``*`` is special. Empty
    strings mean "not given", as in faas-cli.
    """
    if regex and filter:
        raise StackError(
            f"{stack.path}: pass in a regex or a filter, not both; keep"
            f" --regex {regex!r} or --filter {filter!r}"
        )

    chosen = _named(stack, list(names))
    if regex:
        pattern = _compile_regex(stack, regex)
        chosen = {k: v for k, v in chosen.items() if pattern.search(k)}
    elif filter:
        glob = _filter_glob(filter)
        chosen = {k: v for k, v in chosen.items() if glob.fullmatch(k)}

    if (regex or filter) and not chosen:
        raise StackError(
            f"{stack.path}: no functions matching --filter/--regex were found"
            f" in the YAML file; it defines: {_names(stack)}"
        )
    return replace(stack, functions=chosen)


def tag_image(image: str) -> str:
    """Append ``:latest`` when *image* has no tag or digest.

    Only the last path segment is inspected, as in openfaas/faas-cli
    schema/image.go, so a registry port (``reg:5000/img``) is not a tag and
    a digest (``img@sha256:...``) already pins the image.
    """
    if not image or ":" in image.rsplit("/", 1)[-1]:
        return image
    return image + ":latest"


def function_name_problem(name: str) -> str | None:
    """Say what is wrong with a function name, or None when it is valid."""
    if not _FUNCTION_NAME.fullmatch(name):
        return FUNCTION_NAME_RULE
    if len(name) > _MAX_FUNCTION_NAME:
        return (
            f"function names are at most {_MAX_FUNCTION_NAME} characters"
            f" (a Kubernetes Service name), this one has {len(name)}"
        )
    return None


def write_new_stack(
    path: Path,
    gateway: str,
    name: str,
    lang: str,
    handler: str,
    image: str,
    *,
    requests: Mapping[str, str] | None = None,
    limits: Mapping[str, str] | None = None,
) -> None:
    """Create *path* with one function, as ``faas-cli new`` writes it."""
    _require_name(name, path)
    header = _NEW_STACK.format(gateway=gateway)
    text = header + _function_block(name, lang, handler, image, requests, limits)

    # Exclusive creation: never overwrite a stack file, even in a race.
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        hint = f'Try "faas-cli new --append {path}" instead'
        raise StackError(f"file: {path} already exists. {hint}") from None
    with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
        stream.write(text)


def check_append(
    path: Path,
    name: str,
    env: Mapping[str, str] | None = None,
) -> None:
    """Refuse, as ``faas-cli new --append`` does, to add *name* to *path*."""
    _require_name(name, path)
    if path.suffix not in (".yml", ".yaml"):
        raise StackError(
            f"{path}: when appending to a stack the suffix should be .yml or"
            " .yaml; name a stack file such as stack.yaml"
        )
    if not path.is_file():
        raise StackError(
            f"unable to find file: {path} - stat {path}: no such file or"
            " directory; create it first or drop --append"
        )

    where = _Where(Path(os.path.abspath(path)))
    try:
        document = _read_document(where, os.environ if env is None else env)
    except StackError as error:
        raise StackError(f"Error parsing {path} yml file: {error}") from error
    functions = document.get("functions")
    if isinstance(functions, dict) and name in functions:
        raise StackError(
            f"Function {name} already exists in {path} file. Cannot have"
            " duplicate function names in same yaml file; choose another name"
        )


def append_function(
    path: Path,
    name: str,
    lang: str,
    handler: str,
    image: str,
    *,
    requests: Mapping[str, str] | None = None,
    limits: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
) -> None:
    """Add a function block at the end of *path*, as ``faas-cli new -a``.

    The block lands after whatever section comes last, exactly as with
    faas-cli. Unlike faas-cli, a file that lacks a final newline gets one
    first, so the block cannot fuse with the last line.
    """
    check_append(path, name, env)
    block = _function_block(name, lang, handler, image, requests, limits)

    with path.open("r+", encoding="utf-8") as stream:
        existing = stream.read()
        if existing and not existing.endswith("\n"):
            block = "\n" + block
        stream.write(block)


def parse_yaml(text: str) -> Any:
    """Parse YAML as faas-cli's yaml.v3 reads it into Go strings.

    Every scalar comes back as a ``str`` subclass holding the text as
    written (with its line), lists and mappings as subclasses of ``list``
    and ``dict`` with a ``line``; ``~``/``null``/empty is None. A duplicate
    key or a syntax error raises ``ValueError`` naming the line.
    """
    try:
        # Inside the try: the loader's reader refuses control characters
        # (a stray NUL from a bad paste) as soon as it is made.
        loader = _GoLoader(text)
    except yaml.YAMLError as error:
        raise ValueError(str(error)) from error
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as error:
        raise ValueError(_describe_yaml_error(error)) from error
    except yaml.YAMLError as error:
        raise ValueError(str(error)) from error
    except RecursionError as error:
        # PyYAML recurses once per nesting level.
        raise ValueError("the YAML is nested too deeply to read") from error
    finally:
        loader.dispose()


# --- YAML as Go sees it --------------------------------------------------


class _Text(str):
    """A scalar as written; ``plain`` is False when it was quoted."""

    line: int = 0
    plain: bool = True


class _List(list[Any]):
    """A YAML sequence with the line it starts on."""

    line: int = 0


class _Map(dict[Any, Any]):
    """A YAML mapping with the line it starts on."""

    line: int = 0


class _GoLoader(yaml.SafeLoader):
    """A safe loader that types nothing but null, like yaml.v3 into strings."""


# Drop YAML 1.1's implicit int/float/bool/timestamp typing: Go's decoder
# keeps the source text for a string field, so "0.25" and "on" stay text.
_GoLoader.yaml_implicit_resolvers = {}
_GoLoader.add_implicit_resolver(
    "tag:yaml.org,2002:null",
    re.compile(r"^(?:~|null|Null|NULL|)$"),
    ["~", "n", "N", ""],
)
_GoLoader.add_implicit_resolver(
    "tag:yaml.org,2002:merge", re.compile(r"^(?:<<)$"), ["<"]
)


def _construct_text(loader: yaml.SafeLoader, node: yaml.Node) -> _Text:
    assert isinstance(node, yaml.ScalarNode)
    text = _Text(loader.construct_scalar(node))
    text.line = node.start_mark.line + 1
    text.plain = node.style is None
    return text


def _construct_list(loader: yaml.SafeLoader, node: yaml.Node) -> _List:
    assert isinstance(node, yaml.SequenceNode)
    items = _List(loader.construct_sequence(node, deep=True))
    items.line = node.start_mark.line + 1
    return items


def _construct_map(loader: yaml.SafeLoader, node: yaml.Node) -> _Map:
    assert isinstance(node, yaml.MappingNode)
    _refuse_duplicate_keys(node)
    mapping = _Map(loader.construct_mapping(node, deep=True))
    mapping.line = node.start_mark.line + 1
    return mapping


def _refuse_duplicate_keys(node: yaml.MappingNode) -> None:
    """yaml.v3 refuses a repeated key where PyYAML keeps the last one."""
    seen: dict[str, int] = {}
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode):
            continue
        if key.tag == "tag:yaml.org,2002:merge":
            continue

        line = key.start_mark.line + 1
        if key.value in seen:
            problem = f'mapping key "{key.value}" already defined'
            raise yaml.constructor.ConstructorError(
                None, None, f"{problem} at line {seen[key.value]}", key.start_mark
            )
        seen[key.value] = line


_GoLoader.add_constructor("tag:yaml.org,2002:str", _construct_text)
_GoLoader.add_constructor("tag:yaml.org,2002:seq", _construct_list)
_GoLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)


def _describe_yaml_error(error: yaml.MarkedYAMLError) -> str:
    """One line: the problem and where, without PyYAML's source dump."""
    mark = error.problem_mark or error.context_mark
    problem = error.problem or error.context or "invalid YAML"
    if mark is None:
        return problem
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"


# --- reading the document ------------------------------------------------


@dataclass(frozen=True)
class _Where:
    """Where a value sits, for error messages: file, function, line."""

    path: Path
    function: str | None = None

    def error(self, message: str, value: object = None) -> StackError:
        """A StackError prefixed with ``file:line: function "f":``."""
        line = getattr(value, "line", 0)
        place = f"{self.path}:{line}" if line else str(self.path)
        scope = f' function "{self.function}":' if self.function else ""
        return StackError(f"{place}:{scope} {message}")


def _read_document(where: _Where, env: Mapping[str, str]) -> _Map:
    """Read, substitute, parse and check provider and version."""
    try:
        text = where.path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise where.error(
            "stack file not found; check the path, or create one with"
            ' "localfaas new NAME --lang LANG"'
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise where.error(f"cannot read the stack file: {error}") from error

    try:
        document = parse_yaml(substitute(text, env))
    except EnvsubstError as error:
        raise where.error(f"environment substitution failed at {error}") from error
    except ValueError as error:
        raise where.error(
            f"invalid YAML after environment substitution: {error}"
        ) from error

    mapping = _mapping(document, "the top level", where)
    _check_provider_and_version(mapping, where)
    return mapping


def _check_provider_and_version(document: _Map, where: _Where) -> None:
    """faas-cli's two schema checks, in its order and with its words."""
    provider = _mapping(document.get("provider"), "provider", where)
    name = _text(provider.get("name"), "provider.name", where)
    if name != _PROVIDER_NAME:
        raise where.error(
            f"['{_PROVIDER_NAME}'] is the only valid \"provider.name\" for the"
            f" OpenFaaS CLI, but you gave: {name}; set provider.name: openfaas",
            provider.get("name") or provider,
        )

    version = _text(document.get("version"), "version", where)
    if version and version not in _VALID_VERSIONS:
        valid = "[" + " ".join(_VALID_VERSIONS) + "]"
        raise where.error(
            f"{valid} are the only valid versions for the stack file - found:"
            f" {version}; set version: 1.0",
            document.get("version"),
        )


def _function(key: object, raw: object, stack: _Where) -> FunctionSpec:
    """Check and normalise one ``functions.<name>`` entry."""
    name = _text(key, "the function name", stack)
    where = replace(stack, function=name)
    problem = function_name_problem(name)
    if problem:
        raise where.error(f"{problem}; rename it in the stack file", key)

    fields = _mapping(raw, "the function", where)
    files = _environment_files(fields.get("environment_file"), where)
    environment = _text_map(fields.get("environment"), "environment", where)
    for path in files:
        environment.update(_read_environment_file(path, where))

    handler = _text(fields.get("handler"), "handler", where)
    return FunctionSpec(
        name=name,
        lang=_text(fields.get("lang"), "lang", where),
        handler=_resolve_handler(handler, where),
        image=tag_image(_text(fields.get("image"), "image", where)),
        fprocess=_text(fields.get("fprocess"), "fprocess", where) or None,
        environment=environment,
        environment_file=files,
        secrets=_text_list(fields.get("secrets"), "secrets", where),
        labels=_text_map(fields.get("labels"), "labels", where),
        annotations=_text_map(fields.get("annotations"), "annotations", where),
        limits=_resources(fields.get("limits"), "limits", where),
        requests=_resources(fields.get("requests"), "requests", where),
        constraints=_optional_list(fields.get("constraints"), where),
        build_args=_build_args(fields.get("build_args"), where),
        build_options=_text_list(
            fields.get("build_options"),
            "build_options",
            where,
        ),
        build_secrets=_text_map(
            fields.get("build_secrets"),
            "build_secrets",
            where,
        ),
        namespace=_text(fields.get("namespace"), "namespace", where) or None,
        skip_build=_flag(fields.get("skip_build"), "skip_build", where),
        readonly_root_filesystem=_flag(
            fields.get("readonly_root_filesystem"),
            "readonly_root_filesystem",
            where,
        ),
    )


def _resolve_handler(handler: str, where: _Where) -> Path | None:
    """The handler folder, relative to the stack file's own folder."""
    if not handler:
        return None
    return Path(os.path.normpath(where.path.parent / handler))


def _environment_files(value: object, where: _Where) -> list[Path]:
    """``environment_file`` entries as absolute paths from the working dir."""
    entries = _text_list(value, "environment_file", where)
    return [Path(os.path.abspath(entry)) for entry in entries]


def _read_environment_file(path: Path, where: _Where) -> dict[str, str]:
    """The ``environment`` map of one environment file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise where.error(
            f"environment_file {path} was not found; paths in"
            " environment_file are relative to the working directory (as"
            f" faas-cli reads them), which is {Path.cwd()}"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        problem = f"cannot read environment_file {path}: {error}"
        raise where.error(problem) from error

    try:
        document = parse_yaml(text)
    except ValueError as error:
        problem = f"environment_file {path} is not valid YAML: {error}"
        raise where.error(problem) from error

    # Shape errors name the environment file and line, then the function.
    file_where = _Where(path)
    try:
        content = _mapping(document, "the top level", file_where)
        return _text_map(content.get("environment"), "environment", file_where)
    except StackError as error:
        raise where.error(f"in environment_file {error}") from error


def _template_sources(value: object, where: _Where) -> list[TemplateSource]:
    """``configuration.templates``: a list of ``{name, source}``."""
    sources: list[TemplateSource] = []
    for entry in _list(value, "configuration.templates", where):
        fields = _mapping(entry, "configuration.templates entry", where)
        source = _text(fields.get("source"), "source", where)
        sources.append(
            TemplateSource(
                name=_text(fields.get("name"), "name", where),
                source=source or None,
            )
        )
    return sources


def _resources(value: object, key: str, where: _Where) -> dict[str, str] | None:
    """``limits``/``requests``: only ``memory`` and ``cpu`` exist there."""
    if value is None:
        return None
    fields = _text_map(value, key, where)
    return {name: fields[name] for name in ("memory", "cpu") if name in fields}


def _optional_list(value: object, where: _Where) -> list[str] | None:
    """``constraints``: absent differs from empty for ``--constraint``."""
    if value is None:
        return None
    return _text_list(value, "constraints", where)


def _build_args(value: object, where: _Where) -> dict[str, str]:
    """``build_args`` must be a map; the documented list form fails."""
    if not isinstance(value, list):
        return _text_map(value, "build_args", where)

    example = str(value[0]) if value else "PYTHON_VERSION=3.12"
    key, _, setting = example.partition("=")
    raise where.error(
        "build_args must be a map, not a list (faas-cli: cannot unmarshal"
        f' !!seq into map[string]string); write "{key}: {setting}" instead'
        f' of "- {example}"',
        value,
    )


# --- Go-typed fields -------------------------------------------------------

# yaml.v3's YAML 1.1 words it still accepts for a Go bool field; a quoted
# "true" is a string and refused, a quoted "yes" is accepted.
_TRUE_WORDS = frozenset({"y", "Y", "yes", "Yes", "YES", "on", "On", "ON"})
_FALSE_WORDS = frozenset({"n", "N", "no", "No", "NO", "off", "Off", "OFF"})
_CORE_TRUE = frozenset({"true", "True", "TRUE"})
_CORE_FALSE = frozenset({"false", "False", "FALSE"})


def _text(value: object, key: str, where: _Where) -> str:
    """A Go ``string`` field: any scalar, as written; null is ``""``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)

    kind = "list" if isinstance(value, list) else "map"
    raise where.error(
        f"{key} must be a single value, not a {kind}; write {key}: VALUE",
        value,
    )


def _flag(value: object, key: str, where: _Where) -> bool:
    """A Go ``bool`` field, read with yaml.v3's rules."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value

    text = _text(value, key, where)
    plain = getattr(value, "plain", True)
    if text in _TRUE_WORDS or (plain and text in _CORE_TRUE):
        return True
    if text in _FALSE_WORDS or (plain and text in _CORE_FALSE):
        return False
    problem = f"{key} must be true or false (unquoted), not {text!r}"
    raise where.error(problem, value)


def _list(value: object, key: str, where: _Where) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    raise where.error(
        f"{key} must be a list (one '- item' per line), not {value!r}", value
    )


def _text_list(value: object, key: str, where: _Where) -> list[str]:
    """A Go ``[]string`` field."""
    return [_text(item, f"{key} entry", where) for item in _list(value, key, where)]


def _mapping(value: object, key: str, where: _Where) -> _Map:
    """A YAML mapping, or an empty one for null."""
    if value is None:
        return _Map()
    if isinstance(value, _Map):
        return value
    raise where.error(f"{key} must be a map of 'key: value' lines", value)


def _text_map(value: object, key: str, where: _Where) -> dict[str, str]:
    """A Go ``map[string]string`` field; values coerced as yaml.v3 does."""
    mapping = _mapping(value, key, where)
    return {
        _text(name, key, where): _text(item, f"{key}.{name}", where)
        for name, item in mapping.items()
    }


# --- selecting functions -----------------------------------------------------


def _named(stack: Stack, names: list[str]) -> dict[str, FunctionSpec]:
    """The functions called *names*, in file order; all when none given."""
    if not names:
        return dict(stack.functions)

    for name in names:
        if name not in stack.functions:
            raise StackError(
                f'{stack.path}: no functions matching "{name}" in the stack'
                f" file; it defines: {_names(stack)}"
            )
    wanted = set(names)
    return {k: v for k, v in stack.functions.items() if k in wanted}


def _compile_regex(stack: Stack, regex: str) -> re.Pattern[str]:
    """Compile ``--regex``; faas-cli reports Go's ``error parsing regexp``."""
    try:
        return re.compile(regex)
    except re.error as error:
        raise StackError(
            f"{stack.path}: error parsing regexp: {error}: `{regex}`; fix"
            " --regex (it is searched anywhere in each function name)"
        ) from error


def _filter_glob(pattern: str) -> re.Pattern[str]:
    """ryanuber/go-glob: ``*`` is any run of characters, nothing else is."""
    parts = (re.escape(part) for part in pattern.split("*"))
    return re.compile(".*".join(parts), re.DOTALL)


def _names(stack: Stack) -> str:
    return ", ".join(stack.functions) or "no functions"


# --- writing as faas-cli new -------------------------------------------------


def _require_name(name: str, path: Path) -> None:
    problem = function_name_problem(name)
    if problem:
        raise StackError(f'{path}: function "{name}": {problem}')


def _function_block(
    name: str,
    lang: str,
    handler: str,
    image: str,
    requests: Mapping[str, str] | None,
    limits: Mapping[str, str] | None,
) -> str:
    """The text faas-cli's ``prepareYAMLContent`` writes for a function."""
    # faas-cli writes "./" + handler; an explicit ./ or absolute path is
    # kept as given instead of becoming "././x" or ".//x".
    if not handler.startswith(("./", "/")):
        handler = "./" + handler

    block = _FUNCTION_BLOCK.format(
        name=name,
        lang=lang,
        handler=handler,
        image=image,
    )
    block += _resource_block("requests", requests)
    block += _resource_block("limits", limits)
    return block + "\n"


def _resource_block(key: str, values: Mapping[str, str] | None) -> str:
    """``requests:``/``limits:`` with cpu before memory, empty ones left out."""
    present = [(k, (values or {}).get(k, "")) for k in ("cpu", "memory")]
    lines = [f"      {k}: {v}\n" for k, v in present if v]
    if not lines:
        return ""
    return f"    {key}:\n" + "".join(lines)
