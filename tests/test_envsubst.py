"""Stack-file substitution in drone/envsubst's dialect (tooling.md §1.3).

Expected values come from drone/envsubst's own test table and bash's
parameter expansion, which drone follows.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from localfaas.envsubst import EnvsubstError, substitute

ENV = {
    "var01": "abcdEFGH28ij",
    "upper": "ABCDEFGH28IJ",
    "path_name": "/home/bozo/ideas/thoughts.for.today",
    "stringZ": "abcABC123ABCabc",
    "filename": "bash.string.txt",
    "nested": "path/to/file",
    "slashes": "foo/bar/baz",
    "dotted": "foo.bar",
    "default_var": "foo1",
    "empty": "",
    "DOCKER_USER": "alex",
}

# Names: letters, digits and underscores, never starting an operator.
names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True)
# Default text with nothing drone would read as syntax.
defaults = st.text(
    alphabet=st.characters(blacklist_characters="}$", blacklist_categories=["Cs"])
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${var01}", "abcdEFGH28ij"),
        (
            "image: ${DOCKER_USER:-exampleco}/faas-url-ping:0.2",
            "image: alex/faas-url-ping:0.2",
        ),
        ("${missing}", ""),
        ("a${missing}b", "ab"),
        # Defaults: every spelling means "when empty or unset".
        ("${missing:-xyz}", "xyz"),
        ("${empty:-xyz}", "xyz"),
        ("${var01:-xyz}", "abcdEFGH28ij"),
        ("${missing=xyz}", "xyz"),
        ("${empty=xyz}", "xyz"),
        ("${var01=xyz}", "abcdEFGH28ij"),
        ("${missing:=xyz}", "xyz"),
        ("${empty:=xyz}", "xyz"),
        ("${missing:?xyz}", "xyz"),
        ("${missing:+xyz}", "xyz"),
        ("${var01:+xyz}", "abcdEFGH28ij"),
        ("${missing-xyz}", "xyz"),
        ("${missing+xyz}", "xyz"),
        ("${missing:-}", ""),
        ("${missing:-a b/c:d}", "a b/c:d"),
        ("${missing=${default_var}}", "foo1"),
        ("foo: ${var=prefix${default_var}-suffix}", "foo: prefixfoo1-suffix"),
        ("${var=${var01^^}}", "ABCDEFGH28IJ"),
        ("${missing:-${also_missing:-deep}}", "deep"),
        # Case changes.
        ("${var01^}", "AbcdEFGH28ij"),
        ("${var01^^}", "ABCDEFGH28IJ"),
        ("${upper,}", "aBCDEFGH28IJ"),
        ("${upper,,}", "abcdefgh28ij"),
        ("${var01^,}", "abcdEFGH28ij"),
        ("${missing^^}", ""),
        # Substrings.
        ("${path_name:11}", "ideas/thoughts.for.today"),
        ("${path_name:11:5}", "ideas"),
        ("${var01:0:4}", "abcd"),
        ("${var01:4:100}", "EFGH28ij"),
        ("${var01:100}", ""),
        ("${var01: -3}", "abcdEFGH28ij"),
        ("${var01:x}", "abcdEFGH28ij"),
        ("${var01:2:x}", "abcdEFGH28ij"),
        ("${var01:${missing:-2}:3}", "cdE"),
        # Prefix and suffix removal with globs; * also crosses "/".
        ("${filename#*.}", "string.txt"),
        ("${filename##*.}", "txt"),
        ("${filename%.*}", "bash.string"),
        ("${filename%%.*}", "bash"),
        ("${nested#*/}", "to/file"),
        ("${nested##*/}", "file"),
        ("${nested%/*}", "path/to"),
        ("${nested%%/*}", "path"),
        ("${filename#bash}", ".string.txt"),
        ("${filename#nomatch}", "bash.string.txt"),
        ("${filename#b?sh.}", "string.txt"),
        ("${filename#[a-c]}", "ash.string.txt"),
        ("${filename#[^a-c]}", "bash.string.txt"),
        ("${filename#[}", "bash.string.txt"),
        # Replacement of literal text.
        ("${stringZ/abc/xyz}", "xyzABC123ABCabc"),
        ("${stringZ//abc/xyz}", "xyzABC123ABCxyz"),
        ("${stringZ/#abc/XYZ}", "XYZABC123ABCabc"),
        ("${stringZ/%abc/XYZ}", "abcABC123ABCXYZ"),
        ("${stringZ/#ABC/XYZ}", "abcABC123ABCabc"),
        ("${stringZ/%ABC/XYZ}", "abcABC123ABCabc"),
        ("${dotted/./}", "foobar"),
        ("${stringZ//abc/}", "ABC123ABC"),
        ("${stringZ/#abc/}", "abcABC123ABCabc"),
        ("${slashes/\\//-}", "foo-bar/baz"),
        ("${slashes//\\//-}", "foo-bar-baz"),
        ("${slashes//a/\\\\}", "foo/b\\r/b\\z"),
        ("${stringZ/abc/$$}", "$ABC123ABCabc"),
        ("${stringZ/abc//x}", "xABC123ABCabc"),
        # Length.
        ("${#var01}", "12"),
        ("${#missing}", "0"),
        # Escapes and literal dollars.
        ("$${var01}", "${var01}"),
        ("$$var01", "$var01"),
        ("$var01", "$var01"),
        ("$HOME and $", "$HOME and $"),
        ("$$${var01}", "$abcdEFGH28ij"),
        ("$$$${var01}", "$${var01}"),
        (
            "some text ${var01}$${var$${var01}$var01${var01}",
            "some text abcdEFGH28ij${var${var01}$var01abcdEFGH28ij",
        ),
        ("something $${var=${default_var}}", "something ${var=foo1}"),
        # Text outside ${} is never unescaped.
        ("\\\\.\\pipe\\name }{ ", "\\\\.\\pipe\\name }{ "),
        ("${missing:-$$}", "$$"),
        ("${missing:-{x}}", "{x}"),
    ],
)
def test_forms(text: str, expected: str) -> None:
    """Every supported form expands as drone/envsubst expands it."""
    assert substitute(text, ENV) == expected


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("image: ${DOCKER_USER", 1),
        ("a: 1\nb: ${}\n", 2),
        ("a\n\n${ VAR}", 3),
        ("${VAR!}", 1),
        ("${VAR?x}", 1),
        ("${#}", 1),
        ("${VAR:}", 1),
        ("${VAR::2}", 1),
        ("${VAR:1:}", 1),
        ("${VAR:1x${A}}", 1),
        ("${VAR#}", 1),
        ("${VAR#a${A}}", 1),
        ("${VAR^^^}", 1),
        ("${VAR///x}", 1),
        ("${VAR:-default", 1),
        ("x\n${VAR/a/b", 2),
    ],
)
def test_malformed_names_the_line(text: str, line: int) -> None:
    """A ``${`` that forms no substitution is an error naming its line."""
    with pytest.raises(EnvsubstError) as caught:
        substitute(text, ENV)

    assert caught.value.line == line
    assert str(caught.value).startswith(f"line {line}: bad substitution")
    assert "$${" in str(caught.value)


def test_error_quotes_the_expression() -> None:
    """The message repeats what was written, up to the end of its line."""
    with pytest.raises(EnvsubstError) as caught:
        substitute("ok: 1\nimage: ${DOCKER_USER:-x\nnext: 2\n", ENV)

    assert '"${DOCKER_USER:-x"' in str(caught.value)


def test_values_are_not_expanded_again() -> None:
    """A value holding ``${X}`` is inserted as it is, never re-read."""
    assert substitute("${A}", {"A": "${B}", "B": "no"}) == "${B}"


@given(st.text().filter(lambda text: "$" not in text))
def test_text_without_dollar_is_unchanged(text: str) -> None:
    """Text without ``$`` passes through byte for byte."""
    assert substitute(text, {}) == text


@given(names, st.text(), defaults)
def test_default_law(name: str, value: str, default: str) -> None:
    """``${V:-d}`` is V's value when non-empty, else d."""
    expected = value if value else default
    assert substitute(f"${{{name}:-{default}}}", {name: value}) == expected
    assert substitute(f"${{{name}:-{default}}}", {}) == default


@given(names, st.text())
def test_plain_reference_law(name: str, value: str) -> None:
    """``${V}`` is exactly V's value, and ``$${V}`` the literal text."""
    assert substitute(f"${{{name}}}", {name: value}) == value
    assert substitute(f"$${{{name}}}", {name: value}) == f"${{{name}}}"


@given(names, st.text(alphabet="ab/.", max_size=12))
def test_length_and_case_laws(name: str, value: str) -> None:
    """Length counts characters; ``^^`` and ``,,`` map the whole value."""
    env = {name: value}
    assert substitute(f"${{#{name}}}", env) == str(len(value))
    assert substitute(f"${{{name}^^}}", env) == value.upper()
    assert substitute(f"${{{name},,}}", env) == value.lower()


@given(names, st.text(alphabet="ab/.", max_size=12))
def test_removal_laws(name: str, value: str) -> None:
    """``#*`` drops one leading character, ``##*`` everything (bash: none)."""
    env = {name: value}
    assert substitute(f"${{{name}#*}}", env) == value[1:]
    assert substitute(f"${{{name}##*}}", env) == ""
    assert substitute(f"${{{name}%%*}}", env) == ""
