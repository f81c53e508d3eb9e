"""The ``pgpoolsync`` console script: finds the command and loads only what it needs.

``exporter`` runs in its own container and process for the life of the pod: it gets its own
small command line (pgpoolsync/exporter/command.py), and Python's ``ssl`` stays out of its
process; every other command, and anything this cannot read (help, a bad flag), goes to the
whole command line (pgpoolsync/cli.py).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence

from pgpoolsync.envflags import EnvParser, add_top_flags


def command(argv: Sequence[str]) -> str | None:
    """The command word after the top-level flags, or None when there is none to be sure of."""
    parser = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    add_top_flags(EnvParser(parser, {}))
    parser.add_argument("command", nargs="?")
    parser.add_argument("rest", nargs=argparse.REMAINDER)
    try:
        ns, _ = parser.parse_known_args(list(argv))
    except (argparse.ArgumentError, SystemExit):
        return None
    return str(ns.command) if ns.command else None


def without_python_ssl() -> None:
    """Make ``import ssl`` fail in this process (the exporter's), unless it is loaded already.

    The exporter speaks TLS to pgpool through libpq, which carries its own OpenSSL (in
    psycopg's wheel). asyncio, which psycopg imports, and http.client import Python's ``ssl``
    only when they find it, and that second OpenSSL cost 4 of the process's 40 MiB
    (bench/scrape). Nothing on the exporter's path uses it."""
    if "ssl" not in sys.modules:
        sys.modules["ssl"] = None  # type: ignore[assignment] # None makes an import fail


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    argv = sys.argv[1:] if argv is None else argv
    if command(argv) == "exporter":
        without_python_ssl()
        from pgpoolsync.exporter import command as exporter  # noqa: PLC0415

        return exporter.main(argv, environ)
    from pgpoolsync import cli  # noqa: PLC0415

    return cli.main(argv, environ)
