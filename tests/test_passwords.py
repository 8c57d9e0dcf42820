"""Password hashes for Basic auth files (faas_runtime._passwords).

Expected hashes are computed here with hashlib from fixed salts, never with
``hash_password``, which is checked against them.
"""

from __future__ import annotations

import base64
import hashlib
import os
import pty
import re
import select
import signal
import subprocess
import sys

import pytest

from faas_runtime._errors import ConfigError
from faas_runtime._passwords import (
    PasswordHash,
    hash_password,
    is_hashed,
    verify_password,
)

SALT = bytes(range(16))
# 16 zero bytes in unpadded base64: a well-formed salt or hash field.
Z = "A" * 22


def b64(raw: bytes) -> str:
    """Standard base64 without padding, as the encodings use."""
    return base64.b64encode(raw).decode().rstrip("=")


def scrypt_line(password: str, n: int = 1024, r: int = 8, p: int = 1) -> str:
    """A scrypt entry made by hand from hashlib, cheap to check."""
    digest = hashlib.scrypt(password.encode(), salt=SALT, n=n, r=r, p=p, dklen=32)
    return f"$scrypt$n={n},r={r},p={p}${b64(SALT)}${b64(digest)}"


def pbkdf2_line(password: str, iterations: int = 1000) -> str:
    """A pbkdf2-sha256 entry made by hand from hashlib."""
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), SALT, iterations)
    return f"$pbkdf2-sha256$i={iterations}${b64(SALT)}${b64(digest)}"


class TestVerify:
    def test_hand_made_scrypt_entry_verifies(self) -> None:
        """A scrypt line built from hashlib accepts its password only."""
        line = scrypt_line("open sesame")

        assert verify_password("open sesame", line)
        assert not verify_password("open sesame!", line)

    def test_hand_made_pbkdf2_entry_verifies(self) -> None:
        """A pbkdf2-sha256 line built from hashlib accepts its password only."""
        line = pbkdf2_line("open sesame")

        assert verify_password("open sesame", line)
        assert not verify_password("Open sesame", line)

    def test_padded_base64_is_accepted(self) -> None:
        """Salt and hash may carry '=' padding (standard base64 output)."""
        digest = hashlib.pbkdf2_hmac("sha256", b"pw", SALT, 1000)
        salt, hashed = (base64.b64encode(raw).decode() for raw in (SALT, digest))
        line = f"$pbkdf2-sha256$i=1000${salt}${hashed}"

        assert salt.endswith("==")
        assert hashed.endswith("=")
        assert verify_password("pw", line)

    def test_passwords_compare_after_nfc_normalisation(self) -> None:
        """A decomposed 'é' matches a hash of the precomposed one (RFC 8265)."""
        line = scrypt_line("caf\u00e9")

        assert verify_password("cafe\u0301", line)

    @pytest.mark.parametrize(
        ("encoded", "complaint"),
        [
            ("$scrypt$n=1024,r=8,p=1$onlyfour", "$<scheme>$<params>"),
            (f"scrypt$n=1024,r=8,p=1${Z}${Z}", "$<scheme>$<params>"),
            (f"$argon2id$v=19${Z}${Z}", "argon2id"),
            (f"$scrypt$n=1000,r=8,p=1${Z}${Z}", "power of two"),
            (f"$scrypt$n=2097152,r=8,p=1${Z}${Z}", "power of two"),
            (f"$scrypt$n=1024,r=0,p=1${Z}${Z}", "out of range"),
            (f"$scrypt$N=1024${Z}${Z}", "n=<N>"),
            (f"$pbkdf2-sha256$i=0${Z}${Z}", "out of range"),
            (f"$pbkdf2-sha256$rounds=9${Z}${Z}", "i=<iterations>"),
            (f"$pbkdf2-sha256$i=1000$not*base64!!${Z}", "salt is not base64"),
            (f"$pbkdf2-sha256$i=1000$AAAAAAAA${Z}", "salt is shorter"),
            (f"$pbkdf2-sha256$i=1000${Z}$AAAA", "hash is shorter"),
        ],
    )
    def test_malformed_encodings_are_config_errors(
        self, encoded: str, complaint: str
    ) -> None:
        """A bad hash is a ConfigError that says what is wrong, not the hash."""
        with pytest.raises(ConfigError) as caught:
            verify_password("anything", encoded)

        message = str(caught.value)
        assert complaint in message
        assert Z not in message
        assert "python -m faas_runtime._passwords" in message


class TestHash:
    def test_scrypt_is_the_default_with_documented_parameters(self) -> None:
        """The default encoding is scrypt n=2**15, r=8, p=1, 16-byte salt."""
        line = hash_password("hunter2")

        assert re.fullmatch(
            r"\$scrypt\$n=32768,r=8,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}",
            line,
        )
        assert verify_password("hunter2", line)
        assert not verify_password("hunter3", line)

    def test_scrypt_hash_matches_hashlib_on_its_salt(self) -> None:
        """The hash field is hashlib.scrypt of the password on the salt."""
        parsed = PasswordHash.parse(hash_password("hunter2"))
        expected = hashlib.scrypt(
            b"hunter2", salt=parsed.salt, n=2**15, r=8, p=1,
            maxmem=64 * 2**20, dklen=32,
        )  # fmt: skip

        assert parsed.digest == expected

    def test_pbkdf2_hash_matches_hashlib_on_its_salt(self) -> None:
        """pbkdf2-sha256 uses 600,000 iterations and round-trips."""
        line = hash_password("hunter2", scheme="pbkdf2-sha256")
        parsed = PasswordHash.parse(line)

        assert line.startswith("$pbkdf2-sha256$i=600000$")
        assert parsed.digest == hashlib.pbkdf2_hmac(
            "sha256", b"hunter2", parsed.salt, 600_000
        )

    def test_each_hash_has_its_own_salt(self) -> None:
        """Hashing the same password twice gives two different lines."""
        first = hash_password("same", scheme="pbkdf2-sha256")
        second = hash_password("same", scheme="pbkdf2-sha256")

        assert first != second
        assert verify_password("same", first)
        assert verify_password("same", second)

    def test_unknown_scheme_is_refused(self) -> None:
        """Asking for an unsupported scheme names it and the supported ones."""
        with pytest.raises(ValueError, match=r"'bcrypt'.*scrypt, pbkdf2-sha256"):
            hash_password("pw", scheme="bcrypt")

    @pytest.mark.parametrize(
        ("value", "hashed"),
        [
            ("$scrypt$n=2,r=1,p=1$x$y", True),
            ("$2b$12$abcdefghijklmnopqrstuv", True),
            ("$argon2id$v=19$m=65536", True),
            ("plain password", False),
            ("$ dollars $", False),
            ("", False),
        ],
    )
    def test_is_hashed_recognises_any_dollar_scheme_prefix(
        self, value: str, hashed: bool
    ) -> None:
        """Values shaped like '$name$' are hashes, so none is taken as text."""
        assert is_hashed(value) is hashed


def run_tool(*args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m faas_runtime._passwords`` with a piped stdin."""
    return subprocess.run(
        [sys.executable, "-m", "faas_runtime._passwords", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


class TestTool:
    def test_reads_stdin_and_prints_a_verifying_line(self) -> None:
        """A piped password comes back as one scrypt line that verifies it."""
        result = run_tool(stdin="correct horse\n")

        assert result.returncode == 0, result.stderr
        line = result.stdout.strip()
        assert line.startswith("$scrypt$")
        assert verify_password("correct horse", line)

    def test_user_option_prints_a_ready_secret_file_line(self) -> None:
        """--user and --scheme give 'user:$pbkdf2-sha256$...'."""
        result = run_tool(
            "--user", "alice", "--scheme", "pbkdf2-sha256", stdin="pw with spaces"
        )

        assert result.returncode == 0, result.stderr
        user, _, encoded = result.stdout.strip().partition(":")
        assert user == "alice"
        assert verify_password("pw with spaces", encoded)

    @pytest.mark.parametrize(
        ("args", "stdin", "complaint"),
        [
            ((), "\n", "empty"),
            (("--user", "a:b"), "pw\n", "without ':'"),
            ((), "bell\x07\n", "control characters"),
            (("--scheme", "md5"), "pw\n", "invalid choice"),
        ],
    )
    def test_bad_input_exits_non_zero_with_a_reason(
        self, args: tuple[str, ...], stdin: str, complaint: str
    ) -> None:
        """Unusable input prints why on stderr and prints no hash."""
        result = run_tool(*args, stdin=stdin)

        assert result.returncode == 2
        assert complaint in result.stderr
        assert result.stdout == ""


def drive_terminal(answers: list[str]) -> tuple[int, str]:
    """Run the tool on a pseudo-terminal, answering each prompt in turn."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the terminal is its controlling tty
        argv = [sys.executable, "-m", "faas_runtime._passwords"]
        os.execv(sys.executable, argv)  # noqa: S606 (no shell: an argv list)

    output, answered, pending = b"", 0, list(answers)
    while select.select([fd], [], [], 30)[0]:
        try:
            chunk = os.read(fd, 1024)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
        # getpass flushes typed-ahead input, so answer only once the next
        # prompt has been written.
        if pending and output.endswith(b": ") and output.count(b": ") > answered:
            answered += 1
            os.write(fd, pending.pop(0).encode() + b"\n")
    else:
        os.kill(pid, signal.SIGKILL)

    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace")


class TestPrompt:
    def test_prompts_twice_on_a_terminal(self) -> None:
        """On a terminal it asks twice, echoes nothing, prints the hash."""
        code, output = drive_terminal(["s3cret", "s3cret"])

        assert code == 0, output
        assert "Password:" in output
        assert "Repeat password:" in output
        assert "s3cret" not in output
        line = output.strip().splitlines()[-1].strip()
        assert verify_password("s3cret", line)

    def test_differing_answers_fail(self) -> None:
        """Two different answers exit 1 and print no hash."""
        code, output = drive_terminal(["one", "two"])

        assert code == 1
        assert "differ" in output
        assert "$scrypt$" not in output
