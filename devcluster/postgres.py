"""A PostgreSQL primary and its streaming replica on loopback ports, under one base directory.
Passwords are set over a psycopg connection, never passed in argv."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from devcluster.binaries import as_postgres, chown_postgres, clean_env, pg_bindir
from devcluster.ports import free_port


@dataclass
class Node:
    name: str
    port: int
    datadir: Path
    sockdir: Path


class PgCluster:
    """Primary on one port, streaming replica on another, sockets under ``base``."""

    def __init__(
        self,
        base: Path,
        *,
        tls: tuple[bytes, bytes] | None = None,
        also_listen: tuple[str, str] | None = None,
    ) -> None:
        """``tls``: (certificate PEM, key PEM) → ssl = on and TCP logins only over TLS.
        ``also_listen``: (address, client network), e.g. where a real node's pods reach this
        host, and the network their connections come from, allowed with md5 as 127.0.0.1 is."""
        self.base = base
        self.tls = tls
        self.also_listen = also_listen
        self.bindir = pg_bindir()
        self.primary = Node("primary", free_port(), base / "primary", base / "sock")
        self.replica = Node("replica", free_port(), base / "replica", base / "sock")

    def backend_args(self) -> list[str]:
        """The pgpoolsync flags that point backends 0 and 1 at this primary and replica."""
        return [
            "--primary-host",
            "127.0.0.1",
            "--primary-port",
            str(self.primary.port),
            "--replica-host",
            "127.0.0.1",
            "--replica-port",
            str(self.replica.port),
        ]

    def _run(self, args: Sequence[str]) -> None:
        subprocess.run(
            [*as_postgres(), *args],
            check=True,
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=self.base,
        )

    def start(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base, 0o755)
        chown_postgres(self.base)
        self.primary.sockdir.mkdir(exist_ok=True)
        chown_postgres(self.primary.sockdir)
        p = self.primary
        self._run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(p.datadir),
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=md5",
                "-E",
                "UTF8",
                "--no-sync",
            ]
        )
        listen, clients = "127.0.0.1", ["127.0.0.1/32"]
        if self.also_listen is not None:
            listen += f",{self.also_listen[0]}"
            clients.append(self.also_listen[1])
        with (p.datadir / "postgresql.conf").open("a") as f:
            f.write(
                f"\nport = {p.port}\nlisten_addresses = '{listen}'\n"
                f"unix_socket_directories = '{p.sockdir}'\n"
                "wal_level = replica\nmax_wal_senders = 5\nhot_standby = on\n"
                "fsync = off\nlogging_collector = off\n"
            )
        host_type = "host"
        if self.tls is not None:
            host_type = "hostssl"  # TLS only, as Zalando, PGO and Percona clusters are
            for name, data in (("server.crt", self.tls[0]), ("server.key", self.tls[1])):
                path = p.datadir / name
                path.write_bytes(data)
                path.chmod(0o600)
                chown_postgres(path)
            with (p.datadir / "postgresql.conf").open("a") as f:
                f.write("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
        with (p.datadir / "pg_hba.conf").open("w") as f:
            f.write(
                "local all all trust\nlocal replication all trust\n"
                + "".join(f"{host_type} all all {net} md5\n" for net in clients)
            )
        self._start_node(p)
        self._run(
            [
                str(self.bindir / "pg_basebackup"),
                "-h",
                str(p.sockdir),
                "-p",
                str(p.port),
                "-U",
                "postgres",
                "-D",
                str(self.replica.datadir),
                "-R",
                "-X",
                "stream",
            ]
        )
        with (self.replica.datadir / "postgresql.conf").open("a") as f:
            f.write(f"\nport = {self.replica.port}\n")
        self._start_node(self.replica)
        self.wait_streaming()

    def _start_node(self, node: Node) -> None:
        self._run(
            [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(node.datadir),
                "-l",
                str(self.base / f"{node.name}.log"),
                "-w",
                "-t",
                "60",
                "start",
            ]
        )

    def switchover(self) -> None:
        """What an operator does in a switchover: stop the primary, promote the replica, rebuild
        the old primary as the new primary's streaming standby and start it. ``primary`` and
        ``replica`` swap; each keeps its port."""
        old, new = self.primary, self.replica
        ctl = str(self.bindir / "pg_ctl")
        self._run([ctl, "-D", str(old.datadir), "-m", "fast", "-w", "stop"])
        self._run([ctl, "-D", str(new.datadir), "-w", "promote"])
        shutil.rmtree(old.datadir)
        self._run(
            [
                str(self.bindir / "pg_basebackup"),
                "-h",
                str(new.sockdir),
                "-p",
                str(new.port),
                "-U",
                "postgres",
                "-D",
                str(old.datadir),
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
            ]
        )
        with (old.datadir / "postgresql.conf").open("a") as f:
            f.write(f"\nport = {old.port}\n")
        self._start_node(old)
        self.primary, self.replica = new, old
        self.wait_streaming()

    def stop(self) -> None:
        for node in (self.replica, self.primary):
            if (node.datadir / "postmaster.pid").exists():
                with contextlib.suppress(subprocess.CalledProcessError):
                    self._run(
                        [
                            str(self.bindir / "pg_ctl"),
                            "-D",
                            str(node.datadir),
                            "-m",
                            "immediate",
                            "-w",
                            "stop",
                        ]
                    )

    def connect(
        self, node: Node | None = None, *, dbname: str = "postgres"
    ) -> psycopg.Connection[Any]:
        node = node or self.primary
        return psycopg.connect(
            host=str(node.sockdir), port=node.port, user="postgres", dbname=dbname, autocommit=True
        )

    def wait_streaming(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        with self.connect() as conn:
            while not conn.execute("SELECT count(*) FROM pg_stat_replication").fetchone()[0]:  # type: ignore[index]
                if time.monotonic() > deadline:
                    raise TimeoutError("replica is not streaming")
                time.sleep(0.1)

    def set_role(self, user: str, password: str, *, encryption: str = "scram-sha-256") -> None:
        """Create or alter a login role; ``encryption`` is how PostgreSQL stores the password."""
        with self.connect() as conn:
            conn.execute(sql.SQL("SET password_encryption = {}").format(sql.Literal(encryption)))
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone()
            verb = "ALTER" if exists else "CREATE"
            conn.execute(
                sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(user), sql.Literal(password)
                )
            )
        self.wait_replayed()

    def drop_role(self, user: str) -> None:
        with self.connect() as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(user)))
        self.wait_replayed()

    def wait_replayed(self, timeout: float = 30.0) -> None:
        with self.connect() as conn:
            lsn = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]  # type: ignore[index]
        deadline = time.monotonic() + timeout
        with self.connect(self.replica) as conn:
            while not conn.execute(
                "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)
            ).fetchone()[0]:  # type: ignore[index]
                if time.monotonic() > deadline:
                    raise TimeoutError("replica did not replay in time")
                time.sleep(0.02)


@contextlib.contextmanager
def running_cluster(base: Path) -> Iterator[PgCluster]:
    cluster = PgCluster(base)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
