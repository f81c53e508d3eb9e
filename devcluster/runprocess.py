"""``pgpoolsync run`` as a subprocess next to a devcluster pgpool: its argv and env, its
/readyz, /metrics samples and log, and a clean stop."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from devcluster.binaries import pgpoolsync_exe
from devcluster.pgpool import Pgpool
from devcluster.ports import free_port, wait_until
from devcluster.postgres import PgCluster


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
