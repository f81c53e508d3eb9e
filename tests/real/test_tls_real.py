"""TLS end to end: a TLS-only PostgreSQL primary + replica (hostssl only, certificates made here),
pgpool on files rendered with TLS, clients with sslmode=require, and certificate rotation."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import ssl
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from devcluster import PgCluster, Pgpool, can_login
from devcluster.kubeapi import KubeApiDouble
from devcluster.kubeobjects import secret
from devcluster.ports import wait_until
from devcluster.runprocess import RunProcess
from pgpoolsync.core import tls
from tests.pgpool_helpers import render_cli, write_secret

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def tls_cluster(pg_base: Path) -> Iterator[PgCluster]:
    server = tls.generate_self_signed(["localhost", "127.0.0.1"])
    c = PgCluster(pg_base / "pg-tls", tls=(server.cert_pem, server.key_pem))
    try:
        c.start()
        c.set_role("tls_user", "tls:pw", encryption="scram-sha-256")
        yield c
    finally:
        c.stop()


def _pool(pg_base: Path, name: str, cluster: PgCluster, extra: list[str]) -> Pgpool:
    base = pg_base / name
    write_secret(base / "secrets", "u", "tls_user", "tls:pw")
    pool = Pgpool(base, base / "config", key_file=base / "config" / ".pgpoolkey")
    result = render_cli(pool, cluster, secrets=base / "secrets", extra=extra)
    assert result.returncode == 0, result.stderr
    return pool


def served_cert_sha256(port: int) -> str:
    """The certificate pgpool presents: PostgreSQL SSLRequest, then a TLS handshake."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        raw.sendall(struct.pack("!II", 8, 80877103))
        assert raw.recv(1) == b"S"
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with ctx.wrap_socket(raw) as tls_sock:
            der = tls_sock.getpeercert(binary_form=True)
    assert der is not None
    return hashlib.sha256(der).hexdigest()


def pem_sha256(pem: bytes) -> str:
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem.decode())).hexdigest()


def test_sslmode_require_logs_in_and_backend_connections_are_tls(
    tls_cluster: PgCluster, pg_base: Path
) -> None:
    pool = _pool(pg_base, "tls-on", tls_cluster, ["--tls", "auto", "--tls-required"])
    conf = (pool.config_dir / "pgpool.conf").read_text()
    assert "ssl = 'on'" in conf and "ssl_cert = " in conf
    assert "hostssl" in (pool.config_dir / "pool_hba.conf").read_text()
    pool.start()
    try:
        with pool.connect("tls_user", "tls:pw", sslmode="require") as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("tls_user",)
            assert conn.pgconn.ssl_in_use
            conn.execute("CREATE TEMP TABLE t (x int)")  # a session on the primary
            with tls_cluster.connect() as admin:
                rows = admin.execute(
                    "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) "
                    "WHERE a.usename = 'tls_user'"
                ).fetchall()
            assert rows and all(r[0] is True for r in rows)
        # --tls-required: a client that refuses TLS is turned away by pool_hba.conf
        with pytest.raises(psycopg.OperationalError):
            pool.connect("tls_user", "tls:pw", sslmode="disable").close()
    finally:
        pool.stop()


def test_with_tls_off_the_login_fails_at_the_tls_only_backend(
    tls_cluster: PgCluster, pg_base: Path
) -> None:
    pool = _pool(pg_base, "tls-off", tls_cluster, ["--tls", "off"])
    assert "ssl = 'off'" in (pool.config_dir / "pgpool.conf").read_text()
    pool.start()
    try:
        with pytest.raises(psycopg.OperationalError):
            pool.connect("tls_user", "tls:pw").close()
    finally:
        pool.stop()
    assert "backend authentication failed" in pool.log_tail(200)
    primary_log = (tls_cluster.base / "primary.log").read_text(errors="replace")
    assert 'user "tls_user", database "postgres", no encryption' in primary_log


def _run_on_tls_dir(
    base: Path, cluster: PgCluster, pair: tls.TlsMaterial
) -> tuple[Pgpool, RunProcess, Path]:
    """`pgpoolsync run --tls secret --tls-dir` started on ``pair``; pgpool not started."""
    tls_dir = base / "tls"
    tls_dir.mkdir(parents=True)
    (tls_dir / "tls.crt").write_bytes(pair.cert_pem)
    (tls_dir / "tls.key").write_bytes(pair.key_pem)
    write_secret(base / "secrets", "u", "tls_user", "tls:pw")
    pool = Pgpool(base, base / "config", key_file=base / "config" / ".pgpoolkey")
    run = RunProcess(
        pool,
        cluster,
        log=base / "run.log",
        args=["--secrets-dir", str(base / "secrets"), "--tls", "secret", "--tls-dir", str(tls_dir)],
    )
    run.start()
    return pool, run, tls_dir


def test_a_rotated_certificate_in_a_directory_is_restart_required_then_served(
    tls_cluster: PgCluster, pg_base: Path
) -> None:
    first = tls.generate_self_signed(["localhost"])
    pool, run, tls_dir = _run_on_tls_dir(pg_base / "tls-dir-rotation", tls_cluster, first)
    pool.start()
    try:
        assert served_cert_sha256(pool.port) == pem_sha256(first.cert_pem)
        assert can_login(pool, "tls_user", "tls:pw")
        assert run.metric("pgpoolsync_tls_cert_expiry_timestamp_seconds") == pytest.approx(
            first.not_after
        )
        second = tls.generate_self_signed(["localhost"])
        (tls_dir / "tls.key.new").write_bytes(second.key_pem)
        (tls_dir / "tls.crt.new").write_bytes(second.cert_pem)
        os.replace(tls_dir / "tls.key.new", tls_dir / "tls.key")
        os.replace(tls_dir / "tls.crt.new", tls_dir / "tls.crt")
        wait_until(lambda: run.metric("pgpoolsync_restart_required") == 1, what="restart required")
        assert "ssl certificate" in run.log_text()
        assert served_cert_sha256(pool.port) == pem_sha256(first.cert_pem)  # not yet
        pool.stop()
        pool.start()
        assert served_cert_sha256(pool.port) == pem_sha256(second.cert_pem)
    finally:
        run.stop()
        pool.stop()


def test_a_bad_certificate_is_refused_and_the_last_good_files_stay(
    tls_cluster: PgCluster, pg_base: Path
) -> None:
    good = tls.generate_self_signed(["localhost"])
    other = tls.generate_self_signed(["localhost"])
    pool, run, tls_dir = _run_on_tls_dir(pg_base / "tls-bad", tls_cluster, good)
    try:
        before = (pool.config_dir / "tls.crt").read_bytes()
        (tls_dir / "tls.key").write_bytes(other.key_pem)  # does not match tls.crt
        wait_until(lambda: "tls.key does not match" in run.log_text(), what="mismatch error")
        assert (pool.config_dir / "tls.crt").read_bytes() == before
        (tls_dir / "tls.crt").write_bytes(b"-----BEGIN CERTIFICATE-----\nnope\n")
        wait_until(lambda: "tls.crt is not a PEM certificate" in run.log_text(), what="malformed")
        assert (pool.config_dir / "tls.crt").read_bytes() == before
    finally:
        run.stop()


def _tls_api() -> tuple[KubeApiDouble, tls.TlsMaterial]:
    """The API double with a certificate Secret `pgpool-tls` (returned) and one user's Secret."""
    api = KubeApiDouble().start()
    first = tls.generate_self_signed(["localhost"])
    api.put(
        "secrets",
        secret(
            "pgpool-tls", {"tls.crt": first.cert_pem.decode(), "tls.key": first.key_pem.decode()}
        ),
    )
    api.put(
        "secrets", secret("u", {"username": "tls_user", "password": "tls:pw"}, labels={"app": "db"})
    )
    return api, first


def test_a_rotated_certificate_in_a_kube_secret_is_restart_required(
    tls_cluster: PgCluster, pg_base: Path
) -> None:
    base = pg_base / "tls-kube"
    base.mkdir()
    api, first = _tls_api()
    pool = Pgpool(base, base / "config", key_file=base / "config" / ".pgpoolkey")
    run = RunProcess(
        pool,
        tls_cluster,
        log=base / "run.log",
        args=[
            "--kubeconfig",
            str(api.write_kubeconfig(base / "kc")),
            "--namespace",
            "default",
            "--secret-selector",
            "app=db",
            "--tls",
            "secret",
            "--tls-secret",
            "pgpool-tls",
        ],
    )
    run.start()
    pool.start()
    try:
        assert served_cert_sha256(pool.port) == pem_sha256(first.cert_pem)
        second = tls.generate_self_signed(["localhost"])
        api.put(
            "secrets",
            secret(
                "pgpool-tls",
                {"tls.crt": second.cert_pem.decode(), "tls.key": second.key_pem.decode()},
            ),
        )
        wait_until(lambda: run.metric("pgpoolsync_restart_required") == 1, what="restart required")
        pool.stop()
        pool.start()
        assert served_cert_sha256(pool.port) == pem_sha256(second.cert_pem)
        assert can_login(pool, "tls_user", "tls:pw")
    finally:
        run.stop()
        pool.stop()
        api.stop()


def _served_serial(port: int) -> str:
    """The serial of the certificate pgpool serves, as `openssl s_client -starttls postgres`."""
    import subprocess

    shown = subprocess.run(
        ["openssl", "s_client", "-starttls", "postgres", "-connect", f"127.0.0.1:{port}"],
        input=b"",
        capture_output=True,
        timeout=20,
        check=False,
    ).stdout
    out = subprocess.run(
        ["openssl", "x509", "-noout", "-serial"],
        input=shown,
        capture_output=True,
        timeout=20,
        check=True,
    )
    return out.stdout.decode().strip()


def _serial(pem: bytes) -> str:
    import subprocess

    out = subprocess.run(
        ["openssl", "x509", "-noout", "-serial"], input=pem, capture_output=True, check=True
    )
    return out.stdout.decode().strip()


def test_a_renewed_certificate_rolls_the_deployment_once_and_the_new_pod_serves_it(
    tls_cluster: PgCluster, pg_base: Path
) -> None:
    """--restart-policy rollout with --tls-secret: cert-manager renews the Secret → the old
    pod's sidecar patches the Deployment once (restart hash on the pod template); the new pod
    (made here as the Deployment controller would: a ReplicaSet and a pod from the patched
    template, its own sidecar and pgpool) serves the new certificate and asks for nothing."""
    from devcluster.kubeobjects import deployment, pod, replica_set
    from pgpoolsync.core import rollout
    from pgpoolsync.restart.rollout import annotation

    base = pg_base / "tls-rollout"
    base.mkdir()
    api, first = _tls_api()
    api.put("deployments", deployment("pgpool"))
    api.put("replicasets", replica_set("pgpool-old", "pgpool"))
    api.put("pods", pod("pgpool-old-a", "pgpool-old"))
    kubeconfig = str(api.write_kubeconfig(base / "kc"))
    seed = base / "pgpool-key"
    seed.write_text("a-key-every-pod-shares\n")  # the pgpool-key Secret, mounted in each pod
    seed.chmod(0o600)

    def pod_of(name: str, pod_name: str) -> tuple[Pgpool, RunProcess]:
        d = base / name
        d.mkdir()
        pool = Pgpool(d, d / "config", key_file=d / "config" / ".pgpoolkey")
        run = RunProcess(
            pool,
            tls_cluster,
            log=d / "run.log",
            env={"POD_NAME": pod_name, "PGPOOLSYNC_POOL_KEY_SEED_FILE": str(seed)},
            args=[
                "--kubeconfig",
                kubeconfig,
                "--namespace",
                "default",
                "--secret-selector",
                "app=db",
                "--tls",
                "secret",
                "--tls-secret",
                "pgpool-tls",
                "--restart-policy",
                "rollout",
                "--min-rollout-interval",
                "3600",
            ],
        )
        return pool, run

    old_pool, old_run = pod_of("old", "pgpool-old-a")
    new_pool = new_run = None
    old_run.start()
    old_pool.start()
    try:
        old_run.wait_first_reload()
        assert _served_serial(old_pool.port) == _serial(first.cert_pem)
        second = tls.generate_self_signed(["localhost"])
        api.put(
            "secrets",
            secret(
                "pgpool-tls",
                {"tls.crt": second.cert_pem.decode(), "tls.key": second.key_pem.decode()},
            ),
        )
        wait_until(
            lambda: old_run.metric("pgpoolsync_rollouts_requested_total") == 1,
            what="a rollout requested",
        )
        [(kind, name, body)] = api.store.patches
        assert (kind, name) == ("deployments", "pgpool")
        dep = api.store.objects[("deployments", "default")]["pgpool"]
        wanted = annotation(dep, "spec", "template", key=rollout.HASH_ANNOTATION)
        assert wanted == annotation(body, "spec", "template", key=rollout.HASH_ANNOTATION)
        assert wanted is not None and f"restart hash {wanted}" in old_run.log_text()
        assert old_run.metric("pgpoolsync_rollout_pending") == 1
        assert old_run.metric("pgpoolsync_restart_required") == 1
        # The old pod keeps serving (the old certificate) until it is replaced, asking no more.
        assert can_login(old_pool, "tls_user", "tls:pw")
        time.sleep(6)  # more than one recheck pass of the old sidecar
        assert len(api.store.patches) == 1

        # The Deployment controller: a new ReplicaSet, a pod from the patched template.
        api.put("replicasets", replica_set("pgpool-new", "pgpool"))
        api.put(
            "pods", pod("pgpool-new-b", "pgpool-new", annotations={rollout.HASH_ANNOTATION: wanted})
        )
        new_pool, new_run = pod_of("new", "pgpool-new-b")
        new_run.start()
        new_pool.start()
        new_run.wait_first_reload()
        assert _served_serial(new_pool.port) == _serial(second.cert_pem) != _serial(first.cert_pem)
        assert can_login(new_pool, "tls_user", "tls:pw")
        wait_until(lambda: "pgpoolsync_restart_required 0.0" in new_run.get("/metrics")[1])
        old_run.stop()  # the old pod is deleted: SIGTERM to each container
        if old_pool.proc is not None:
            old_pool.proc.send_signal(signal.SIGTERM)
        time.sleep(3)
        assert new_run.metric("pgpoolsync_rollouts_requested_total") == 0
        assert len(api.store.patches) == 1
        # Every call both sidecars made is one the Role in manifests/base allows.
        from tests.unit.test_rollout import _role_allows

        for call in set(api.store.calls):
            assert _role_allows(*call), call
    finally:
        for r in (old_run, new_run):
            if r is not None:
                r.stop()
        for p in (old_pool, new_pool):
            if p is not None:
                p.stop()
        api.stop()
