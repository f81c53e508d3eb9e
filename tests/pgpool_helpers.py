"""Helpers for tests that run real pgpool on files rendered by the real CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from devcluster import PgCluster, Pgpool, can_login, pgpoolsync_exe

__all__ = ["can_login"]

T = TypeVar("T")


def pgpool2_on_k8s_minimal_env(
    *, primary: tuple[str, int], replica: tuple[str, int], user: str, password: str
) -> dict[str, str]:
    """The env of pgpool2_on_k8s's pgpool-deploy-minimal.yaml, unchanged but for the backends'
    hosts and ports (and the credentials, from its Secret there)."""
    return {
        "PGPOOL_PARAMS_BACKEND_HOSTNAME0": primary[0],
        "PGPOOL_PARAMS_BACKEND_PORT0": str(primary[1]),
        "PGPOOL_PARAMS_BACKEND_WEIGHT0": "1",
        "PGPOOL_PARAMS_BACKEND_FLAG0": "ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER",
        "PGPOOL_PARAMS_BACKEND_HOSTNAME1": replica[0],
        "PGPOOL_PARAMS_BACKEND_PORT1": str(replica[1]),
        "PGPOOL_PARAMS_BACKEND_WEIGHT1": "1",
        "PGPOOL_PARAMS_BACKEND_FLAG1": "DISALLOW_TO_FAILOVER",
        "PGPOOL_PARAMS_FAILOVER_ON_BACKEND_ERROR": "off",
        "PGPOOL_PARAMS_ENABLE_POOL_HBA": "on",
        "PGPOOL_PARAMS_SSL": "on",
        "POSTGRES_USERNAME": user,
        "POSTGRES_PASSWORD": password,
        "PGPOOL_PASSWORD_ENCRYPTION_METHOD": "scram-sha-256",
        "PGPOOL_ENABLE_POOL_PASSWD": "true",
        "PGPOOL_SKIP_PASSWORD_ENCRYPTION": "false",
    }


def write_secret(
    root: Path, name: str, user: str, password: str, *, user_key: str = "username"
) -> None:
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    (d / user_key).write_text(user, encoding="utf-8")
    (d / "password").write_text(password, encoding="utf-8")


def render_cli(
    pool: Pgpool,
    cluster: PgCluster | None,
    *,
    secrets: Path,
    extra: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the installed `pgpoolsync render` console script for this pgpool and cluster (no
    cluster: no backend flags, the env says where the backends are)."""
    full_env = {"PATH": os.environ.get("PATH", ""), **pool.params(), **(env or {})}
    argv = [
        pgpoolsync_exe(),
        "render",
        "--config-dir",
        str(pool.config_dir),
        "--secrets-dir",
        str(secrets),
        "--pool-key-file",
        str(pool.key_file),
        *(cluster.backend_args() if cluster else ()),
        *extra,
    ]
    return subprocess.run(argv, env=full_env, capture_output=True, text=True, check=False)


class RunProcess:
    """`pgpoolsync run` as a subprocess, with its metrics endpoint on a free port."""

    def __init__(
        self,
        pool: Pgpool,
        cluster: PgCluster | None,
        *,
        args: Sequence[str],
        env: Mapping[str, str] | None = None,
        log: Path,
    ) -> None:
        from devcluster import free_port

        self.metrics_port = free_port()
        self.log = log
        backends: list[str] = []
        if cluster is not None:
            backends = [
                *cluster.backend_args(),
            ]
        self.argv = [
            pgpoolsync_exe(),
            "--log-level",
            "DEBUG",
            "run",
            "--config-dir",
            str(pool.config_dir),
            "--pool-key-file",
            str(pool.key_file),
            "--listen",
            f"127.0.0.1:{self.metrics_port}",
            *backends,
            *args,
        ]
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            **pool.params(),
            "PGPOOL_PCP_USER": "pcpadmin",
            "PGPOOL_PCP_PASSWORD": "pcp:secret",
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RunProcess:
        with self.log.open("ab") as logf:
            self.proc = subprocess.Popen(
                self.argv, env=self.env, stdout=logf, stderr=subprocess.STDOUT
            )
        self.wait_http("/readyz")
        return self

    def wait_first_reload(self) -> None:
        wait_until(
            lambda: self.metric("pgpoolsync_reloads_total", 'result="success"') >= 1,
            what="first reload",
        )

    def get(self, path: str) -> tuple[int, str]:
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.metrics_port}{path}", timeout=5
            ) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def wait_http(self, path: str, *, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"pgpoolsync run exited {self.proc.returncode}:\n" + self.log_text()[-3000:]
                )
            try:
                if self.get(path)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"{path} not ok after {timeout}s:\n" + self.log_text()[-3000:])

    def metric(self, name: str, labels: str = "") -> float:
        """The value of one sample, 0 when absent."""
        _, text = self.get("/metrics")
        want = f"{name}{{{labels}}}" if labels else name
        for line in text.splitlines():
            if line.startswith(want + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def kubelet_write(root: Path, name: str, data: Mapping[str, str | bytes], *, stamp: str) -> None:
    """Update a Secret directory the way kubelet does: new ..<ts> dir, atomic ..data swap."""
    sub = root / name
    sub.mkdir(parents=True, exist_ok=True)
    ts = sub / f"..{stamp}"
    ts.mkdir()
    for key, value in data.items():
        (ts / key).write_bytes(value if isinstance(value, bytes) else value.encode())
    old = (sub / "..data").resolve() if (sub / "..data").is_symlink() else None
    tmp = sub / "..data_tmp"
    tmp.symlink_to(ts.name)
    os.replace(tmp, sub / "..data")
    for key in data:
        if not (sub / key).is_symlink():
            (sub / key).symlink_to(f"..data/{key}")
    if old is not None and old.is_dir():
        shutil.rmtree(old)


def wait_until(check: Callable[[], T], *, timeout: float = 20.0, what: str = "condition") -> T:
    """Polls ``check`` until it returns something true, and returns that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
