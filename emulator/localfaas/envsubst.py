"""Environment substitution in stack files, as faas-cli performs it.

faas-cli runs drone/envsubst v1.0.3 over the whole stack file text before
the YAML is parsed (openfaas/go-sdk stack/stack.go), with every unset
variable read as ``""``. :func:`substitute` reproduces that dialect:

========================  ==================================================
``${V}``                  the value of ``V``
``${V:-d}`` ``${V=d}``    ``d`` when ``V`` is empty or unset; ``:=``, ``:?``,
``${V:=d}``               ``:+``, ``-`` and ``+`` mean the same (drone has no
                          other defaulting), and ``d`` may hold ``${...}``
``${V^}`` ``${V^^}``      upper-case the first / every character
``${V,}`` ``${V,,}``      lower-case the first / every character
``${V:p}`` ``${V:p:n}``   substring from ``p`` (negative counts from the
                          end), ``n`` characters long
``${V#g}`` ``${V##g}``    remove the shortest / longest prefix matching the
                          glob ``g`` (``*`` also matches ``/``)
``${V%g}`` ``${V%%g}``    the same for suffixes
``${V/a/b}`` ``${V//a/b}``  replace the first / every literal ``a`` by ``b``
``${V/#a/b}``             replace ``a`` when ``V`` starts with it
``${V/%a/b}``             replace ``a`` when ``V`` ends with it
``${#V}``                 the length of the value
``$${``                   a literal ``${`` (``$$`` is one ``$``)
========================  ==================================================

Only the braced form expands: ``$HOME`` stays as written. Anything after
``${`` that is not one of these forms is an :class:`EnvsubstError` naming
the line, as faas-cli refuses the file with ``bad substitution``.

Where drone/envsubst's Go code would panic (a substring start past the end,
a negative length) the result is empty; lengths and offsets count
characters where drone counts UTF-8 bytes, which only differs outside
ASCII.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

__all__ = ["EnvsubstError", "substitute"]

# Characters that may follow "${V" and pick a function (drone's parseFunc).
_DEFAULTS = frozenset("=-+")
_DEFAULT_AFTER_COLON = frozenset("=-?+")
_INTEGER = re.compile(r"[+-]?[0-9]+")


class EnvsubstError(ValueError):
    """A ``${`` that does not open a substitution drone/envsubst accepts."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


def substitute(text: str, env: Mapping[str, str]) -> str:
    """Expand every ``${...}`` in *text* from *env*, unset meaning ``""``."""
    expander = _Expander(text, env)
    try:
        return expander.document()
    except RecursionError as error:
        # Each nested ${V:-...} default is parsed by recursion.
        line = text.count("\n", 0, expander.pos) + 1
        raise EnvsubstError(
            "${...} defaults are nested too deeply to expand", line
        ) from error


class _Expander:
    """One pass over the text: parse each ``${...}`` and expand it at once.

    Expanding while parsing gives drone's result because the first parse
    error ends the whole substitution, so no partial output ever escapes.
    """

    def __init__(self, text: str, env: Mapping[str, str]) -> None:
        self.text = text
        self.env = env
        self.pos = 0

    def document(self) -> str:
        """Expand the whole text: plain runs, ``$$`` escapes and ``${``."""
        out: list[str] = []
        while self.pos < len(self.text):
            dollar = self.text.find("$", self.pos)
            if dollar < 0:
                out.append(self.text[self.pos :])
                break

            out.append(self.text[self.pos : dollar])
            follower = self.text[dollar + 1 : dollar + 2]
            if follower == "{":
                self.pos = dollar + 2
                out.append(self._expression(dollar))
            else:
                # "$$" is drone's escape for one "$"; a lone "$" stays.
                out.append("$")
                self.pos = dollar + (2 if follower == "$" else 1)
        return "".join(out)

    def _expression(self, start: int) -> str:
        """Expand one ``${...}`` whose ``$`` is at *start*."""
        if self._peek() == "#":
            return self._length(start)

        name = self._name(start)
        value = self.env.get(name) or ""
        operator = self._peek()
        if not operator:
            raise self._error(start, "the text ends before the closing }")
        if operator == "}":
            self.pos += 1
            return value
        if operator == ":":
            after = self.text[self.pos + 1 : self.pos + 2]
            if after and after in _DEFAULT_AFTER_COLON:
                return self._default(start, value, 2)
            return self._substring(start, value)
        if operator in _DEFAULTS:
            return self._default(start, value, 1)
        if operator in (",", "^"):
            return self._casing(start, value)
        if operator == "/":
            return self._replace(start, value)
        if operator in ("#", "%"):
            return self._remove(start, value, operator)
        raise self._error(start, "expected } or an operator after the name")

    def _name(self, start: int) -> str:
        """Read a variable name: letters, digits and underscores."""
        end = self.pos
        while end < len(self.text) and _is_name_char(self.text[end]):
            end += 1
        if end == self.pos:
            raise self._error(start, "expected a variable name after ${")

        name = self.text[self.pos : end]
        self.pos = end
        return name

    def _length(self, start: int) -> str:
        """Expand ``${#V}``."""
        self.pos += 1
        name = self._name(start)
        self._close(start)
        return str(len(self.env.get(name) or ""))

    def _default(self, start: int, value: str, width: int) -> str:
        """Expand ``${V:-d}`` and its synonyms: *d* when *value* is empty."""
        self.pos += width
        parts: list[str] = []
        while self._peek() != "}":
            parts.append(self._param(start, _closing))
        self.pos += 1
        return value or "".join(parts)

    def _substring(self, start: int, value: str) -> str:
        """Expand ``${V:p}`` and ``${V:p:n}``."""
        self.pos += 1
        offset = self._param(start, _colon_or_closing)
        if self._peek() == "}":
            self.pos += 1
            return _substring(value, offset, None)

        if self._peek() != ":":
            raise self._error(start, "expected : or } after the offset")
        self.pos += 1
        length = self._param(start, _closing)
        self._close(start)
        return _substring(value, offset, length)

    def _casing(self, start: int, value: str) -> str:
        """Expand ``${V^}``, ``${V^^}``, ``${V,}`` and ``${V,,}``."""
        operator = self._operator(",^", 2)
        self._close(start)
        return _CASINGS.get(operator, _unchanged)(value)

    def _remove(self, start: int, value: str, mark: str) -> str:
        """Expand ``${V#g}``, ``${V##g}``, ``${V%g}`` and ``${V%%g}``."""
        operator = self._operator(mark, 2)
        pattern = self._param(start, _closing)
        self._close(start)
        return _REMOVALS[operator](value, pattern)

    def _replace(self, start: int, value: str) -> str:
        """Expand ``${V/a/b}``, ``${V//a/b}``, ``${V/#a/b}``, ``${V/%a/b}``."""
        operator = "/" + self._operator_after_slash()
        old = self._param(start, _slash, escapes=True)

        # drone reads the delimiter as a run of slashes, so "a//b" is "a/b".
        while self._peek() == "/":
            self.pos += 1
        if self._peek() == "}":
            self.pos += 1
            return _REPLACEMENTS[operator](value, old, None)

        new = self._param(start, _closing, escapes=True)
        self._close(start)
        return _REPLACEMENTS[operator](value, old, new)

    def _operator(self, marks: str, most: int) -> str:
        """Read up to *most* characters from *marks* as an operator."""
        end = self.pos
        while end < len(self.text) and end - self.pos < most:
            if self.text[end] not in marks:
                break
            end += 1
        operator = self.text[self.pos : end]
        self.pos = end
        return operator

    def _operator_after_slash(self) -> str:
        """Consume the ``/`` and an optional ``/``, ``#`` or ``%`` after it."""
        self.pos += 1
        second = self._peek()
        if second in ("/", "#", "%"):
            self.pos += 1
            return second
        return ""

    def _param(
        self,
        start: int,
        stops: Callable[[str], bool],
        *,
        escapes: bool = False,
    ) -> str:
        """Expand one argument: a nested ``${...}`` or a run of text."""
        if self.text.startswith("${", self.pos):
            self.pos += 2
            return self._expression(self.pos - 2)

        if self.pos >= len(self.text):
            raise self._error(start, "the text ends before the closing }")
        if stops(self.text[self.pos]) and not self._escaped(escapes):
            raise self._error(start, f"unexpected {self.text[self.pos]!r}")
        return self._run(stops, escapes)

    def _run(self, stops: Callable[[str], bool], escapes: bool) -> str:
        """Read text up to a stop character or a nested ``${``."""
        out: list[str] = []
        while self.pos < len(self.text):
            if self.text.startswith("${", self.pos):
                break
            if self._escaped(escapes):
                # drone's replace arguments: \/ \\ and $$ stand for / \ $.
                out.append(self.text[self.pos + 1])
                self.pos += 2
                continue
            if stops(self.text[self.pos]):
                break
            out.append(self.text[self.pos])
            self.pos += 1
        return "".join(out)

    def _escaped(self, escapes: bool) -> bool:
        """Whether an escape pair starts here (replace arguments only)."""
        pair = self.text[self.pos : self.pos + 2]
        return escapes and pair in ("\\/", "\\\\", "$$")

    def _close(self, start: int) -> None:
        """Consume the ``}`` that must end the expression."""
        if self._peek() != "}":
            raise self._error(start, "expected }")
        self.pos += 1

    def _peek(self) -> str:
        return self.text[self.pos : self.pos + 1]

    def _error(self, start: int, reason: str) -> EnvsubstError:
        """Name the line and the expression, and say how to write it."""
        line = self.text.count("\n", 0, start) + 1
        end = self.text.find("\n", start)
        snippet = self.text[start : end if end >= 0 else len(self.text)]
        if len(snippet) > 40:
            snippet = snippet[:40] + "..."
        return EnvsubstError(
            f'line {line}: bad substitution "{snippet}": {reason}; write'
            " ${NAME} or ${NAME:-default}, or $${ for a literal ${",
            line,
        )


def _is_name_char(char: str) -> bool:
    """drone's identifier: Unicode letters, decimal digits and ``_``."""
    return char.isalpha() or char.isdecimal() or char == "_"


def _closing(char: str) -> bool:
    return char == "}"


def _colon_or_closing(char: str) -> bool:
    return char in (":", "}")


def _slash(char: str) -> bool:
    return char == "/"


def _unchanged(value: str) -> str:
    return value


def _upper_first(value: str) -> str:
    return value[:1].upper() + value[1:]


def _lower_first(value: str) -> str:
    return value[:1].lower() + value[1:]


# drone reads up to two of "^" and ","; mixed pairs such as "^," fall back
# to its default function, which returns the value untouched.
_CASINGS: dict[str, Callable[[str], str]] = {
    "^": _upper_first,
    "^^": str.upper,
    ",": _lower_first,
    ",,": str.lower,
}


def _substring(value: str, offset: str, length: str | None) -> str:
    """Bash-style substring; an unparsable number returns *value* whole."""
    if not _INTEGER.fullmatch(offset):
        return value

    start = int(offset)
    if start < 0:
        start = max(len(value) + start, 0)
    if length is None:
        return value[start:]

    if not _INTEGER.fullmatch(length):
        return value
    return value[start : max(start + int(length), start)]


def _glob(pattern: str) -> re.Pattern[str] | None:
    """Translate drone's glob (Go ``path.Match``, ``*`` crossing ``/``).

    Returns None for a malformed pattern, which drone answers by leaving
    the value unchanged.
    """
    out: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        index += 1
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "\\":
            if index >= len(pattern):
                return None
            out.append(re.escape(pattern[index]))
            index += 1
        elif char == "[":
            found = _glob_class(pattern, index)
            if found is None:
                return None
            text, index = found
            out.append(text)
        else:
            out.append(re.escape(char))
    return re.compile("".join(out), re.DOTALL)


def _glob_class(pattern: str, index: int) -> tuple[str, int] | None:
    """Translate a ``[...]`` class starting after its ``[``."""
    negate = pattern.startswith("^", index)
    if negate:
        index += 1
    ranges: list[str] = []
    count = 0
    while True:
        if pattern.startswith("]", index) and count:
            index += 1
            break

        low = _class_char(pattern, index)
        if low is None:
            return None
        first, index = low
        last = first
        if pattern.startswith("-", index):
            high = _class_char(pattern, index + 1)
            if high is None:
                return None
            last, index = high

        count += 1
        # Go accepts a reversed range and never matches it.
        if first <= last:
            ranges.append(f"{re.escape(first)}-{re.escape(last)}")

    body = "".join(ranges)
    if not body:
        return ("." if negate else "(?!)", index)
    return (f"[{'^' if negate else ''}{body}]", index)


def _class_char(pattern: str, index: int) -> tuple[str, int] | None:
    """One character of a class, with Go's ``\\`` escape and its errors."""
    if index >= len(pattern) or pattern[index] in "-]":
        return None
    if pattern[index] != "\\":
        return pattern[index], index + 1
    if index + 1 >= len(pattern):
        return None
    return pattern[index + 1], index + 2


def _remove_prefix(value: str, pattern: str, longest: bool) -> str:
    """Drop the shortest or longest non-empty prefix matching *pattern*."""
    glob = _glob(pattern)
    if glob is None:
        return value

    sizes = range(len(value), 0, -1) if longest else range(1, len(value) + 1)
    for size in sizes:
        if glob.fullmatch(value[:size]):
            return value[size:]
    return value


def _remove_suffix(value: str, pattern: str, longest: bool) -> str:
    """Drop the shortest or longest non-empty suffix matching *pattern*."""
    glob = _glob(pattern)
    if glob is None:
        return value

    sizes = range(len(value), 0, -1) if longest else range(1, len(value) + 1)
    for size in sizes:
        if glob.fullmatch(value[len(value) - size :]):
            return value[: len(value) - size]
    return value


_REMOVALS: dict[str, Callable[[str, str], str]] = {
    "#": lambda value, glob: _remove_prefix(value, glob, longest=False),
    "##": lambda value, glob: _remove_prefix(value, glob, longest=True),
    "%": lambda value, glob: _remove_suffix(value, glob, longest=False),
    "%%": lambda value, glob: _remove_suffix(value, glob, longest=True),
}


def _replace_first(value: str, old: str, new: str | None) -> str:
    return value.replace(old, new or "", 1)


def _replace_all(value: str, old: str, new: str | None) -> str:
    return value.replace(old, new or "")


def _replace_prefix(value: str, old: str, new: str | None) -> str:
    # drone leaves the value alone when the replacement is missing.
    if new is None or not value.startswith(old):
        return value
    return new + value[len(old) :]


def _replace_suffix(value: str, old: str, new: str | None) -> str:
    if new is None or not value.endswith(old):
        return value
    return value[: len(value) - len(old)] + new


_REPLACEMENTS: dict[str, Callable[[str, str, str | None], str]] = {
    "/": _replace_first,
    "//": _replace_all,
    "/#": _replace_prefix,
    "/%": _replace_suffix,
}
