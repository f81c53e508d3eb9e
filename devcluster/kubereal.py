"""The real Kubernetes of `.ci/kube` as the `kube` tests use it: the cluster (an existing one from
``PGPOOLSYNC_KUBE_DIR``, else started for the session and stopped after), kubectl with the admin
kubeconfig, a kubeconfig holding a ServiceAccount's token, and a Service address on loopback.

A Service's clusterIP is made reachable from this host as kube-proxy would make it reachable from
a pod: the address is added to ``lo`` and a forwarder listens there (devcluster/forwarder.py).
Nothing is left behind: ``ServiceVip.close`` removes the address.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devcluster.forwarder import Forwarder
from devcluster.pgpool import Pgpool
from devcluster.runprocess import RunProcess

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class KubeCluster:
    dir: Path
    kubeconfig: Path
    etcd_url: str
    version: str

    def kubectl(
        self,
        *args: str,
        stdin: str | None = None,
        check: bool = True,
        kubeconfig: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["kubectl", "--kubeconfig", str(kubeconfig or self.kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
        return done

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", "-o", "json", *args).stdout)

    def apply(self, obj: dict[str, Any], namespace: str) -> None:
        self.kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(obj))

    def namespace(self, name: str, *, restricted: bool = True) -> str:
        labels = (
            {
                f"pod-security.kubernetes.io/{mode}": "restricted"
                for mode in ("enforce", "warn", "audit")
            }
            if restricted
            else {}
        )
        obj = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": labels},
        }
        self.kubectl("apply", "-f", "-", stdin=json.dumps(obj))
        return name

    def server(self) -> str:
        for line in self.kubeconfig.read_text().splitlines():
            if line.strip().startswith("server:"):
                return line.split(":", 1)[1].strip()
        raise AssertionError("no server in the admin kubeconfig")

    def token_kubeconfig(self, path: Path, *, namespace: str, service_account: str) -> Path:
        """A kubeconfig with a fresh token of the ServiceAccount (TokenRequest), mode 0600."""
        token = self.kubectl(
            "create", "token", service_account, "-n", namespace, "--duration", "2h"
        ).stdout.strip()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "sa",
            "clusters": [
                {
                    "name": "kube",
                    "cluster": {
                        "server": self.server(),
                        "certificate-authority": str(self.dir / "pki" / "ca.crt"),
                    },
                }
            ],
            "users": [{"name": "sa", "user": {"token": token}}],
            "contexts": [
                {"name": "sa", "context": {"cluster": "kube", "user": "sa", "namespace": namespace}}
            ],
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(config))
        return path

    def sidecar(
        self,
        base: Path,
        *,
        namespace: str,
        args: Sequence[str],
        pod: str | None = None,
        service_account: str = "pgpool",
    ) -> tuple[Pgpool, RunProcess]:
        """A pgpool in ``base`` and ``pgpoolsync run --kube`` beside it as the manifests run it:
        with a token of the ServiceAccount (not admin). Neither is started."""
        kc = self.token_kubeconfig(
            base / "kubeconfig", namespace=namespace, service_account=service_account
        )
        pool = Pgpool(base, base / "config", key_file=base / "config" / ".pgpoolkey")
        run = RunProcess(
            pool,
            None,
            log=base / "run.log",
            env={"POD_NAME": pod} if pod else None,
            args=["--kubeconfig", str(kc), "--namespace", namespace, *args],
        )
        return pool, run

    def metrics(self) -> str:
        return self.kubectl("get", "--raw", "/metrics").stdout

    def restart(self, name: str, *, signal: str = "TERM") -> None:
        """Stop one of the cluster's processes and start it again (`.ci/kube restart`)."""
        kube = str(ROOT / ".ci" / "kube")
        subprocess.run(["bash", kube, "restart", str(self.dir), name, signal], check=True)

    def _etcd(self, path: str, body: dict[str, Any]) -> Any:
        req = urllib.request.Request(  # noqa: S310 - etcd_url is .ci/kube's http://127.0.0.1
            self.etcd_url + path, data=json.dumps(body).encode(), method="POST"
        )
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - the same
            return json.loads(resp.read())

    def compact_etcd(self) -> int:
        """Compact etcd's history up to now: watches from an older resourceVersion get 410."""
        rev = int(self._etcd("/v3/kv/range", {"key": "Lw==", "limit": 1})["header"]["revision"])
        self._etcd("/v3/kv/compaction", {"revision": str(rev), "physical": True})
        return rev


def read_env(directory: Path) -> dict[str, str]:
    """``.ci/kube``'s DIR/env: what `up` started, where (KUBECONFIG, ETCD_URL, NODE_*...)."""
    return dict(
        line.split("=", 1) for line in (directory / "env").read_text().splitlines() if "=" in line
    )


def _read_env(directory: Path) -> KubeCluster:
    env = read_env(directory)
    return KubeCluster(
        dir=directory,
        kubeconfig=Path(env["KUBECONFIG"]),
        etcd_url=env["ETCD_URL"],
        version=env["KUBE_VERSION"],
    )


def cluster_session() -> Iterator[KubeCluster]:
    """The cluster named by PGPOOLSYNC_KUBE_DIR (left running), else one of this session's."""
    given = os.environ.get("PGPOOLSYNC_KUBE_DIR")
    if given:
        yield _read_env(Path(given))
        return
    directory = Path(tempfile.mkdtemp(prefix="pgpoolsync-kube-"))
    try:
        subprocess.run(["bash", str(ROOT / ".ci" / "kube"), "up", str(directory)], check=True)
        yield _read_env(directory)
    finally:
        subprocess.run(["bash", str(ROOT / ".ci" / "kube"), "down", str(directory)], check=False)
        shutil.rmtree(directory, ignore_errors=True)


class ServiceVip:
    """A Service's clusterIP on ``lo`` with a forwarder to a local port (kube-proxy's part)."""

    def __init__(self, address: str, port: int, target_port: int) -> None:
        self.address = address
        subprocess.run(["ip", "addr", "add", f"{address}/32", "dev", "lo"], check=True)
        self.forwarder = Forwarder(target_port, listen=(address, port))

    def close(self) -> None:
        self.forwarder.close()
        subprocess.run(["ip", "addr", "del", f"{self.address}/32", "dev", "lo"], check=False)
