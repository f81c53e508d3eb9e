"""What `run --kube` says and does when the API server refuses it: an API it does not serve
(Kubernetes older than 1.21), credentials refused (401), a verb missing from the Role (403);
and `run --once` without a PCP user. Against the API double, which answers those as the real
server does (tests/kube/test_kube_real.py holds the same against kube-apiserver)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from devcluster import pgpoolsync_exe
from devcluster.kubeapi import KubeApiDouble
from devcluster.kubeobjects import endpoint_slice, secret, service
from devcluster.ports import wait_until
from pgpoolsync.cli import main

PCP_ENV = {"PGPOOL_PCP_USER": "pcpadmin", "PGPOOL_PCP_PASSWORD": "pcp-secret"}


@pytest.fixture
def api() -> Iterator[KubeApiDouble]:
    double = KubeApiDouble(bookmark_interval=0.3, token="sa-token-good").start()
    double.put("services", service("db-primary", port=5432, cluster_ip="127.0.0.1"))
    double.put("services", service("db-replicas", port=5433, cluster_ip="127.0.0.1"))
    double.put(
        "endpointslices", endpoint_slice("db-replicas-a", "db-replicas", [("10.0.0.2", True)])
    )
    double.put("endpointslices", endpoint_slice("db-primary-a", "db-primary", [("10.0.0.1", True)]))
    double.put("secrets", secret("app", {"username": "app", "password": "app-pw-1"}))
    yield double
    double.stop()


def _argv(kubeconfig: Path, config_dir: Path, port: int | None = None) -> list[str]:
    return [
        pgpoolsync_exe(),
        "run",
        "--kube",
        "--kubeconfig",
        str(kubeconfig),
        "--namespace",
        "default",
        "--primary-service",
        "db-primary",
        "--replica-service",
        "db-replicas",
        "--service-address",
        "cluster-ip",
        "--secret-names",
        "app",
        "--watch-timeout-seconds",
        "5",
        "--config-dir",
        str(config_dir),
        "--tls",
        "off",
        *(["--listen", f"127.0.0.1:{port}"] if port else []),
    ]


def _files(config_dir: Path) -> dict[str, tuple[bytes, int]]:
    return {
        p.name: (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(config_dir.iterdir())
        if p.is_file()
    }


class _Run:
    def __init__(self, argv: list[str], log: Path, port: int) -> None:
        env = {"PATH": os.environ.get("PATH", ""), **PCP_ENV}
        with log.open("wb") as out:
            self.proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.log, self.port = log, port

    def status(self, path: str) -> int:
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return int(r.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except OSError:
            return 0

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=15)


def test_a_server_without_endpoint_slices_exits_2_with_one_line_naming_kubernetes_1_21(
    api: KubeApiDouble, tmp_path: Path
) -> None:
    api.unserved_groups.add("discovery.k8s.io")
    kc = api.write_kubeconfig(tmp_path / "kc")
    env = {"PATH": os.environ.get("PATH", ""), **PCP_ENV}
    done = subprocess.run(
        _argv(kc, tmp_path / "conf"),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = [ln for ln in done.stderr.splitlines() if "1.21" in ln]
    assert lines == [
        "pgpoolsync: --kube: the API server does not serve discovery.k8s.io/v1 endpointslices "
        "(404 on list in namespace default): pgpoolsync needs Kubernetes 1.21 or newer"
    ], done.stderr
    assert not (tmp_path / "conf" / "pool_passwd").exists()


def test_a_verb_missing_from_the_role_is_named_once_the_last_good_files_stay_and_it_is_unready(
    api: KubeApiDouble, tmp_path: Path
) -> None:
    from devcluster import free_port

    conf = tmp_path / "conf"
    kc = api.write_kubeconfig(tmp_path / "kc")
    # The last good files, from a run the Role allowed.
    subprocess.run([*_argv(kc, conf), "--once"], env={**PCP_ENV}, timeout=60, check=True)
    before = _files(conf)
    assert b"app:AES" in before["pool_passwd"][0]
    # The Role loses list/watch on Services; the Secret changes meanwhile.
    api.forbidden |= {("list", "services"), ("watch", "services")}
    api.put("secrets", secret("app", {"username": "app", "password": "app-pw-2"}))
    port = free_port()
    run = _Run(_argv(kc, conf, port), tmp_path / "run.log", port)
    try:
        wait_until(lambda: run.status("/healthz") == 200, what="serving", timeout=60)
        wait_until(lambda: ("list", "", "services", None) in api.store.calls[-20:], what="retry")
        assert run.status("/readyz") == 503
        assert _files(conf) == before
        log = run.log.read_text()
        named = [ln for ln in log.splitlines() if "refused" in ln]
        assert len(named) == 1, log
        assert "refused to list services in namespace default (403 Forbidden" in named[0]
        # Allowed again: the watch lists, the files follow the Secret, ready.
        api.forbidden.clear()
        wait_until(lambda: run.status("/readyz") == 200, what="ready again", timeout=30)
        assert _files(conf)["pool_passwd"][0] != before["pool_passwd"][0]
        assert "app-pw-2" not in run.log.read_text()
    finally:
        run.stop()


def test_refused_credentials_are_named_with_the_verb_and_nothing_is_written(
    api: KubeApiDouble, tmp_path: Path
) -> None:
    from devcluster import free_port

    kc = api.write_kubeconfig(tmp_path / "kc")
    kc.write_text(kc.read_text().replace("sa-token-good", "sa-token-expired"))
    port = free_port()
    run = _Run(_argv(kc, tmp_path / "conf", port), tmp_path / "run.log", port)
    try:
        wait_until(lambda: run.status("/healthz") == 200, what="serving", timeout=60)
        assert run.status("/readyz") == 503
        log = run.log.read_text()
        assert "refused to list secrets in namespace default (401 Unauthorized" in log
        assert "sa-token-expired" not in log
        assert not (tmp_path / "conf" / "pool_passwd").exists()
    finally:
        run.stop()


def test_run_once_without_a_pcp_user_writes_the_files_and_only_warns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secrets = tmp_path / "s" / "alice"
    secrets.mkdir(parents=True)
    (secrets / "username").write_text("alice")
    (secrets / "password").write_text("pw")
    argv = ["run", "--once", "--config-dir", str(tmp_path / "c"), "--secrets-dir"]
    rc = main([*argv, str(tmp_path / "s"), "--primary-host", "db", "--tls", "off"], {})
    assert rc == 0
    assert (tmp_path / "c" / "pool_passwd").read_text().startswith("alice:AES")
    assert "run --once without a PCP user" in capsys.readouterr().err
