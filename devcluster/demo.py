"""``python -m devcluster``: the demo: a cluster, demo secrets, ``pgpoolsync run`` and pgpool
started once the sidecar says ready (/readyz), as the manifests' startup probe does."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from devcluster.binaries import pgpoolsync_exe
from devcluster.pgpool import Pgpool, can_login
from devcluster.ports import free_port, wait_ready
from devcluster.postgres import PgCluster

DEMO_USERS = (("alice", "alice-pw", "scram-sha-256"), ("bob", "bob:pw", "md5"))


def _demo_secrets(root: Path) -> None:
    for user, password, _ in DEMO_USERS:
        d = root / user
        d.mkdir(parents=True, exist_ok=True)
        (d / "username").write_text(user)
        (d / "password").write_text(password)


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
