"""Atomic writes, modes, unchanged files left alone, and the pool key."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pgpoolsync.pgpool import writer


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_secret_files_are_0600_and_others_0644(tmp_path: Path) -> None:
    changed = writer.write_files(
        tmp_path, {"pool_passwd": "a:b\n", "pgpool.conf": "x\n"}, secret_files={"pool_passwd"}
    )
    assert changed == ["pool_passwd", "pgpool.conf"]
    assert _mode(tmp_path / "pool_passwd") == 0o600
    assert _mode(tmp_path / "pgpool.conf") == 0o644


def test_unchanged_files_are_not_rewritten(tmp_path: Path) -> None:
    files = {"pool_passwd": "a:b\n", "pgpool.conf": "x\n"}
    writer.write_files(tmp_path, files, secret_files={"pool_passwd"})
    inode = (tmp_path / "pool_passwd").stat().st_ino
    changed = writer.write_files(
        tmp_path, {**files, "pgpool.conf": "y\n"}, secret_files={"pool_passwd"}
    )
    assert changed == ["pgpool.conf"]
    assert (tmp_path / "pool_passwd").stat().st_ino == inode


def test_a_wrong_mode_is_repaired(tmp_path: Path) -> None:
    (tmp_path / "pool_passwd").write_text("a:b\n")
    (tmp_path / "pool_passwd").chmod(0o644)
    assert writer.write_files(tmp_path, {"pool_passwd": "a:b\n"}, secret_files={"pool_passwd"})
    assert _mode(tmp_path / "pool_passwd") == 0o600


def test_a_rewrite_replaces_the_inode_and_leaves_no_temp_files(tmp_path: Path) -> None:
    writer.write_files(tmp_path, {"f": "1\n"}, secret_files=())
    before = (tmp_path / "f").stat().st_ino
    writer.write_files(tmp_path, {"f": "2\n"}, secret_files=())
    assert (tmp_path / "f").stat().st_ino != before
    assert (tmp_path / "f").read_text() == "2\n"
    assert sorted(os.listdir(tmp_path)) == ["f"]


def test_a_failed_write_keeps_the_old_file_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer.write_files(tmp_path, {"f": "old\n"}, secret_files=())

    def boom(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("pgpoolsync.pgpool.writer.os.fsync", boom)
    with pytest.raises(OSError, match="No space"):
        writer.write_files(tmp_path, {"f": "new\n"}, secret_files=())
    assert (tmp_path / "f").read_text() == "old\n"
    assert sorted(os.listdir(tmp_path)) == ["f"]


def test_the_pool_key_is_created_once_0600_and_then_kept(tmp_path: Path) -> None:
    path = tmp_path / "sub" / ".pgpoolkey"
    key, created = writer.load_or_create_pool_key(path)
    assert created and len(key) >= 32
    assert _mode(path) == 0o600
    again, created_again = writer.load_or_create_pool_key(path)
    assert (again, created_again) == (key, False)


def test_an_existing_key_is_read_as_its_first_line(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_bytes(b"big secret\nignored\n")
    assert writer.read_pool_key(path) == b"big secret"


def test_an_empty_key_file_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_bytes(b"\n")
    with pytest.raises(writer.KeyFileError, match=str(path)):
        writer.read_pool_key(path)


def test_the_pool_key_can_be_seeded_from_a_mounted_secret(tmp_path: Path) -> None:
    seed = tmp_path / "secret-key"
    seed.write_bytes(b"from-a-secret\n")
    seed.chmod(0o440)
    path = tmp_path / "cfg" / ".pgpoolkey"
    key, created = writer.load_or_create_pool_key(path, seed=seed)
    assert (key, created) == (b"from-a-secret", True)
    assert _mode(path) == 0o600 and path.read_bytes() == b"from-a-secret\n"
