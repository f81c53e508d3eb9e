"""``pgpoolsync exporter``: its flags, its settings, and the process that serves /metrics.

Owns the exporter's command line (pgpool2_exporter's ``DATA_SOURCE_*`` environment, the
``--hold-connection-seconds`` that lets pgpool's smart shutdown finish) and its main loop.
``main`` is what the console script runs for this command: it loads the exporter, psycopg and
the standard library, nothing of ``render``/``run`` (no core, jinja2, cryptography, kubernetes
or prometheus_client; tests/unit/test_architecture.py checks the running process).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pgpoolsync import httpserve, logsetup
from pgpoolsync.envflags import EnvParser, UsageError, add_top_flags, nonneg_int, read_password_file
from pgpoolsync.exporter.conninfo import conninfo_from_env, mask

log = logging.getLogger(__name__)

NAME = "exporter"
DEFAULT_LISTEN = ":9719"
DEFAULT_HOLD_SECONDS = 5


@dataclass(frozen=True)
class ExporterSettings:
    listen: str
    conninfo: str = field(repr=False)
    password: str | None = field(default=None, repr=False)
    hold_connection_seconds: int = DEFAULT_HOLD_SECONDS


def add_parser(subs: Any, environ: Mapping[str, str]) -> EnvParser:
    """The ``exporter`` sub-command on ``subs`` (argparse's sub-parsers); returns its
    EnvParser (its ``errors`` name bad PGPOOLSYNC_* values)."""
    exp = subs.add_parser(
        NAME,
        help="serve pgpool's metrics for Prometheus (pgpool2_exporter compatible)",
        description="Serve pgpool's metrics (SHOW pool_nodes, pool_backend_stats, ...) on "
        "--listen. Connection from DATA_SOURCE_NAME, or DATA_SOURCE_URI / DATA_SOURCE_USER / "
        "DATA_SOURCE_PASS, as pgpool2_exporter.",
    )
    p = EnvParser(exp, environ)
    p.add("--listen", help="address of /metrics", default=DEFAULT_LISTEN)
    p.add(
        "--data-source-uri",
        help="host:port/dbname?options (default: "
        "$DATA_SOURCE_URI or 127.0.0.1:9999/postgres?sslmode=disable)",
    )
    p.add("--data-source-user", help="user (default: $DATA_SOURCE_USER or postgres)")
    p.add("--data-source-pass-file", help="file holding the password (default: $DATA_SOURCE_PASS)")
    p.add(
        "--hold-connection-seconds",
        help="keep the connection to pgpool this long after a scrape, then close it: pgpool's "
        "smart shutdown waits for every client, so an exporter always connected would hold "
        "it to the grace period (0: close after every scrape)",
        default=str(DEFAULT_HOLD_SECONDS),
        type=nonneg_int,
    )
    return p


def settings(ns: argparse.Namespace, environ: Mapping[str, str]) -> ExporterSettings:
    conninfo, password = conninfo_from_env(
        environ, uri=ns.data_source_uri, user=ns.data_source_user
    )
    if ns.data_source_pass_file:
        password = read_password_file("--data-source-pass-file", ns.data_source_pass_file)
    return ExporterSettings(
        listen=ns.listen,
        conninfo=conninfo,
        password=password,
        hold_connection_seconds=int(ns.hold_connection_seconds),
    )


def run(settings: ExporterSettings) -> int:
    """Serve /metrics until SIGTERM or SIGINT; exit status 0."""
    from pgpoolsync.exporter.exposition import CONTENT_TYPE, exposition  # noqa: PLC0415
    from pgpoolsync.exporter.scrape import Scraper  # noqa: PLC0415 - psycopg loads here

    scraper = Scraper(
        conninfo=settings.conninfo,
        password=settings.password,
        hold_seconds=settings.hold_connection_seconds,
    )
    host, port = httpserve.parse_listen(settings.listen)
    ok = (200, b"ok\n", httpserve.TEXT)
    server = httpserve.serve(
        routes={
            "/metrics": lambda: (200, exposition(scraper.scrape()), CONTENT_TYPE),
            "/healthz": lambda: ok,
            "/readyz": lambda: ok,
        },
        host=host,
        port=port,
    )
    log.info(
        "exporting pgpool metrics from %s on %s:%d",
        mask(settings.conninfo),
        host,
        server.server_address[1],
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    while not stop.wait(min(1.0, max(0.1, settings.hold_connection_seconds / 2))):
        if scraper.close_idle():
            log.debug("closed the idle connection to pgpool")
    server.shutdown()
    return 0


def main(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """``pgpoolsync [top-level flags] exporter [flags]`` with only the exporter loaded."""
    parser = argparse.ArgumentParser(prog="pgpoolsync")
    top = EnvParser(parser, environ)
    add_top_flags(top)
    subs = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    exp = add_parser(subs, environ)
    ns = parser.parse_args(list(argv))
    if top.errors or exp.errors:
        parser.error("; ".join(top.errors + exp.errors))
    try:
        parsed = settings(ns, environ)
    except UsageError as exc:
        print(f"pgpoolsync: {exc}", file=sys.stderr)
        return 2
    logsetup.configure(level=ns.log_level, fmt=ns.log_format)
    return run(parsed)
