"""Stack files read and written by faas-cli's rules (tooling.md §1, §3.1).

Every test writes a real stack file into ``tmp_path`` and reads it back
through :func:`load_stack`; exact texts are faas-cli's own.
"""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest

from localfaas.stack import (
    FunctionSpec,
    Stack,
    StackError,
    TemplateSource,
    append_function,
    find_stack_file,
    function_name_problem,
    load_stack,
    select,
    tag_image,
    write_new_stack,
)

HEADER = "version: 1.0\nprovider:\n  name: openfaas\n"


def write(folder: Path, text: str, name: str = "stack.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def load_one(
    folder: Path, body: str, env: dict[str, str] | None = None
) -> FunctionSpec:
    """Load a stack with one function ``fn`` whose fields are *body*."""
    indented = "".join(f"    {line}\n" for line in body.splitlines())
    text = f"{HEADER}functions:\n  fn:\n    lang: python3-http\n{indented}"
    return load_stack(write(folder, text), env or {}).functions["fn"]


def failure(folder: Path, text: str, env: dict[str, str] | None = None) -> str:
    """The StackError message for a stack file with *text*."""
    with pytest.raises(StackError) as caught:
        load_stack(write(folder, text), env or {})
    return str(caught.value)


class TestFinding:
    """Which file is the stack file."""

    def test_stack_yaml_wins_over_stack_yml(self, tmp_path: Path) -> None:
        """faas-cli looks for stack.yaml first."""
        write(tmp_path, HEADER, "stack.yml")
        write(tmp_path, HEADER, "stack.yaml")

        assert find_stack_file(tmp_path) == tmp_path / "stack.yaml"

    def test_stack_yml_is_the_fallback(self, tmp_path: Path) -> None:
        """Without stack.yaml, stack.yml is used."""
        write(tmp_path, HEADER, "stack.yml")

        assert find_stack_file(tmp_path) == tmp_path / "stack.yml"

    def test_none_lists_what_was_looked_for(self, tmp_path: Path) -> None:
        """The error names both candidates and how to make one."""
        with pytest.raises(StackError) as caught:
            find_stack_file(tmp_path)

        message = str(caught.value)
        assert str(tmp_path / "stack.yaml") in message
        assert str(tmp_path / "stack.yml") in message
        assert "localfaas new" in message

    def test_missing_file_is_a_stack_error(self, tmp_path: Path) -> None:
        """A path that does not exist is reported with the path."""
        with pytest.raises(StackError, match="stack file not found"):
            load_stack(tmp_path / "nope.yaml", {})


class TestSubstitution:
    """``${VAR}`` runs over the whole text before YAML parsing."""

    def test_image_from_environment_and_default(self, tmp_path: Path) -> None:
        """The documented ``${DOCKER_USER:-exampleco}`` example works."""
        body = "image: ${DOCKER_USER:-exampleco}/faas-url-ping:0.2"

        assert load_one(tmp_path, body).image == "exampleco/faas-url-ping:0.2"
        used = load_one(tmp_path, body, {"DOCKER_USER": "alex"})
        assert used.image == "alex/faas-url-ping:0.2"

    def test_unset_variable_is_empty(self, tmp_path: Path) -> None:
        """An unset variable becomes the empty string."""
        fn = load_one(tmp_path, "environment:\n  token: x${UNSET}y")

        assert fn.environment == {"token": "xy"}

    def test_keys_and_structure_can_be_substituted(self, tmp_path: Path) -> None:
        """Substitution is textual, so even function names can come from it."""
        text = f"{HEADER}functions:\n  ${{NAME}}:\n    lang: ${{LANG}}\n"
        stack = load_stack(write(tmp_path, text), {"NAME": "api", "LANG": "go"})

        assert list(stack.functions) == ["api"]
        assert stack.functions["api"].lang == "go"

    def test_default_env_is_the_process_environment(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without an explicit mapping, os.environ is used."""
        monkeypatch.setenv("LOCALFAAS_TEST_GW", "http://gw:9999")
        text = HEADER.replace(
            "openfaas\n", "openfaas\n  gateway: ${LOCALFAAS_TEST_GW}\n"
        )

        assert load_stack(write(tmp_path, text)).gateway == "http://gw:9999"

    def test_bad_substitution_names_file_and_line(self, tmp_path: Path) -> None:
        """A malformed ``${`` is refused with the stack file and its line."""
        message = failure(tmp_path, f"{HEADER}functions:\n  fn:\n    image: ${{IMG\n")

        assert str(tmp_path / "stack.yaml") in message
        assert "line 6" in message
        assert "${IMG" in message


class TestSchema:
    """faas-cli's checks on provider.name and version, with its words."""

    @pytest.mark.parametrize("name", ["faas", "serverless", ""])
    def test_provider_name_must_be_openfaas(self, tmp_path: Path, name: str) -> None:
        """The legacy ``faas`` is refused as any other name."""
        message = failure(tmp_path, f"provider:\n  name: {name}\n")

        expected = (
            "['openfaas'] is the only valid \"provider.name\" for the OpenFaaS"
            f" CLI, but you gave: {name}"
        )
        assert expected in message
        assert message.startswith(str(tmp_path / "stack.yaml"))

    @pytest.mark.parametrize("version", ["1.0", "'1.0'", '"1.0"'])
    def test_version_one_zero_is_accepted(self, tmp_path: Path, version: str) -> None:
        """Quoted or not, 1.0 reads as the string "1.0"."""
        text = f"version: {version}\nprovider:\n  name: openfaas\n"

        assert load_stack(write(tmp_path, text), {}).functions == {}

    def test_version_is_optional(self, tmp_path: Path) -> None:
        """A stack file without a version is valid."""
        stack = load_stack(write(tmp_path, "provider:\n  name: openfaas\n"), {})

        assert stack.functions == {}

    @pytest.mark.parametrize("version", ["1.35", "1", "1.00", "2.0"])
    def test_other_versions_are_refused(self, tmp_path: Path, version: str) -> None:
        """The version is compared as written: 1.00 is not 1.0."""
        text = f"version: {version}\nprovider:\n  name: openfaas\n"

        message = failure(tmp_path, text)

        expected = (
            f"[1.0] are the only valid versions for the stack file - found: {version}"
        )
        assert expected in message

    def test_provider_is_checked_before_version(self, tmp_path: Path) -> None:
        """faas-cli reports the provider first when both are wrong."""
        message = failure(tmp_path, "version: 9\nprovider:\n  name: faas\n")

        assert "provider.name" in message
        assert "versions" not in message

    def test_unknown_keys_are_ignored(self, tmp_path: Path) -> None:
        """Removed and unknown keys (network, registry_auth) still parse."""
        text = (
            f"{HEADER}  network: func_functions\n  gateway: http://gw:8080\n"
            "functions:\n  fn:\n    lang: node\n    registry_auth: abc\n"
            "    platforms: linux/arm64\n    surprise: {a: [1, 2]}\n"
            "extra_top_level: true\n"
        )

        stack = load_stack(write(tmp_path, text), {})

        assert stack.gateway == "http://gw:8080"
        assert stack.functions["fn"].lang == "node"

    def test_yaml_syntax_error_names_the_line(self, tmp_path: Path) -> None:
        """Broken YAML is a StackError with file, line and column."""
        message = failure(tmp_path, f"{HEADER}functions:\n  fn: [unclosed\n")

        assert message.startswith(str(tmp_path / "stack.yaml"))
        assert "invalid YAML" in message
        assert "line 6" in message

    def test_duplicate_keys_are_refused(self, tmp_path: Path) -> None:
        """yaml.v3 refuses a repeated key; PyYAML alone would keep the last."""
        text = f"{HEADER}functions:\n  fn:\n    lang: a\n  fn:\n    lang: b\n"

        message = failure(tmp_path, text)

        assert 'mapping key "fn" already defined at line 5' in message
        assert "line 7" in message

    def test_yaml_merge_keys_work(self, tmp_path: Path) -> None:
        """Anchors and ``<<`` merges are YAML features faas-cli accepts."""
        text = (
            f"{HEADER}functions:\n"
            "  a: &base\n    lang: python3-http\n    image: a\n"
            "  b:\n    <<: *base\n    image: b\n"
        )

        functions = load_stack(write(tmp_path, text), {}).functions

        assert functions["b"].lang == "python3-http"
        assert functions["b"].image == "b:latest"


class TestFunctions:
    """Each function's fields, normalised as faas-cli uses them."""

    def test_whole_function(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Every field is read, coerced and resolved."""
        (tmp_path / "env.yml").write_text("environment:\n  FROM_FILE: '1'\n")
        body = """\
handler: ./fn
image: ghcr.io/me/fn
fprocess: python index.py
environment:
  debug: true
environment_file:
  - env.yml
secrets: [api-key, db]
labels:
  canary: true
annotations:
  topic: cron-function
limits:
  memory: 128Mi
  cpu: 0.5
requests:
  memory: 64Mi
constraints:
  - node.platform.os == linux
build_args:
  PYTHON_VERSION: 3.12
build_options: [dev]
build_secrets:
  pip-token: ./token.txt
namespace: staging
skip_build: true
readonly_root_filesystem: true"""
        monkeypatch.chdir(tmp_path)

        fn = load_one(tmp_path, body)

        assert fn == FunctionSpec(
            name="fn",
            lang="python3-http",
            handler=tmp_path / "fn",
            image="ghcr.io/me/fn:latest",
            fprocess="python index.py",
            environment={"debug": "true", "FROM_FILE": "1"},
            environment_file=[tmp_path / "env.yml"],
            secrets=["api-key", "db"],
            labels={"canary": "true"},
            annotations={"topic": "cron-function"},
            limits={"memory": "128Mi", "cpu": "0.5"},
            requests={"memory": "64Mi"},
            constraints=["node.platform.os == linux"],
            build_args={"PYTHON_VERSION": "3.12"},
            build_options=["dev"],
            build_secrets={"pip-token": "./token.txt"},
            namespace="staging",
            skip_build=True,
            readonly_root_filesystem=True,
        )

    def test_absent_fields_have_faas_cli_defaults(self, tmp_path: Path) -> None:
        """Absent lists and maps are empty; optional settings are None."""
        fn = load_one(tmp_path, "")

        assert fn == FunctionSpec(
            name="fn", lang="python3-http", handler=None, image=""
        )
        assert fn.constraints is None
        assert fn.limits is None

    @pytest.mark.parametrize(
        ("written", "expected"),
        [
            ("true", "true"),
            ("True", "True"),
            ("on", "on"),
            ("0.25", "0.25"),
            ("1e3", "1e3"),
            ("0x1F", "0x1F"),
            ("012", "012"),
            ("1.0", "1.0"),
            ("", ""),
            ("~", ""),
            ("null", ""),
            ("'quoted'", "quoted"),
            ('"0.25"', "0.25"),
            ("2024-01-01", "2024-01-01"),
        ],
    )
    def test_scalars_keep_their_text(
        self, tmp_path: Path, written: str, expected: str
    ) -> None:
        """Values are coerced as Go's decoder does: the text as written."""
        body = f"environment:\n  value: {written}\nlabels:\n  value: {written}"

        fn = load_one(tmp_path, body)

        assert fn.environment == {"value": expected}
        assert fn.labels == {"value": expected}

    def test_handler_is_resolved_against_the_stack_folder(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The handler does not depend on where localfaas was started."""
        project = tmp_path / "project"
        project.mkdir()
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        monkeypatch.chdir(elsewhere)

        fn = load_one(project, "handler: ./src/../fn")

        assert fn.handler == project / "fn"

    def test_lang_is_not_normalised(self, tmp_path: Path) -> None:
        """``Dockerfile`` stays as written in the stack file."""
        text = f"{HEADER}functions:\n  fn:\n    lang: Dockerfile\n"

        assert (
            load_stack(write(tmp_path, text), {}).functions["fn"].lang == "Dockerfile"
        )

    def test_only_memory_and_cpu_are_resources(self, tmp_path: Path) -> None:
        """GPU and other keys exist only in the API type and are dropped."""
        fn = load_one(tmp_path, "limits:\n  memory: 1Gi\n  nvidia.com/gpu: 1")

        assert fn.limits == {"memory": "1Gi"}

    def test_empty_constraints_differ_from_absent(self, tmp_path: Path) -> None:
        """``constraints: []`` is a list, so --constraint would not apply."""
        assert load_one(tmp_path, "constraints: []").constraints == []

    @pytest.mark.parametrize(
        ("written", "expected"),
        [
            ("true", True),
            ("false", False),
            ("yes", True),
            ("'yes'", True),
            ("off", False),
            ("", False),
        ],
    )
    def test_booleans_follow_yaml_v3(
        self, tmp_path: Path, written: str, expected: bool
    ) -> None:
        """Core and YAML 1.1 words are accepted for a Go bool field."""
        assert load_one(tmp_path, f"skip_build: {written}").skip_build is expected

    @pytest.mark.parametrize("written", ["'true'", "1", "maybe", "[true]"])
    def test_other_booleans_are_refused(self, tmp_path: Path, written: str) -> None:
        """A quoted "true" is a string to yaml.v3, so it is refused too."""
        text = f"{HEADER}functions:\n  fn:\n    readonly_root_filesystem: {written}\n"

        message = failure(tmp_path, text)

        assert f'{tmp_path / "stack.yaml"}:6: function "fn":' in message
        assert "readonly_root_filesystem" in message


class TestImages:
    """``:latest`` is added as openfaas/faas-cli schema/image.go adds it."""

    @pytest.mark.parametrize(
        ("image", "expected"),
        [
            ("img", "img:latest"),
            ("img:0.2", "img:0.2"),
            ("alexellis/img", "alexellis/img:latest"),
            ("reg:5000/img", "reg:5000/img:latest"),
            ("reg:5000/honk/img:0.2", "reg:5000/honk/img:0.2"),
            ("img@sha256:" + "a" * 64, "img@sha256:" + "a" * 64),
            ("reg:5000/img@sha256:" + "b" * 64, "reg:5000/img@sha256:" + "b" * 64),
            ("", ""),
        ],
    )
    def test_tagging(self, image: str, expected: str) -> None:
        """Only the last path segment decides whether a tag is present."""
        assert tag_image(image) == expected

    def test_loaded_images_are_tagged(self, tmp_path: Path) -> None:
        """load_stack applies the same rule to every function."""
        fn = load_one(tmp_path, "image: reg:5000/img")

        assert fn.image == "reg:5000/img:latest"


class TestEnvironmentFiles:
    """``environment_file``: read from the working directory, later wins."""

    def test_order_and_precedence(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """environment < first file < second file."""
        (tmp_path / "a.yml").write_text("environment:\n  shared: a\n  only_a: 1\n")
        (tmp_path / "b.yml").write_text("environment:\n  shared: b\n  level: 0.5\n")
        monkeypatch.chdir(tmp_path)
        body = (
            "environment:\n  shared: inline\n  only_inline: x\n"
            "environment_file:\n  - a.yml\n  - b.yml"
        )

        fn = load_one(tmp_path, body)

        assert fn.environment == {
            "shared": "b",
            "only_inline": "x",
            "only_a": "1",
            "level": "0.5",
        }
        assert fn.environment_file == [tmp_path / "a.yml", tmp_path / "b.yml"]

    def test_paths_are_relative_to_the_working_directory(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """As in faas-cli, not relative to the stack file's folder."""
        project = tmp_path / "project"
        project.mkdir()
        (project / "env.yml").write_text("environment:\n  where: project\n")
        (tmp_path / "env.yml").write_text("environment:\n  where: cwd\n")
        monkeypatch.chdir(tmp_path)

        fn = load_one(project, "environment_file: [env.yml]")

        assert fn.environment == {"where": "cwd"}

    def test_file_name_may_be_substituted(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The per-environment pattern ``${OPENFAAS_ENV:-staging}.yaml``."""
        (tmp_path / "staging.yaml").write_text("environment:\n  tier: staging\n")
        (tmp_path / "prod.yaml").write_text("environment:\n  tier: prod\n")
        monkeypatch.chdir(tmp_path)
        body = "environment_file:\n  - ${OPENFAAS_ENV:-staging}.yaml"

        assert load_one(tmp_path, body).environment == {"tier": "staging"}
        prod = load_one(tmp_path, body, {"OPENFAAS_ENV": "prod"})
        assert prod.environment == {"tier": "prod"}

    def test_contents_are_not_substituted(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """faas-cli reads environment files as plain YAML."""
        (tmp_path / "env.yml").write_text("environment:\n  raw: ${HOME}\n")
        monkeypatch.chdir(tmp_path)

        fn = load_one(tmp_path, "environment_file: [env.yml]", {"HOME": "/root"})

        assert fn.environment == {"raw": "${HOME}"}

    def test_missing_file_names_everything(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The error names the stack, the function, the file and the cwd."""
        monkeypatch.chdir(tmp_path)
        text = f"{HEADER}functions:\n  fn:\n    environment_file: [gone.yml]\n"

        message = failure(tmp_path, text)

        assert str(tmp_path / "stack.yaml") in message
        assert 'function "fn"' in message
        assert str(tmp_path / "gone.yml") in message
        assert "relative to the working directory" in message

    def test_badly_shaped_file_names_both_files(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A list where the map belongs: stack, function, file and line."""
        (tmp_path / "env.yml").write_text("environment:\n  - A=1\n")
        monkeypatch.chdir(tmp_path)
        text = f"{HEADER}functions:\n  fn:\n    environment_file: [env.yml]\n"

        message = failure(tmp_path, text)

        assert message.startswith(f'{tmp_path / "stack.yaml"}: function "fn":')
        assert f"in environment_file {tmp_path / 'env.yml'}:2:" in message
        assert "environment must be a map" in message


class TestFieldErrors:
    """Mistakes are refused with the file, line, function and value."""

    def test_build_args_list_form_is_refused(self, tmp_path: Path) -> None:
        """The list form from the docs is a faas-cli parse error."""
        text = (
            f"{HEADER}functions:\n  fn:\n    lang: python3-http\n"
            "    build_args:\n      - PYTHON_VERSION=3.12\n"
        )

        message = failure(tmp_path, text)

        assert message.startswith(f'{tmp_path / "stack.yaml"}:8: function "fn":')
        assert "build_args must be a map, not a list" in message
        assert "cannot unmarshal !!seq into map[string]string" in message
        suggestion = '"PYTHON_VERSION: 3.12" instead of "- PYTHON_VERSION=3.12"'
        assert f"write {suggestion}" in message

    @pytest.mark.parametrize(
        "name", ["My-Fn", "fn_1", "-fn", "fn-", "a" * 64, "fn.a", "ünï"]
    )
    def test_invalid_function_names(self, tmp_path: Path, name: str) -> None:
        """Names must be DNS labels of at most 63 characters."""
        text = f"{HEADER}functions:\n  '{name}':\n    lang: go\n"

        message = failure(tmp_path, text)

        assert f'{tmp_path / "stack.yaml"}:5: function "{name}":' in message
        assert "rename it in the stack file" in message

    def test_longest_valid_name(self, tmp_path: Path) -> None:
        """63 characters is still a valid name."""
        name = "a" + "-b" * 31
        text = f"{HEADER}functions:\n  {name}:\n    lang: go\n"

        assert list(load_stack(write(tmp_path, text), {}).functions) == [name]

    def test_name_rule_text(self) -> None:
        """The rule is worded as faas-cli words it."""
        assert function_name_problem("Bad") == (
            "function name can only contain a-z, 0-9 and dashes"
        )
        assert function_name_problem("good-1") is None

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ("secrets: api-key", "secrets"),
            ("environment: [A=1]", "environment"),
            ("environment:\n  A: [1]", "environment.A"),
            ("image: {name: x}", "image"),
            ("labels: canary", "labels"),
        ],
    )
    def test_wrong_shapes(self, tmp_path: Path, body: str, field: str) -> None:
        """A list where a map belongs, and so on, names the field."""
        with pytest.raises(StackError) as caught:
            load_one(tmp_path, body)

        message = str(caught.value)
        assert 'function "fn"' in message
        assert field in message


class TestConfiguration:
    """``configuration.templates`` and ``configuration.copy``."""

    def test_templates_and_copy(self, tmp_path: Path) -> None:
        """Sources are optional; copy is a list of paths."""
        text = (
            f"{HEADER}configuration:\n  templates:\n"
            "    - name: python3-http\n"
            "      source: https://github.com/openfaas/python-flask-template\n"
            "    - name: golang-middleware\n"
            "  copy:\n    - ./common\n"
        )

        stack = load_stack(write(tmp_path, text), {})

        assert stack == Stack(
            path=tmp_path / "stack.yaml",
            gateway="",
            functions={},
            templates=[
                TemplateSource(
                    "python3-http",
                    "https://github.com/openfaas/python-flask-template",
                ),
                TemplateSource("golang-middleware"),
            ],
            copy=["./common"],
        )


def stack_of(tmp_path: Path, *names: str) -> Stack:
    text = HEADER + "functions:\n" + "".join(f"  {n}:\n    lang: go\n" for n in names)
    return load_stack(write(tmp_path, text), {})


class TestSelect:
    """--regex, --filter and names, with faas-cli's semantics."""

    NAMES = ("url-ping", "nodejs-echo", "imagemagick", "ruby-echo", "abcd-eeee")

    @pytest.mark.parametrize(
        ("regex", "expected"),
        [
            ("node", ["nodejs-echo"]),
            ("echo", ["nodejs-echo", "ruby-echo"]),
            ("^[^-]+$", ["imagemagick"]),
            ("^.{8}$", ["url-ping"]),
            ("e{2}", ["abcd-eeee"]),
            (".*", list(NAMES)),
        ],
    )
    def test_regex_is_unanchored(
        self, tmp_path: Path, regex: str, expected: list[str]
    ) -> None:
        """The regex may match anywhere in the name (faas-cli's table)."""
        chosen = select(stack_of(tmp_path, *self.NAMES), regex=regex)

        assert list(chosen.functions) == expected

    @pytest.mark.parametrize(
        ("pattern", "expected"),
        [
            ("*echo", ["nodejs-echo", "ruby-echo"]),
            ("*-*", ["url-ping", "nodejs-echo", "ruby-echo", "abcd-eeee"]),
            ("imagemagick", ["imagemagick"]),
            ("*", list(NAMES)),
            ("**", list(NAMES)),
            ("ruby*", ["ruby-echo"]),
        ],
    )
    def test_filter_is_a_whole_name_glob(
        self, tmp_path: Path, pattern: str, expected: list[str]
    ) -> None:
        """Only ``*`` is special, and the whole name must match."""
        chosen = select(stack_of(tmp_path, *self.NAMES), filter=pattern)

        assert list(chosen.functions) == expected

    @pytest.mark.parametrize(
        ("regex", "pattern"),
        [("RANDOM", None), (None, "echo"), (None, "ruby-ech?"), (None, "[a-z]*")],
    )
    def test_no_match_is_an_error(
        self, tmp_path: Path, regex: str | None, pattern: str | None
    ) -> None:
        """faas-cli's message, plus the names that do exist."""
        with pytest.raises(StackError) as caught:
            select(stack_of(tmp_path, *self.NAMES), regex=regex, filter=pattern)

        message = str(caught.value)
        assert (
            "no functions matching --filter/--regex were found in the YAML file"
            in message
        )
        assert "url-ping, nodejs-echo" in message

    def test_regex_and_filter_together_are_refused(self, tmp_path: Path) -> None:
        """faas-cli's exact refusal."""
        with pytest.raises(StackError, match="pass in a regex or a filter, not both"):
            select(stack_of(tmp_path, "a"), regex=".*", filter="*")

    def test_empty_strings_mean_not_given(self, tmp_path: Path) -> None:
        """As in faas-cli, an empty regex or filter selects everything."""
        stack = stack_of(tmp_path, "a", "b")

        assert list(select(stack, regex="", filter="").functions) == ["a", "b"]

    def test_invalid_regex(self, tmp_path: Path) -> None:
        """An invalid pattern is reported as Go reports it."""
        with pytest.raises(StackError, match="error parsing regexp"):
            select(stack_of(tmp_path, "a"), regex="[")

    def test_names(self, tmp_path: Path) -> None:
        """Named functions are kept in file order; others are dropped."""
        stack = stack_of(tmp_path, "a", "b", "c")

        assert list(select(stack, names=["c", "a"]).functions) == ["a", "c"]

    def test_unknown_name(self, tmp_path: Path) -> None:
        """local-run's message for a name that is not in the file."""
        with pytest.raises(StackError) as caught:
            select(stack_of(tmp_path, "a", "b"), names=["zz"])

        assert 'no functions matching "zz" in the stack file' in str(caught.value)
        assert "it defines: a, b" in str(caught.value)


NEW_STACK = """\
version: 1.0
provider:
  name: openfaas
  gateway: http://127.0.0.1:8080
functions:
  hello:
    lang: python3-http-auth
    handler: ./hello
    image: ghcr.io/me/hello:latest

"""


class TestWriting:
    """``faas-cli new`` output, byte for byte."""

    def test_new_stack_text(self, tmp_path: Path) -> None:
        """The file faas-cli new writes, with a trailing blank line."""
        path = tmp_path / "stack.yaml"

        write_new_stack(
            path,
            "http://127.0.0.1:8080",
            "hello",
            "python3-http-auth",
            "hello",
            "ghcr.io/me/hello:latest",
        )

        assert path.read_text() == NEW_STACK
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        fn = load_stack(path, {}).functions["hello"]
        assert fn.handler == tmp_path / "hello"

    def test_resources_are_written_cpu_first(self, tmp_path: Path) -> None:
        """requests then limits, cpu before memory, empty values left out."""
        path = tmp_path / "stack.yaml"

        write_new_stack(
            path,
            "http://gw:8080",
            "fn",
            "go",
            "fn",
            "fn:latest",
            requests={"memory": "64Mi", "cpu": ""},
            limits={"memory": "128Mi", "cpu": "100m"},
        )

        assert path.read_text().endswith(
            "  fn:\n    lang: go\n    handler: ./fn\n    image: fn:latest\n"
            "    requests:\n      memory: 64Mi\n"
            "    limits:\n      cpu: 100m\n      memory: 128Mi\n\n"
        )
        fn = load_stack(path, {}).functions["fn"]
        assert fn.limits == {"memory": "128Mi", "cpu": "100m"}

    def test_existing_file_is_not_overwritten(self, tmp_path: Path) -> None:
        """faas-cli's refusal, pointing at --append."""
        path = write(tmp_path, "keep me\n")

        with pytest.raises(StackError) as caught:
            write_new_stack(path, "http://gw", "fn", "go", "fn", "fn:latest")

        assert str(caught.value) == (
            f'file: {path} already exists. Try "faas-cli new --append {path}" instead'
        )
        assert path.read_text() == "keep me\n"

    def test_append_lands_at_the_end(self, tmp_path: Path) -> None:
        """Only the block is added, even after a configuration section."""
        original = NEW_STACK + "configuration:\n  copy:\n    - ./common\n"
        path = write(tmp_path, original)

        append_function(path, "second", "go", "second", "second:latest")

        block = (
            "  second:\n    lang: go\n    handler: ./second\n"
            "    image: second:latest\n\n"
        )
        assert path.read_text() == original + block

    def test_append_keeps_the_functions_loadable(self, tmp_path: Path) -> None:
        """Appended after the function list, the new function is read."""
        path = write(tmp_path, NEW_STACK)

        append_function(path, "second", "go", "./second", "second:latest")

        functions = load_stack(path, {}).functions
        assert list(functions) == ["hello", "second"]
        assert functions["second"].handler == tmp_path / "second"

    def test_append_adds_a_missing_final_newline(self, tmp_path: Path) -> None:
        """The block never fuses with an unterminated last line."""
        path = write(tmp_path, NEW_STACK.rstrip("\n"))

        append_function(path, "second", "go", "second", "second:latest")

        assert list(load_stack(path, {}).functions) == ["hello", "second"]

    def test_append_refuses_a_duplicate(self, tmp_path: Path) -> None:
        """faas-cli's duplicate refusal; the file is left alone."""
        path = write(tmp_path, NEW_STACK)

        with pytest.raises(StackError) as caught:
            append_function(path, "hello", "go", "hello", "hello:latest")

        assert (
            f"Function hello already exists in {path} file. Cannot have"
            " duplicate function names in same yaml file"
        ) in str(caught.value)
        assert path.read_text() == NEW_STACK

    def test_append_needs_a_yaml_suffix(self, tmp_path: Path) -> None:
        """faas-cli's suffix rule."""
        path = write(tmp_path, NEW_STACK, "stack.txt")

        with pytest.raises(
            StackError,
            match=re.escape("the suffix should be .yml or .yaml"),
        ):
            append_function(path, "b", "go", "b", "b:latest")

    def test_append_needs_the_file(self, tmp_path: Path) -> None:
        """faas-cli's not-found wording."""
        path = tmp_path / "other.yml"

        with pytest.raises(StackError) as caught:
            append_function(path, "b", "go", "b", "b:latest")

        assert str(caught.value).startswith(f"unable to find file: {path} - stat")

    def test_append_refuses_an_unparsable_file(self, tmp_path: Path) -> None:
        """A file faas-cli could not parse is not appended to."""
        path = write(tmp_path, "provider:\n  name: faas\n")

        with pytest.raises(
            StackError, match=re.escape(f"Error parsing {path} yml file")
        ):
            append_function(path, "b", "go", "b", "b:latest")

    def test_writing_refuses_invalid_names(self, tmp_path: Path) -> None:
        """No stack file is written for a name faas-cli would refuse."""
        path = tmp_path / "stack.yaml"

        with pytest.raises(StackError, match="function name can only contain"):
            write_new_stack(path, "http://gw", "Bad_Name", "go", "x", "x:latest")

        assert not path.exists()
