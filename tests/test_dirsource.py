"""Reading a secrets directory laid out like mounted Secret volumes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pgpoolsync.dirsource import SecretsDirError, read_secrets_dir


def kubelet_secret(root: Path, name: str, data: dict[str, bytes], *, stamp: str = "1") -> None:
    """Lay a Secret out as kubelet does: ..<ts>/ holds keys, ..data → ..<ts>, key → ..data/key."""
    sub = root / name
    sub.mkdir(parents=True, exist_ok=True)
    ts = sub / f"..2026_11_22_{stamp}"
    ts.mkdir()
    for key, value in data.items():
        (ts / key).write_bytes(value)
    tmp_link = sub / "..data_tmp"
    tmp_link.symlink_to(ts.name)
    os.replace(tmp_link, sub / "..data")
    for key in data:
        if not (sub / key).is_symlink():
            (sub / key).symlink_to(f"..data/{key}")


def test_kubelet_layout_reads_through_the_symlinks(tmp_path: Path) -> None:
    kubelet_secret(tmp_path, "alice", {"username": b"alice", "password": b"pw"})
    [secret] = read_secrets_dir(tmp_path)
    assert secret.data == {"username": b"alice", "password": b"pw"}
    assert secret.source == f"secrets dir {tmp_path.name}/alice"


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
