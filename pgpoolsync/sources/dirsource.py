"""The secrets-directory source (the embedded default): credentials laid out like mounted
Secret volumes.

``DIR/<name>/username`` (or ``user``) and ``DIR/<name>/password``, one sub-directory per
credential. Kubelet's layout (``..data`` symlink to ``..<timestamp>``, keys as symlinks into it)
reads the same; hidden entries are ignored. The directory is read whole on every pass (it is
small, and kubelet swaps it atomically). Owns the only ``import watchdog``: a watcher that
notifies when anything under a watched directory changes (kubelet swaps ``..data`` atomically,
so the directory is watched, not single files). Events have nowhere to go: problems are logged.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from pgpoolsync.core.model import Credential, Origin, Problem, Snapshot
from pgpoolsync.sources.convert import KeyConfig, TlsResult

log = logging.getLogger(__name__)

MAX_VALUE_BYTES = 1 << 20  # a Secret is at most 1 MiB


@dataclass(frozen=True)
class RawSecret:
    """One sub-directory: its name and each visible key's bytes."""

    source: Origin
    data: dict[str, bytes] = field(repr=False)


class SecretsDirError(Exception):
    """A directory to read or watch is missing or unreadable (its volume not mounted?)."""


def read_secrets_dir(root: Path) -> list[RawSecret]:
    """A snapshot of every credential directory under ``root``, sorted by name."""
    try:
        names = sorted(os.listdir(root))
    except OSError as exc:
        raise SecretsDirError(f"secrets directory {root}: {exc.strerror}") from None
    out: list[RawSecret] = []
    for name in names:
        if name.startswith("."):
            continue
        sub = root / name
        if not sub.is_dir():
            continue
        data: dict[str, bytes] = {}
        try:
            keys = sorted(os.listdir(sub))
        except OSError as exc:
            log.warning("secrets directory %s: %s", sub, exc.strerror)
            continue
        for key in keys:
            if key.startswith("."):
                continue
            path = sub / key
            try:
                if not path.is_file():
                    continue
                with path.open("rb") as f:
                    data[key] = f.read(MAX_VALUE_BYTES)
            except OSError as exc:
                # A kubelet swap can remove a key between listdir and open; the next pass sees it.
                log.debug("secrets directory %s: %s", path, exc.strerror)
        out.append(RawSecret(source=Origin("secrets dir", f"{root.name}/{name}"), data=data))
    return out


class _Handler(FileSystemEventHandler):
    def __init__(self, notify: Callable[[], None]) -> None:
        self._notify = notify

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        self._notify()


class DirWatcher:
    """Calls ``notify`` whenever anything under ``root`` changes."""

    def __init__(self, root: Path, notify: Callable[[], None]) -> None:
        self._root = root
        self._notify = notify
        self._observer = Observer()

    def start(self) -> None:
        """Raises SecretsDirError when ``root`` cannot be watched (e.g. it does not exist)."""
        if not self._root.is_dir():  # the same words as read_secrets_dir's
            reason = os.strerror(errno.ENOTDIR if self._root.exists() else errno.ENOENT)
            raise SecretsDirError(f"{self._root}: {reason}")
        try:
            self._observer.schedule(_Handler(self._notify), str(self._root), recursive=True)
            self._observer.daemon = True
            self._observer.start()
        except OSError as exc:
            raise SecretsDirError(f"{self._root}: {exc.strerror}") from None

    def stop(self) -> None:
        self._observer.stop()
        self._observer.join(timeout=5)

    def is_alive(self) -> bool:
        return bool(self._observer.is_alive())


def credentials_from_dir(root: Path | None, keys: KeyConfig) -> tuple[Credential | Problem, ...]:
    if root is None:
        return ()
    return tuple(keys.credential(s.source, s.data) for s in read_secrets_dir(root))


class DirSource:
    """Credentials from ``secrets_dir`` and TLS material from ``tls``; watched with watchdog."""

    def __init__(
        self,
        *,
        secrets_dir: Path | None,
        keys: KeyConfig,
        tls: Callable[[], TlsResult],
        watch: tuple[Path, ...] = (),
    ) -> None:
        self._root = secrets_dir
        self._keys = keys
        self._tls = tls
        self._watch = watch
        self._watchers: list[DirWatcher] = []

    def start(self, notify: Callable[[], None]) -> None:
        for directory in self._watch:
            watcher = DirWatcher(directory, notify)
            try:
                watcher.start()
            except SecretsDirError as exc:
                what = "secrets directory" if directory == self._root else "TLS directory"
                raise SecretsDirError(f"{what} {exc}") from None
            self._watchers.append(watcher)

    def snapshot(self) -> Snapshot:
        material, problem = self._tls()
        return Snapshot(
            credentials=credentials_from_dir(self._root, self._keys),
            problems=(problem,) if problem else (),
            tls=material,
        )

    def healthy(self) -> tuple[bool, str]:
        if any(not w.is_alive() for w in self._watchers):
            return False, "a directory watcher stopped"
        return True, "ok"

    def post_event(self, problem: Problem, reason: str) -> None:
        pass  # no API to post to: the reporter has logged it

    def stop(self) -> None:
        for w in self._watchers:
            w.stop()
