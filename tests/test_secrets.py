"""The emulator's secret store: sources, encryption at rest, folders."""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from localfaas.secrets import (
    InvalidSecretName,
    MissingSecrets,
    SecretExists,
    SecretKeyError,
    SecretNotFound,
    SecretReadOnly,
    SecretStore,
    SecretUnreadable,
    default_key_path,
    validate_secret_name,
)

pytestmark = pytest.mark.timeout(60)


class Layout:
    """A project folder, its emulator state and a key outside both."""

    def __init__(self, root: Path) -> None:
        self.project = root / "project"
        self.dot_secrets = self.project / ".secrets"
        self.state = self.project / ".localfaas"
        self.key = root / "data" / "localfaas" / "secrets.key"
        self.dot_secrets.mkdir(parents=True)

    def store(self, key: Path | None = None) -> SecretStore:
        """A store over this layout, with the given key or the usual one."""
        return SecretStore(self.dot_secrets, self.state, key or self.key)

    def state_bytes(self) -> bytes:
        """Every byte of every file under the state folder, concatenated."""
        files = sorted(p for p in self.state.rglob("*") if p.is_file())
        return b"".join(path.read_bytes() for path in files)


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    """A fresh project layout."""
    return Layout(tmp_path)


@pytest.fixture
def store(layout: Layout) -> SecretStore:
    """A store over a fresh project layout."""
    return layout.store()


def mode(path: Path) -> int:
    """The permission bits of ``path``."""
    return stat.S_IMODE(path.stat().st_mode)


class TestApiSecrets:
    """Secrets created through the API."""

    def test_create_then_get(self, store: SecretStore) -> None:
        """A created secret reads back byte for byte."""
        store.create("db-password", b"s3cr3t\x00\xff\n")

        assert store.get("db-password") == b"s3cr3t\x00\xff\n"
        assert store.exists("db-password")

    def test_list_is_sorted_names(self, store: SecretStore) -> None:
        """list() returns every name, sorted, and nothing else."""
        assert store.list() == []

        store.create("zeta", b"1")
        store.create("alpha.beta", b"2")

        assert store.list() == ["alpha.beta", "zeta"]

    def test_update_replaces_value(self, store: SecretStore) -> None:
        """update() replaces the stored value."""
        store.create("token", b"old")

        store.update("token", b"new")

        assert store.get("token") == b"new"

    def test_delete_removes(self, store: SecretStore) -> None:
        """A deleted secret is gone from list, exists and get."""
        store.create("token", b"value")

        store.delete("token")

        assert store.list() == []
        assert not store.exists("token")
        with pytest.raises(SecretNotFound):
            store.get("token")

    def test_create_existing_is_a_conflict(self, store: SecretStore) -> None:
        """Creating a taken name raises SecretExists (409), value kept."""
        store.create("token", b"first")

        with pytest.raises(SecretExists) as caught:
            store.create("token", b"second")

        assert caught.value.status == 409
        assert "localfaas secret update token" in str(caught.value)
        assert store.get("token") == b"first"

    @pytest.mark.parametrize("action", ["get", "update", "delete"])
    def test_unknown_name_is_not_found(
        self, store: SecretStore, layout: Layout, action: str
    ) -> None:
        """get, update and delete of an unknown name raise a 404 error."""
        calls: dict[str, Callable[[], object]] = {
            "get": lambda: store.get("nope"),
            "update": lambda: store.update("nope", b"v"),
            "delete": lambda: store.delete("nope"),
        }

        with pytest.raises(SecretNotFound) as caught:
            calls[action]()

        assert caught.value.status == 404
        assert "localfaas secret create nope" in str(caught.value)
        assert str(layout.dot_secrets / "nope") in str(caught.value)

    def test_value_must_be_bytes(self, store: SecretStore) -> None:
        """A str value is refused with a hint to encode it."""
        with pytest.raises(TypeError, match="encode"):
            store.create("token", "text")  # type: ignore[arg-type]

    @settings(max_examples=25, deadline=None)
    @given(value=st.binary(max_size=4096))
    def test_any_bytes_round_trip(self, value: bytes) -> None:
        """Any byte string, empty included, reads back unchanged."""
        with tempfile.TemporaryDirectory() as tmp:
            store = Layout(Path(tmp)).store()

            store.create("blob", value)

            assert store.get("blob") == value


class TestEncryptionAtRest:
    """What lands on disk, and what happens when the key is wrong."""

    def test_value_never_on_disk(
        self,
        store: SecretStore,
        layout: Layout,
    ) -> None:
        """Neither a value nor its encodings appear in any state file."""
        value = b"correct horse battery staple " + os.urandom(16)
        store.create("phrase", value)
        store.update("phrase", value + b"!")

        on_disk = layout.state_bytes()

        assert on_disk
        for needle in (value, value.hex().encode(), b"correct horse"):
            assert needle not in on_disk

    def test_persists_across_instances(self, layout: Layout) -> None:
        """A new store over the same folders and key reads old secrets."""
        layout.store().create("token", b"kept")

        assert layout.store().get("token") == b"kept"
        assert layout.store().list() == ["token"]

    def test_key_file_is_private(
        self,
        store: SecretStore,
        layout: Layout,
    ) -> None:
        """The key is created on first write, 0600 in a 0700 folder."""
        assert not layout.key.exists()

        store.create("token", b"v")

        assert mode(layout.key) == 0o600
        assert mode(layout.key.parent) == 0o700
        assert not layout.key.is_relative_to(layout.project)

    def test_state_files_are_private(
        self,
        store: SecretStore,
        layout: Layout,
    ) -> None:
        """Stored secrets are 0600 files in a 0700 folder, no leftovers."""
        store.create("token", b"v")
        store.update("token", b"w")

        folder = layout.state / "secrets"
        assert mode(folder) == 0o700
        entries = [(path.name, mode(path)) for path in folder.iterdir()]
        assert entries == [("token", 0o600)]

    def test_reading_files_needs_no_key(
        self, store: SecretStore, layout: Layout
    ) -> None:
        """Listing and reading ``.secrets/`` files does not create a key."""
        (layout.dot_secrets / "api-key").write_bytes(b"k")

        assert store.list() == ["api-key"]
        assert store.get("api-key") == b"k"
        assert not layout.key.exists()

    def test_wrong_key_names_secret_and_key(
        self, layout: Layout, tmp_path: Path
    ) -> None:
        """With another key, get() names the secret and the key path."""
        layout.store().create("token", b"value-123")
        other_key = tmp_path / "other" / "secrets.key"
        SecretStore(tmp_path / "x", tmp_path / "y", other_key).create("z", b"")

        with pytest.raises(SecretUnreadable) as caught:
            layout.store(other_key).get("token")

        message = str(caught.value)
        assert "'token'" in message
        assert str(other_key) in message
        assert "key has changed" in message
        assert "value-123" not in message

    def test_missing_key_is_a_clear_error(self, layout: Layout) -> None:
        """A stored secret whose key file is gone says the key is missing."""
        layout.store().create("token", b"v")
        layout.key.unlink()

        with pytest.raises(SecretUnreadable, match="key file is missing"):
            layout.store().get("token")

    def test_swapped_files_are_detected(self, layout: Layout) -> None:
        """An encrypted file renamed to another secret does not decrypt."""
        store = layout.store()
        store.create("alpha", b"a-value")
        store.create("beta", b"b-value")
        folder = layout.state / "secrets"
        shutil.copyfile(folder / "alpha", folder / "beta")

        with pytest.raises(SecretUnreadable, match="'beta'"):
            layout.store().get("beta")

    def test_truncated_file_is_detected(self, layout: Layout) -> None:
        """A cut-short entry is reported as corrupt, naming the secret."""
        layout.store().create("token", b"v")
        (layout.state / "secrets" / "token").write_bytes(b"LFS1")

        with pytest.raises(SecretUnreadable, match="truncated"):
            layout.store().get("token")

    def test_update_repairs_lost_key(self, layout: Layout) -> None:
        """update() re-encrypts an entry whose key was lost."""
        layout.store().create("token", b"old")
        layout.key.unlink()
        store = layout.store()

        store.update("token", b"new")

        assert store.get("token") == b"new"

    def test_key_readable_by_others_refused(self, layout: Layout) -> None:
        """A key file with group or other bits set is refused, ssh-style."""
        layout.store().create("token", b"v")
        layout.key.chmod(0o644)

        with pytest.raises(SecretKeyError, match="chmod 600"):
            layout.store().get("token")

    def test_garbage_key_refused(self, layout: Layout) -> None:
        """A key file that is not 32 base64 bytes is refused by path."""
        layout.store().create("token", b"v")
        layout.key.write_bytes(b"not a key\n")

        with pytest.raises(SecretKeyError, match=str(layout.key)):
            layout.store().get("token")

    @pytest.mark.parametrize("inside", ["state", "dot_secrets"])
    def test_key_beside_data_refused(self, layout: Layout, inside: str) -> None:
        """A key inside the state folder or ``.secrets/`` is refused."""
        folder: Path = getattr(layout, inside)

        with pytest.raises(SecretKeyError, match="outside the project"):
            layout.store(folder / "secrets.key")

    def test_default_key_path_follows_xdg(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """The key defaults to $XDG_DATA_HOME, else ~/.local/share."""
        monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
        assert default_key_path() == tmp_path / "localfaas" / "secrets.key"

        # A relative XDG_DATA_HOME is invalid by the XDG spec and ignored.
        monkeypatch.setenv("XDG_DATA_HOME", "relative/dir")
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        expected = tmp_path / "home" / ".local/share/localfaas/secrets.key"
        assert default_key_path() == expected


class TestProjectFiles:
    """``.secrets/<name>`` files, faas-cli's local-run convention."""

    def test_files_are_visible(
        self,
        store: SecretStore,
        layout: Layout,
    ) -> None:
        """Valid file names are listed and read; other entries are not."""
        (layout.dot_secrets / "api-key").write_bytes(b"k1\n")
        (layout.dot_secrets / "README.md").write_text("notes")
        (layout.dot_secrets / ".gitkeep").write_text("")
        (layout.dot_secrets / "folder").mkdir()
        store.create("stored", b"s")

        assert store.list() == ["api-key", "stored"]
        assert store.get("api-key") == b"k1\n"
        assert store.exists("api-key")
        assert not store.exists("folder")

    def test_create_over_file_conflicts(
        self, store: SecretStore, layout: Layout
    ) -> None:
        """Creating a name that is a file raises SecretExists (409)."""
        (layout.dot_secrets / "api-key").write_bytes(b"k")

        with pytest.raises(SecretExists, match="edit that file"):
            store.create("api-key", b"other")

    @pytest.mark.parametrize("action", ["update", "delete"])
    def test_files_are_read_only(
        self, store: SecretStore, layout: Layout, action: str
    ) -> None:
        """update and delete of a file secret raise SecretReadOnly."""
        path = layout.dot_secrets / "api-key"
        path.write_bytes(b"k")

        calls: dict[str, Callable[[], object]] = {
            "update": lambda: store.update("api-key", b"other"),
            "delete": lambda: store.delete("api-key"),
        }

        with pytest.raises(SecretReadOnly) as caught:
            calls[action]()

        assert caught.value.status == 409
        assert str(path) in str(caught.value)
        assert path.read_bytes() == b"k"

    def test_file_wins_over_stored(
        self,
        store: SecretStore,
        layout: Layout,
    ) -> None:
        """A file added after an API secret of that name takes precedence."""
        store.create("token", b"from-api")
        (layout.dot_secrets / "token").write_bytes(b"from-file")

        assert store.get("token") == b"from-file"
        assert store.list() == ["token"]


class TestNames:
    """Names follow the OpenFaaS profile: DNS-1123 subdomain, <= 253."""

    BAD: ClassVar[list[str]] = [
        "../x",
        "a/b",
        "..",
        ".hidden",
        "Upper",
        "a_b",
        "-a",
        "a-",
        "a..b",
        "a\n",
        "é",
        "x" * 254,
    ]

    @pytest.mark.parametrize("name", BAD)
    @pytest.mark.parametrize(
        "action", ["get", "exists", "create", "update", "delete", "materialize"]
    )
    def test_bad_names_refused(
        self, store: SecretStore, tmp_path: Path, name: str, action: str
    ) -> None:
        """Every operation refuses a bad name with 422, naming it."""
        calls: dict[str, Callable[[], object]] = {
            "get": lambda: store.get(name),
            "exists": lambda: store.exists(name),
            "create": lambda: store.create(name, b"v"),
            "update": lambda: store.update(name, b"v"),
            "delete": lambda: store.delete(name),
            "materialize": lambda: store.materialize([name], tmp_path / "f"),
        }

        with pytest.raises(InvalidSecretName) as caught:
            calls[action]()

        assert caught.value.status == 422
        assert repr(name) in str(caught.value)
        assert not (tmp_path / "f").exists()
        assert not (tmp_path / "x").exists()

    def test_empty_name_is_500(self, store: SecretStore) -> None:
        """An empty name is refused with faas-netes's 500."""
        with pytest.raises(InvalidSecretName) as caught:
            store.create("", b"v")

        assert caught.value.status == 500

    GOOD: ClassVar[list[str]] = ["a", "0", "api-key", "a.b-c.d9", "x" * 253]

    @pytest.mark.parametrize("name", GOOD)
    def test_good_names_accepted(self, store: SecretStore, name: str) -> None:
        """DNS-1123 subdomains up to 253 characters are accepted."""
        assert validate_secret_name(name) == name

        store.create(name, b"v")

        assert store.list() == [name]


class TestMaterialize:
    """A function's secrets folder."""

    def test_exact_set_and_modes(
        self,
        store: SecretStore,
        tmp_path: Path,
    ) -> None:
        """The folder ends up 0700 with exactly the listed files, 0400 each."""
        store.create("one", b"1")
        store.create("two", b"2")
        store.create("unused", b"u")
        folder = tmp_path / "fn" / "secrets"
        folder.mkdir(parents=True, mode=0o755)
        (folder / "stale").write_text("old")
        (folder / "old-dir").mkdir()
        (folder / "link").symlink_to(tmp_path)

        store.materialize(["two", "one", "two"], folder)

        assert sorted(p.name for p in folder.iterdir()) == ["one", "two"]
        assert (folder / "one").read_bytes() == b"1"
        assert (folder / "two").read_bytes() == b"2"
        assert mode(folder) == 0o700
        assert {mode(p) for p in folder.iterdir()} == {0o400}

    def test_empty_list_empties_folder(
        self, store: SecretStore, tmp_path: Path
    ) -> None:
        """Materializing no names leaves an empty folder."""
        store.create("one", b"1")
        store.materialize(["one"], tmp_path / "f")

        store.materialize([], tmp_path / "f")

        assert list((tmp_path / "f").iterdir()) == []

    def test_both_sources(
        self, store: SecretStore, layout: Layout, tmp_path: Path
    ) -> None:
        """Files from ``.secrets/`` and stored secrets both materialize."""
        (layout.dot_secrets / "from-file").write_bytes(b"f")
        store.create("from-api", b"a")

        store.materialize(["from-file", "from-api"], tmp_path / "f")

        assert (tmp_path / "f" / "from-file").read_bytes() == b"f"
        assert (tmp_path / "f" / "from-api").read_bytes() == b"a"

    def test_missing_lists_every_name(
        self, store: SecretStore, layout: Layout, tmp_path: Path
    ) -> None:
        """MissingSecrets names each missing secret and both ways to add it."""
        store.create("present", b"p")
        folder = tmp_path / "f"
        folder.mkdir()
        (folder / "keep-me").write_text("untouched")

        with pytest.raises(MissingSecrets) as caught:
            store.materialize(["gone-a", "present", "gone-b"], folder)

        message = str(caught.value)
        assert caught.value.names == ["gone-a", "gone-b"]
        assert caught.value.status == 400
        assert "create the following secrets (gone-a, gone-b) in: " in message
        assert f'"{layout.dot_secrets}"' in message
        assert str(layout.dot_secrets / "gone-b") in message
        assert "'localfaas secret create gone-a'" in message
        assert "present" not in message.replace("'present'", "")
        assert [p.name for p in folder.iterdir()] == ["keep-me"]

    def test_unreadable_leaves_folder_alone(
        self, layout: Layout, tmp_path: Path
    ) -> None:
        """If one value cannot be decrypted, no file is written or removed."""
        layout.store().create("good", b"g")
        layout.store().create("bad", b"b")
        folder = layout.state / "secrets"
        shutil.copyfile(folder / "good", folder / "bad")
        target = tmp_path / "f"
        target.mkdir()
        (target / "old").write_text("o")

        with pytest.raises(SecretUnreadable):
            layout.store().materialize(["good", "bad"], target)

        assert [p.name for p in target.iterdir()] == ["old"]

    def test_changed_value_replaces_file(
        self, store: SecretStore, tmp_path: Path
    ) -> None:
        """A new value arrives as a new file; an open reader keeps the old."""
        store.create("token", b"old-value")
        store.create("other", b"same")
        store.materialize(["token", "other"], tmp_path / "f")
        path, same = tmp_path / "f" / "token", tmp_path / "f" / "other"
        inode, same_inode = path.stat().st_ino, same.stat().st_ino

        with path.open("rb") as reader:
            store.update("token", b"new-value")
            store.materialize(["token", "other"], tmp_path / "f")

            assert reader.read() == b"old-value"
        assert path.read_bytes() == b"new-value"
        assert path.stat().st_ino != inode
        assert same.stat().st_ino == same_inode

    def test_readers_never_see_partial_files(
        self, store: SecretStore, tmp_path: Path
    ) -> None:
        """A reader racing rewrites only ever sees one whole value."""
        values = [bytes([n]) * 256_000 for n in (ord("a"), ord("b"))]
        store.create("big", values[0])
        folder = tmp_path / "f"
        store.materialize(["big"], folder)
        seen: set[bytes] = set()
        done = threading.Event()

        def read_forever() -> None:
            while not done.is_set():
                seen.add((folder / "big").read_bytes())

        reader = threading.Thread(target=read_forever)
        reader.start()
        try:
            for round_ in range(40):
                store.update("big", values[round_ % 2])
                store.materialize(["big"], folder)
        finally:
            done.set()
            reader.join()

        assert seen <= set(values)
        assert seen


class TestOperation:
    """Thread safety and logging."""

    def test_concurrent_creates_of_one_name(self, store: SecretStore) -> None:
        """Of many threads creating one name, exactly one wins."""
        outcomes: list[str] = []
        barrier = threading.Barrier(8)

        def create(n: int) -> None:
            barrier.wait()
            try:
                store.create("race", str(n).encode())
                outcomes.append("created")
            except SecretExists:
                outcomes.append("exists")

        threads = [threading.Thread(target=create, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert sorted(outcomes) == ["created"] + ["exists"] * 7
        assert store.get("race") in {str(n).encode() for n in range(8)}

    def test_concurrent_creates_of_many_names(self, layout: Layout) -> None:
        """Threads creating different names all succeed, key shared."""
        store = layout.store()
        names = [f"s{n}" for n in range(16)]
        threads = [
            threading.Thread(target=store.create, args=(name, name.encode()))
            for name in names
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        fresh = layout.store()
        assert fresh.list() == sorted(names)
        assert all(fresh.get(n) == n.encode() for n in names)

    def test_values_never_logged(
        self,
        store: SecretStore,
        tmp_path: Path,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Operations log secret names, never values."""
        caplog.set_level(logging.DEBUG)
        value = b"zz-sensitive-value-zz"

        store.create("logged", value)
        store.update("logged", value + b"2")
        store.get("logged")
        store.materialize(["logged"], tmp_path / "f")
        store.delete("logged")

        assert "logged" in caplog.text
        assert "sensitive" not in caplog.text
