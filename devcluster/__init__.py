"""A local PostgreSQL primary + streaming replica and a pgpool, for the demo and the tests.

Everything lives in one base directory on loopback ports. PostgreSQL refuses to run as root, so
when we are root its processes run as the ``postgres`` user (``runuser``); pgpool runs as the
calling user so it can read the 0600 files pgpoolsync writes. Debian's packages provide the
binaries (``/usr/lib/postgresql/<v>/bin``, ``/usr/sbin/pgpool``). Passwords are set over a
psycopg connection, never passed in argv.

``python -m devcluster`` runs the demo: cluster, demo secrets, ``pgpoolsync``, pgpool.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql


def pg_bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql)")
    return Path(found[-1]).parent


def pgpoolsync_exe() -> str:
    """The ``pgpoolsync`` console script of the running interpreter's environment."""
    return str(Path(sys.executable).parent / "pgpoolsync")


def pgpool_binary() -> str:
    found = shutil.which("pgpool") or (
        "/usr/sbin/pgpool" if Path("/usr/sbin/pgpool").exists() else None
    )
    if not found:
        raise RuntimeError("pgpool not found (apt-get install pgpool2)")
    return found


@functools.cache
def pgpool_version() -> str:
    """The version of the pgpool under test, e.g. ``4.3.5`` (``pgpool --version`` prints
    ``pgpool-II version 4.3.5 (tamahomeboshi)`` on stderr)."""
    got = subprocess.run(
        [pgpool_binary(), "--version"], capture_output=True, text=True, check=False
    )
    words = (got.stdout + got.stderr).split()
    return words[words.index("version") + 1] if "version" in words else "?"


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A free loopback port below the ephemeral range, so that no outgoing connection can take
    it between now and the moment a server binds it."""
    low, _ = _ephemeral_range()
    top = max(low, 12000)
    for _ in range(200):
        port = random.randrange(10000, top)  # noqa: S311 - not security relevant
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port found")


def wait_port(port: int, *, timeout: float = 30.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s") from None
            time.sleep(0.05)


def wait_ready(
    port: int,
    proc: subprocess.Popen[bytes],
    *,
    timeout: float = 60.0,
    host: str = "127.0.0.1",
) -> None:
    """Wait until the ``pgpoolsync run`` in ``proc`` serves /readyz 200 on ``port``: its first
    apply is on disk, every file pgpool reads included. Start pgpool only after this, as the
    manifests' startup probe does: ``pool_passwd`` is written before ``pgpool.conf``, and a
    pgpool started in between reads no configuration (port 9999, defaults)."""
    import urllib.error  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415

    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"pgpoolsync run exited {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/readyz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.HTTPError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"pgpoolsync run not ready (/readyz on {host}:{port}) after {timeout}s"
            )
        time.sleep(0.05)


def _as_postgres() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def _chown_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(path, pw.pw_uid, pw.pw_gid)


def _clean_env() -> dict[str, str]:
    """Child environment with no PG*/PGPOOL* variables leaking in (nor secrets)."""
    keep = ("PATH", "LANG", "LC_ALL", "HOME", "TZ")
    return {k: v for k, v in os.environ.items() if k in keep}


@dataclass
class Node:
    name: str
    port: int
    datadir: Path
    sockdir: Path


class PgCluster:
    """Primary on one port, streaming replica on another, sockets under ``base``."""

    def __init__(self, base: Path, *, tls: tuple[bytes, bytes] | None = None) -> None:
        """``tls``: (certificate PEM, key PEM) → ssl = on and TCP logins only over TLS."""
        self.base = base
        self.tls = tls
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
            [*_as_postgres(), *args],
            check=True,
            env=_clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=self.base,
        )

    def start(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base, 0o755)
        _chown_postgres(self.base)
        self.primary.sockdir.mkdir(exist_ok=True)
        _chown_postgres(self.primary.sockdir)
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
        with (p.datadir / "postgresql.conf").open("a") as f:
            f.write(
                f"\nport = {p.port}\nlisten_addresses = '127.0.0.1'\n"
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
                _chown_postgres(path)
            with (p.datadir / "postgresql.conf").open("a") as f:
                f.write("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
        with (p.datadir / "pg_hba.conf").open("w") as f:
            f.write(
                "local all all trust\nlocal replication all trust\n"
                f"{host_type} all all 127.0.0.1/32 md5\n"
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


class Pgpool:
    """A pgpool on files in ``config_dir``; runtime dirs under ``base``."""

    def __init__(self, base: Path, config_dir: Path, *, key_file: Path) -> None:
        self.base = base
        self.config_dir = config_dir
        self.key_file = key_file
        self.port = free_port()
        self.pcp_port = free_port()
        self.rundir = base / "pgpool-run"
        self.log = base / "pgpool.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def params(self) -> dict[str, str]:
        """PGPOOL_PARAMS_* for this instance's ports and runtime directories, and the version of
        the pgpool under test (PGPOOLSYNC_PGPOOL_VERSION)."""
        self.rundir.mkdir(parents=True, exist_ok=True)
        run = str(self.rundir)
        return {
            "PGPOOL_PARAMS_PORT": str(self.port),
            "PGPOOL_PARAMS_PCP_PORT": str(self.pcp_port),
            "PGPOOL_PARAMS_LISTEN_ADDRESSES": "127.0.0.1",
            "PGPOOL_PARAMS_PCP_LISTEN_ADDRESSES": "127.0.0.1",
            "PGPOOL_PARAMS_SOCKET_DIR": run,
            "PGPOOL_PARAMS_PCP_SOCKET_DIR": run,
            "PGPOOL_PARAMS_WD_IPC_SOCKET_DIR": run,
            "PGPOOL_PARAMS_PID_FILE_NAME": f"{run}/pgpool.pid",
            "PGPOOL_PARAMS_LOGDIR": run,
            "PGPOOL_PARAMS_NUM_INIT_CHILDREN": "4",
            "PGPOOL_PARAMS_MAX_POOL": "2",
            "PGPOOL_PARAMS_LOG_MIN_MESSAGES": "info",
            # The files are written for the pgpool under test (4.7: work_dir, not logdir).
            "PGPOOLSYNC_PGPOOL_VERSION": ".".join(pgpool_version().split(".")[:2]),
        }

    def argv(self) -> list[str]:
        c = self.config_dir
        return [
            pgpool_binary(),
            "-n",
            "-D",
            "-f",
            str(c / "pgpool.conf"),
            "-a",
            str(c / "pool_hba.conf"),
            "-F",
            str(c / "pcp.conf"),
            "-k",
            str(self.key_file),
        ]

    def start(self, *, timeout: float = 30.0) -> None:
        self.rundir.mkdir(parents=True, exist_ok=True)
        logf = self.log.open("ab")
        self.proc = subprocess.Popen(
            self.argv(),
            stdout=logf,
            stderr=subprocess.STDOUT,
            env=_clean_env(),
            start_new_session=True,
        )
        logf.close()
        try:
            wait_port(self.port, timeout=timeout)
            wait_port(self.pcp_port, timeout=timeout)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"pgpool did not start; log tail:\n{self.log_tail()}") from None

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            # SIGINT: pgpool's fast shutdown; its children go with it.
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def connect(
        self, user: str, password: str, *, dbname: str = "postgres", **kw: Any
    ) -> psycopg.Connection[Any]:
        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user=user,
            password=password,
            dbname=dbname,
            autocommit=True,
            connect_timeout=10,
            **kw,
        )


@contextlib.contextmanager
def running_cluster(base: Path) -> Iterator[PgCluster]:
    cluster = PgCluster(base)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


DEMO_USERS = (("alice", "alice-pw", "scram-sha-256"), ("bob", "bob:pw", "md5"))


def _demo_secrets(root: Path) -> None:
    for user, password, _ in DEMO_USERS:
        d = root / user
        d.mkdir(parents=True, exist_ok=True)
        (d / "username").write_text(user)
        (d / "password").write_text(password)


def can_login(pool: Pgpool, user: str, password: str) -> bool:
    """A login through ``pool`` as ``user`` succeeds and the session is that user's."""
    try:
        with pool.connect(user, password) as conn:
            return conn.execute("SELECT current_user").fetchone() == (user,)
    except psycopg.OperationalError:
        return False


def demo(argv: Sequence[str] | None = None) -> int:
    """Start the demo; with --check, prove logins and a live rotation, then stop."""
    import argparse  # noqa: PLC0415 - only the demo needs it

    ap = argparse.ArgumentParser(prog="python -m devcluster", description=__doc__)
    ap.add_argument("--dir", default="/tmp/pgpoolsync-demo", help="where everything lives")
    ap.add_argument(
        "--check",
        action="store_true",
        help="log in as each demo user, rotate alice's password live, then stop",
    )
    args = ap.parse_args(argv)
    base = Path(args.dir)
    if base.exists():
        shutil.rmtree(base)
    base.mkdir(parents=True)
    cluster = PgCluster(base / "pg")
    config = base / "config"
    pool = Pgpool(base, config, key_file=config / ".pgpoolkey")
    sync: subprocess.Popen[bytes] | None = None
    try:
        print(
            f"starting PostgreSQL primary :{cluster.primary.port} and replica "
            f":{cluster.replica.port} in {cluster.base}",
            flush=True,
        )
        cluster.start()
        for user, password, enc in DEMO_USERS:
            cluster.set_role(user, password, encryption=enc)
        secrets = base / "secrets"
        _demo_secrets(secrets)
        metrics_port = free_port()
        env = {
            "PATH": os.environ.get("PATH", ""),
            **pool.params(),
            "PGPOOL_PCP_USER": "pcpadmin",
            "PGPOOL_PCP_PASSWORD": "demo-pcp-password",
        }
        exe = pgpoolsync_exe()
        with (base / "pgpoolsync.log").open("ab") as logf:
            sync = subprocess.Popen(
                [
                    exe,
                    "run",
                    "--config-dir",
                    str(config),
                    "--secrets-dir",
                    str(secrets),
                    *cluster.backend_args(),
                    "--listen",
                    f"127.0.0.1:{metrics_port}",
                ],
                env=env,
                stdout=logf,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_ready(metrics_port, sync, timeout=30)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}; see {base / 'pgpoolsync.log'}") from None
        pool.start()
        for user, password, enc in DEMO_USERS:
            deadline = time.monotonic() + 20
            while not can_login(pool, user, password):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{user} cannot log in through pgpool")
                time.sleep(0.1)
            print(f"login ok through pgpool: {user} (stored as {enc})", flush=True)
        if args.check:
            cluster.set_role("alice", "alice-rotated", encryption="scram-sha-256")
            (secrets / "alice" / "password").write_text("alice-rotated")
            deadline = time.monotonic() + 20
            while not can_login(pool, "alice", "alice-rotated"):
                if time.monotonic() > deadline:
                    raise RuntimeError("rotated password not accepted")
                time.sleep(0.05)
            print(
                "rotation ok: alice logs in with her new password, pgpool was not restarted",
                flush=True,
            )
            return 0
        print(
            f"""
pgpool listens on 127.0.0.1:{pool.port}; files in {config}; pgpoolsync metrics on
http://127.0.0.1:{metrics_port}/metrics; logs in {base}.
Log in:      PGPASSWORD=alice-pw psql -h 127.0.0.1 -p {pool.port} -U alice postgres
Rotate live: psql -h {cluster.primary.sockdir} -p {cluster.primary.port} -U postgres \\
               -c "ALTER ROLE alice PASSWORD 'new-pw'"
             printf new-pw > {secrets}/alice/password
             PGPASSWORD=new-pw psql -h 127.0.0.1 -p {pool.port} -U alice postgres
Ctrl-C stops everything.""",
            flush=True,
        )
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        while pool.running() and sync.poll() is None:
            time.sleep(1)
        print("pgpool or pgpoolsync exited; pgpool log tail:\n" + pool.log_tail())
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        if sync is not None and sync.poll() is None:
            sync.terminate()
            sync.wait(timeout=15)
        pool.stop()
        cluster.stop()
