"""Generated stack files: ``load_stack`` returns a Stack or says why not.

Whatever the file holds (text of any kind, bytes that are not UTF-8, YAML
of any shape around the stack file's keys, YAML's own features, and every
``${...}`` form with values that break the YAML they land in),
``load_stack`` either returns a ``Stack`` whose functions passed faas-cli's
checks or raises ``StackError`` or ``EnvsubstError``. Nothing else: a
``localfaas up`` user sees one error line, never a traceback.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from localfaas.envsubst import EnvsubstError, substitute
from localfaas.stack import Stack, StackError, function_name_problem, load_stack

# The stack file's own keys, at every level (tooling.md §1).
KEYS = (
    *("version", "provider", "name", "gateway", "network", "functions"),
    *("configuration", "templates", "source", "copy", "lang", "handler"),
    *("image", "fprocess", "environment", "environment_file", "secrets"),
    *("labels", "annotations", "limits", "requests", "memory", "cpu"),
    *("constraints", "build_args", "build_options", "build_secrets"),
    *("namespace", "skip_build", "readonly_root_filesystem", "<<"),
)
FUNCTION_FIELDS = KEYS[11:-1]
# Files environment_file may name, made in the working directory.
ENV_FILES = {
    "env.yml": "environment:\n  A: '1'\n  B: two\n",
    "bad.yml": "environment: [\n",
    "list.yml": "- a\n- b\n",
    "nested.yml": "environment:\n  A: {b: c}\n",
    "latin1.yml": "environment:\n  A: caf\xe9\n",
}
# Values that change the YAML they are substituted into.
# What PyYAML's reader refuses: control characters and the like.
BREAKING = (": ", "\n", "- ", "{", "}", "[", "]", "#", "'", '"', "&a", "*a", "!!")

SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
LONG = settings(SETTINGS, max_examples=5000)


# -- what is generated ---------------------------------------------------------

variable_names = st.sampled_from(["A", "B", "REGISTRY", "EMPTY", "UNSET"]) | st.text(
    alphabet="AB_z09-{}:", max_size=4
)
operators = st.sampled_from(
    (
        *("", ":-", "-", "=", ":=", ":?", ":+", "+", "?", "^", "^^", ",", ",,"),
        *(":", ":1", ":-2:1", ":x", "#", "##", "%", "%%", "/", "//", "/#", "/%"),
    )
)


def substitutions(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """``${...}`` forms, well made or not, whose argument may nest more."""
    return st.builds(
        lambda opening, hash_, name, operator, argument, closing: (
            f"{opening}{hash_}{name}{operator}{argument}{closing}"
        ),
        st.sampled_from(["${", "${", "$${", "$$", "$"]),
        st.sampled_from(["", "", "#"]),
        variable_names,
        operators,
        inner,
        st.sampled_from(["}", "}", "", "}}"]),
    )


substituted = st.recursive(
    st.text(max_size=8) | st.sampled_from(BREAKING),
    lambda inner: substitutions(inner) | st.builds(str.__add__, inner, inner),
    max_leaves=6,
)
environments = st.dictionaries(
    variable_names, st.text(max_size=12) | st.sampled_from(BREAKING), max_size=5
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | substituted
    | st.sampled_from(["openfaas", "1.0", "python3-http", "img", ".", "env.yml"])
)
keys = st.sampled_from(KEYS) | st.text(max_size=10) | st.integers() | st.booleans()
structures = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5)
    ),
    max_leaves=25,
)
function_names = st.from_regex(r"[a-z0-9][-a-z0-9]{0,12}", fullmatch=True) | keys


@st.composite
def stack_documents(draw: st.DrawFn) -> dict[Any, Any]:
    """A document shaped like a stack file, with values of any kind."""
    function = st.dictionaries(st.sampled_from(FUNCTION_FIELDS), structures)
    document = {
        "version": draw(st.sampled_from(["1.0", 1.0, "2.0"]) | scalars),
        "provider": draw(
            st.fixed_dictionaries(
                {"name": st.sampled_from(["openfaas", "faas"]) | scalars},
                optional={"gateway": scalars},
            )
            | structures
        ),
        "functions": draw(st.dictionaries(function_names, function, max_size=3)),
        "configuration": draw(structures),
    }
    dropped = draw(st.sets(st.sampled_from(sorted(document))))
    return {key: value for key, value in document.items() if key not in dropped}


@st.composite
def yaml_texts(draw: st.DrawFn, documents: st.SearchStrategy[Any]) -> str:
    """A document written as YAML in block or flow style."""
    return yaml.safe_dump(
        draw(documents),
        default_flow_style=draw(st.booleans()),
        allow_unicode=draw(st.booleans()),
        sort_keys=False,
    )


# YAML features a dump never writes: anchors, aliases, merge keys, tags,
# several documents, directives, complex keys.
FEATURES = (
    "&a {lang: x}",
    "*a",
    "<<: *a",
    "<<: [*a, *a]",
    "!!binary aGk=",
    "!!timestamp 2001-12-14",
    "!!set {a, b}",
    "!!omap [a: b]",
    "!!python/object:os.system {}",
    "!custom x",
    "!!int 7",
    "!!float .nan",
    "!!bool yes",
    "? [a, b]\n  : c",
    "~",
    "---",
    "%YAML 1.1\n---",
    "|\n  text",
    ">-\n  folded",
    "'quoted ${A}'",
    '"\\u00e9 ${B:-x}"',
)


@st.composite
def featured_texts(draw: st.DrawFn) -> str:
    """A stack-like file with YAML features put in its values."""
    lines = [
        "version: 1.0",
        "provider:",
        f"  name: {draw(st.sampled_from(['openfaas', *FEATURES]))}",
        "functions:",
        "  fn:",
    ]
    for _ in range(draw(st.integers(0, 4))):
        key = draw(st.sampled_from(FUNCTION_FIELDS))
        lines.append(f"    {key}: {draw(st.sampled_from(FEATURES))}")
    return "\n".join(lines) + "\n"


stack_texts = st.one_of(
    st.text(),
    yaml_texts(stack_documents()),
    yaml_texts(structures),
    featured_texts(),
)


# -- the property --------------------------------------------------------------


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory holding the environment files a stack may name."""
    path = tmp_path_factory.mktemp("stacks")
    for name, text in ENV_FILES.items():
        encoding = "latin-1" if name.startswith("latin1") else "utf-8"
        path.joinpath(name).write_text(text, encoding=encoding)
    return path


def outcome(path: Path, content: str | bytes, env: dict[str, str]) -> Stack | None:
    """Load ``content`` as a stack file; None when refused as it should be."""
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)

    # environment_file paths are relative to the working directory.
    with contextlib.chdir(path.parent):
        try:
            return load_stack(path, env)
        except (StackError, EnvsubstError):
            return None


def loads_or_is_refused(
    folder: Path, content: str | bytes, env: dict[str, str] | None = None
) -> None:
    """A Stack comes back only with functions that passed faas-cli's checks."""
    path = folder / "stack.yml"
    stack = outcome(path, content, env or {})
    if stack is None:
        return

    assert stack.path == path
    for name, spec in stack.functions.items():
        assert function_name_problem(name) is None
        assert spec.name == name
        assert all(isinstance(v, str) for v in spec.environment.values())
        assert all(isinstance(v, str) for v in spec.labels.values())


class TestAnyStackFile:
    """Any file is loaded or refused with StackError or EnvsubstError."""

    @SETTINGS
    @given(text=stack_texts, env=environments)
    def test_text(self, folder: Path, text: str, env: dict[str, str]) -> None:
        """Text of any kind, YAML of any shape, YAML features."""
        loads_or_is_refused(folder, text, env)

    @SETTINGS
    @given(content=st.binary(max_size=300))
    def test_bytes(self, folder: Path, content: bytes) -> None:
        """Bytes that need not be UTF-8."""
        loads_or_is_refused(folder, content)

    @SETTINGS
    @given(document=stack_documents(), env=environments)
    def test_substitution_into_a_stack(
        self, folder: Path, document: dict[Any, Any], env: dict[str, str]
    ) -> None:
        """``${...}`` forms anywhere in a stack-shaped file, any values."""
        text = yaml.safe_dump(document, sort_keys=False)
        loads_or_is_refused(folder, text, env)

    @pytest.mark.long
    @LONG
    @given(text=stack_texts, env=environments)
    def test_text_at_length(self, folder: Path, text: str, env: dict[str, str]) -> None:
        """The same as test_text, over many more files."""
        loads_or_is_refused(folder, text, env)


@SETTINGS
@given(
    text=st.text(alphabet="${}:-=+?^,#%/ab_01\n'\"*"),
    env=st.dictionaries(st.sampled_from(["a", "b", "a_1"]), st.text(max_size=6)),
)
def test_substitute_any_text(text: str, env: dict[str, str]) -> None:
    """Text dense in substitution syntax expands, or is an EnvsubstError."""
    result: str | EnvsubstError
    try:
        result = substitute(text, env)
    except EnvsubstError as exc:
        result = exc
    assert isinstance(result, str) or result.line >= 1


class TestFoundFaults:
    """Faults the fuzzers found in stack loading, kept as regressions."""

    def test_a_control_character_is_refused(self, folder: Path) -> None:
        """A stray NUL, as a bad paste leaves, is a StackError."""
        assert outcome(folder / "stack.yml", "version: 1.0\x00\n", {}) is None

    def test_deeply_nested_yaml_is_refused(self, folder: Path) -> None:
        """YAML nested 1,000 deep is a StackError, not a RecursionError."""
        text = "version: " + "[" * 1000 + "]" * 1000
        assert outcome(folder / "stack.yml", text, {}) is None

    def test_deeply_nested_defaults_are_refused(self, folder: Path) -> None:
        """``${A:-${A:-...}}`` 1,000 deep is refused, not a RecursionError."""
        text = "version: " + "${A:-" * 1000 + "}" * 1000
        assert outcome(folder / "stack.yml", text, {}) is None
