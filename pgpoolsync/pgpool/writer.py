"""Putting files on disk: compare, temp file, fsync, rename, fsync dir, modes; and the pool key.

A file is either the whole old one or the whole new one at every instant: the new text goes to a
temp file in the same directory (created 0600 or 0644 from the start, never wider), is fsynced,
renamed over the old name, and the directory is fsynced. Unchanged files are not touched, so
their inode stays and pgpool has nothing new to read.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import Collection, Mapping
from pathlib import Path

from pgpoolsync.core import passwd

log = logging.getLogger(__name__)

SECRET_MODE = 0o600
PUBLIC_MODE = 0o644


class KeyFileError(Exception):
    """The pool key file cannot be used."""


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, mode: int) -> None:
    """Replace ``path`` with ``data`` atomically; the file never exists with a wider mode."""
    directory = path.parent
    tmp = directory / f".{path.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have narrowed it; never widens beyond `mode`
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(directory)


def _current(path: Path) -> tuple[bytes, int] | None:
    try:
        with path.open("rb") as f:
            return f.read(), os.fstat(f.fileno()).st_mode & 0o777
    except FileNotFoundError:
        return None


def write_files(
    directory: Path, files: Mapping[str, str], *, secret_files: Collection[str]
) -> list[str]:
    """Write each file whose content or mode differs; return the names written, in order."""
    directory.mkdir(parents=True, exist_ok=True)
    changed: list[str] = []
    for name, text in files.items():
        path = directory / name
        data = text.encode()
        mode = SECRET_MODE if name in secret_files else PUBLIC_MODE
        if _current(path) == (data, mode):
            continue
        write_atomic(path, data, mode=mode)
        changed.append(name)
    return changed


KEY_FILE = "pool key file (--pool-key-file, PGPOOLSYNC_POOL_KEY_FILE)"
SEED_FILE = "pool key seed file (--pool-key-seed-file, PGPOOLSYNC_POOL_KEY_SEED_FILE)"


def write_error(exc: OSError, config_dir: Path) -> str:
    """What a failed write says: the directory and the reason (a temporary file's name would
    only confuse)."""
    where = Path(exc.filename).parent if exc.filename else config_dir
    return (
        f"cannot write in {where}: {exc.strerror} (the config directory, --config-dir / "
        "PGPOOLSYNC_CONFIG_DIR, and the pool key file's directory must be writable)"
    )


def read_pool_key(path: Path, *, what: str = KEY_FILE) -> bytes:
    """The first line of the key file, without its newline, as pgpool reads it."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{what} {path}: {exc.strerror}") from None
    key = raw.split(b"\n", 1)[0]
    if not key:
        raise KeyFileError(f"{what} {path}: the first line is empty")
    if what == KEY_FILE and path.stat().st_mode & 0o077:  # a seed is a mounted Secret (0440)
        log.warning("pool key file %s is readable by group or others; it should be 0600", path)
    return key


def read_pool_passwd(config_dir: Path) -> dict[str, str]:
    """user → secret field of the pool_passwd on disk ({} when there is none)."""
    try:
        text = (config_dir / "pool_passwd").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    return passwd.parse_pool_passwd(text)


def load_or_create_pool_key(path: Path, *, seed: Path | None = None) -> tuple[bytes, bool]:
    """Read the pool key, or create it once (0600): from ``seed`` (e.g. a mounted Secret),
    else random. Returns (key, created).

    pgpool reads the key only at start, so an existing key is never replaced.
    """
    if path.exists():
        return read_pool_key(path), False
    path.parent.mkdir(parents=True, exist_ok=True)
    if seed is not None:
        key = read_pool_key(seed, what=SEED_FILE)
    else:
        key = secrets.token_urlsafe(32).encode()
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, SECRET_MODE)
    try:
        os.write(fd, key + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        # link() fails if another process created the key meanwhile: theirs wins.
        os.link(tmp, path)
    except FileExistsError:
        return read_pool_key(path), False
    finally:
        tmp.unlink()
    _fsync_dir(path.parent)
    log.info("created pool key file %s (mode 0600)", path)
    return key, True
