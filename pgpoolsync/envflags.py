"""Flags with environment twins, and the small value rules every command's flags share.

Owns the ``--some-flag`` ↔ ``PGPOOLSYNC_SOME_FLAG`` convention (``EnvParser``), the top-level
flags (``--log-level``, ``--log-format``), the one parser of truthy strings, flag value types
and password files. Imports nothing of the package, so the exporter's command line can use it
without loading what ``render`` and ``run`` need.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ENV_PREFIX = "PGPOOLSYNC_"
_TRUE = frozenset({"1", "true", "yes", "on"})


class UsageError(Exception):
    """Bad flags or flag values (exit status 2)."""


def truthy(value: str) -> bool:
    """Yes, true, on or 1, in any case, spaces and pgpool's quotes around it ignored: what
    the pgpool2_on_k8s image and pgpool take as true."""
    return value.strip().lower().strip("'") in _TRUE


def env_name(flag: str) -> str:
    return ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper()


class EnvParser:
    """Adds flags whose default comes from their PGPOOLSYNC_* twin."""

    def __init__(self, parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
        self.parser = parser
        self.environ = environ
        self.errors: list[str] = []

    def add(self, flag: str, *, help: str, default: Any = None, **kw: Any) -> None:
        twin = env_name(flag)
        if twin in self.environ:
            default = self.environ[twin]
            choices = kw.get("choices")
            if choices is not None and default not in choices:
                self.errors.append(
                    f"{twin}: invalid choice {default!r} (choose from {', '.join(choices)})"
                )
            if kw.get("action") == "store_true":
                default = truthy(self.environ[twin])
        shown = "" if default is None or kw.get("action") else f" (default: {default})"
        self.parser.add_argument(flag, default=default, help=f"{help}{shown} [env {twin}]", **kw)


def add_top_flags(p: EnvParser) -> None:
    """The flags before the command, shared by every command."""
    p.add(
        "--log-level",
        help="log level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
    )
    p.add("--log-format", help="log line format", default="text", choices=["text", "json"])


def read_password_file(flag: str, path: str) -> str:
    """A password file's text without its final newline. The error never quotes the content
    (a UnicodeDecodeError's text would show a byte of it)."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"{flag} {path}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{flag} {path}: not valid UTF-8") from None
    return text[:-1] if text.endswith("\n") else text


def port(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number") from None
    if not 0 < number < 65536:
        raise argparse.ArgumentTypeError(f"{value} is not a port number (1-65535)")
    return number


def nonneg_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return number
