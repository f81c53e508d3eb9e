"""The secrets-directory source: credentials laid out like mounted Secret volumes.

``DIR/<name>/username`` (or ``user``) and ``DIR/<name>/password``, one sub-directory per
credential. Kubelet's layout (``..data`` symlink to ``..<timestamp>``, keys as symlinks into it)
reads the same; hidden entries are ignored. Owns the only ``import watchdog``: a watcher that sets
an event when anything under the directory changes (kubelet swaps ``..data`` atomically, so the
directory is watched, not single files).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

log = logging.getLogger(__name__)

MAX_VALUE_BYTES = 1 << 20  # a Secret is at most 1 MiB


@dataclass(frozen=True)
class RawSecret:
    """One sub-directory: its name and each visible key's bytes."""

    source: str
    data: dict[str, bytes] = field(repr=False)


class SecretsDirError(Exception):
    pass


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
        out.append(RawSecret(source=f"secrets dir {root.name}/{name}", data=data))
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
        self._observer.schedule(_Handler(self._notify), str(self._root), recursive=True)
        self._observer.daemon = True
        self._observer.start()

    def stop(self) -> None:
        self._observer.stop()
        self._observer.join(timeout=5)

    def is_alive(self) -> bool:
        return bool(self._observer.is_alive())
