"""Reading a secrets directory laid out like mounted Secret volumes."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgpoolsync.sources.dirsource import SecretsDirError, read_secrets_dir
from tests.pgpool_helpers import kubelet_write


def test_kubelet_layout_reads_through_the_symlinks(tmp_path: Path) -> None:
    kubelet_write(tmp_path, "alice", {"username": b"alice", "password": b"pw"}, stamp="1")
    [secret] = read_secrets_dir(tmp_path)
    assert secret.data == {"username": b"alice", "password": b"pw"}
    assert str(secret.source) == f"secrets dir {tmp_path.name}/alice"


def test_plain_files_hidden_entries_and_stray_files(tmp_path: Path) -> None:
    (tmp_path / "bob").mkdir()
    (tmp_path / "bob" / "user").write_bytes(b"bob")
    (tmp_path / "bob" / "password").write_bytes(b"pw")
    (tmp_path / "bob" / ".hidden").write_bytes(b"x")
    (tmp_path / ".git").mkdir()
    (tmp_path / "README").write_text("not a secret")
    [secret] = read_secrets_dir(tmp_path)
    assert secret.data == {"user": b"bob", "password": b"pw"}


def test_a_missing_directory_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(SecretsDirError, match="nope"):
        read_secrets_dir(tmp_path / "nope")
