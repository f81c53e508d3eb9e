"""The Pod of manifests/base run for real with podman: pgpoolsync, pgpool and the exporter from the
images .ci/images builds, sharing the config volume, with the manifest's flags, env, users,
mounts and security contexts (tests/podman.py derives the Pod and lists what it swaps), in front
of a real PostgreSQL primary + replica."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devcluster import PgCluster, free_port, wait_port
from devcluster.forwarder import Forwarder
from devcluster.kubeapi import KubeApiDouble
from devcluster.kubeobjects import service
from devcluster.ports import wait_until
from tests.pgpool_helpers import kubelet_write, pgpool2_on_k8s_minimal_env
from tests.podman import (
    CREDENTIALS_MOUNT,
    GATEWAY,
    IMAGES,
    LAG_GATE_ENV,
    LAG_GATE_VOLUME,
    NETWORK,
    PlayedPod,
    create_secrets,
    deployment,
    ensure_network,
    inspect,
    missing_images,
    play,
    playable_pod,
    podman,
    rendered,
)
from tests.real.test_run_kube import pgo_secret
from tests.unit.test_images import pinned_pgpool

pytestmark = pytest.mark.containers

POOL_KEY = "one-key-for-every-pgpool-pod"
PCP_PASSWORD = "pcp-pw"


@pytest.fixture(scope="session")
def images() -> None:
    missing = missing_images()
    assert not missing, f"images not built: {missing}; build them with `bash .ci/images`"


def _port_taken(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Rig:
    cluster: PgCluster
    base: Path
    credentials: Path
    settings: dict[str, str]
    forwarders: list[Forwarder]
    alice_password: str = "alice-pw-1"  # the rotation test changes it

    def serve_backends(self) -> None:
        """The primary and replica Services: forwarders on the pod network's gateway (its bridge
        exists once a pod is attached)."""
        if self.forwarders:
            return
        for node, key in ((self.cluster.primary, "PRIMARY"), (self.cluster.replica, "REPLICA")):
            port = int(self.settings[f"PGPOOLSYNC_{key}_PORT"])
            self.forwarders.append(
                Forwarder(node.port, listen=(self.settings[f"PGPOOLSYNC_{key}_HOST"], port))
            )

    def close(self) -> None:
        for f in self.forwarders:
            f.close()
        self.forwarders.clear()


@pytest.fixture(scope="module")
def rig(images: None, cluster: PgCluster, pg_base: Path) -> Iterator[Rig]:
    base = pg_base / "pod"
    base.mkdir()
    credentials = base / "credentials"
    credentials.mkdir()
    credentials.chmod(0o755)
    cluster.set_role("pod_alice", "alice-pw-1", encryption="scram-sha-256")
    cluster.set_role("pod_exporter", "exporter-pw", encryption="scram-sha-256")
    kubelet_write(
        credentials, "alice", {"username": "pod_alice", "password": "alice-pw-1"}, stamp="1"
    )
    kubelet_write(
        credentials, "exporter", {"username": "pod_exporter", "password": "exporter-pw"}, stamp="1"
    )
    # `podman kube play` of a Secret creates podman's default kube network: ours to remove
    kube_net = "podman-default-kube-network"
    had_kube_net = podman("network", "exists", kube_net, check=False).returncode == 0
    gateway = ensure_network()
    settings = {
        "PGPOOLSYNC_SECRETS_DIR": CREDENTIALS_MOUNT,
        "PGPOOLSYNC_PRIMARY_HOST": gateway,
        "PGPOOLSYNC_PRIMARY_PORT": str(free_port()),
        "PGPOOLSYNC_REPLICA_HOST": gateway,
        "PGPOOLSYNC_REPLICA_PORT": str(free_port()),
    }
    r = Rig(cluster, base, credentials, settings, [])
    yield r
    r.close()
    podman("network", "rm", "--force", NETWORK, check=False)
    if not had_kube_net:
        podman("network", "rm", kube_net, check=False)


def _secrets(rig: Rig, *, pool_key: dict[str, str] | None = None) -> list[str]:
    volume = {"pgpool-pcp": {"password": PCP_PASSWORD}}
    if pool_key is not None:
        volume["pgpool-key"] = pool_key
    return create_secrets(
        volume,
        {"pgpool-exporter": {"username": "pod_exporter", "password": "exporter-pw"}},
        workdir=rig.base,
    )


def pod_ip(pod: PlayedPod) -> str:
    info = inspect(pod.container("pgpool"))
    infra = podman("pod", "inspect", "--format", "{{.InfraContainerID}}", pod.name).stdout.strip()
    networks = inspect(infra)["NetworkSettings"]["Networks"]
    assert info["State"]["Running"], info["State"]
    return str(networks[NETWORK]["IPAddress"])


@pytest.fixture(scope="module")
def pod(rig: Rig) -> Iterator[PlayedPod]:
    taken = [p for p in (9999, 9719, 9720) if _port_taken(p)]
    assert not taken, f"podman 4.3 publishes the pod's containerPorts on the host: {taken} in use"
    secrets = _secrets(rig, pool_key={"pgpoolkey": POOL_KEY})
    playable = playable_pod(
        deployment(rendered()), name="pgpool-ci", settings=rig.settings, credentials=rig.credentials
    )
    played = play(playable, secrets=secrets, workdir=rig.base)
    try:
        assert played.result.returncode == 0, played.result.stderr[-3000:]
        rig.serve_backends()
        ip = pod_ip(played)
        wait_port(9999, host=ip, timeout=60)  # pgpool listening in the pod
        yield played
    finally:
        played.remove()


def _login(host: str, user: str, password: str) -> tuple[str, str]:
    with psycopg.connect(
        host=host, port=9999, user=user, password=password, dbname="postgres", connect_timeout=5
    ) as conn:
        row = conn.execute("SELECT current_user, current_setting('server_version')").fetchone()
        assert row is not None
        return str(row[0]), str(row[1])


def _can_login(host: str, user: str, password: str) -> bool:
    try:
        return _login(host, user, password)[0] == user
    except psycopg.OperationalError:
        return False


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def test_the_pod_swaps_only_what_podman_4_3_lacks() -> None:
    dep = deployment(rendered())
    playable = playable_pod(dep, name="p", settings={}, credentials=Path("/x"))
    template = dep["spec"]["template"]["spec"]
    [sidecar] = template["initContainers"]
    spec = playable.pod["spec"]
    run, pgpool, exporter = spec["containers"]
    [init] = spec["initContainers"]
    assert [c["name"] for c in spec["containers"]] == [
        "pgpoolsync",
        *(c["name"] for c in template["containers"]),
    ]
    assert (run["args"], init["args"]) == (["run"], ["run", "--once"])
    for c in (run, init):
        assert c["image"] == sidecar["image"] and c["securityContext"] == sidecar["securityContext"]
        assert c["envFrom"] == sidecar["envFrom"]
        changed = {e["name"] for e in c["env"]} ^ {e["name"] for e in sidecar["env"]}
        assert changed == LAG_GATE_ENV  # the same variables but the gate's; two differ
        differ = [e["name"] for e in c["env"] if e not in sidecar["env"]]
        assert differ == ["PGPOOLSYNC_NAMESPACE", "PGPOOLSYNC_RESTART_POLICY"]
        mounts = [m["mountPath"] for m in c["volumeMounts"]]
        kept = [m for m in sidecar["volumeMounts"] if m["name"] != LAG_GATE_VOLUME]
        assert mounts == [*(m["mountPath"] for m in kept), CREDENTIALS_MOUNT]
    for ours, theirs in zip((pgpool, exporter), template["containers"], strict=True):
        assert {k: v for k, v in ours.items() if k not in ("imagePullPolicy", "volumeMounts")} == {
            k: v for k, v in theirs.items() if k != "volumeMounts"
        }
    assert spec["securityContext"] == template["securityContext"]
    volumes = [v for v in template["volumes"] if v["name"] != LAG_GATE_VOLUME]
    assert [v["name"] for v in spec["volumes"]] == [
        *(f"p-{v['name']}" for v in volumes),
        "p-credentials",
    ]
    assert [{**v, "name": v["name"][2:]} for v in spec["volumes"][:-1]] == volumes
    assert {k for k in spec if spec[k] != template.get(k)} == {
        "initContainers",
        "containers",
        "volumes",
        "restartPolicy",
    }


IMAGE_USER = "10001:10001"


def test_every_image_runs_as_the_numeric_non_root_user_of_the_manifest(images: None) -> None:
    pod = deployment(rendered())["spec"]["template"]["spec"]["securityContext"]
    assert f"{pod['runAsUser']}:{pod['runAsGroup']}" == IMAGE_USER
    for image in IMAGES:
        user = podman("image", "inspect", "--format", "{{.Config.User}}", image).stdout.strip()
        assert user == IMAGE_USER, image


def _locked_down(
    tmp_path: Path, image: str, cmd: Sequence[str], *, opts: Sequence[str] = ()
) -> subprocess.CompletedProcess[str]:
    """Run with a read-only root, no capabilities, no new privileges, and no shell: /bin/sh
    (dash) and bash are masked by an empty file that cannot be executed."""
    empty = tmp_path / "no-shell"
    empty.touch(mode=0o644)
    masks = [f"--volume={empty}:/usr/bin/{sh}:ro" for sh in ("dash", "bash")]
    return podman(
        "run", "--rm", "--pull=never", "--read-only", "--cap-drop=ALL",
        "--security-opt=no-new-privileges", *masks, *opts, image, *cmd,
        check=False,
    )  # fmt: skip


def test_the_entrypoints_run_with_a_read_only_root_no_capabilities_and_no_shell(
    images: None, tmp_path: Path
) -> None:
    shell = _locked_down(
        tmp_path, "localhost/pgpool:latest", ["-c", "true"], opts=["--entrypoint=/bin/sh"]
    )
    assert shell.returncode != 0 and "permission denied" in shell.stderr.lower(), shell  # masked
    helped = _locked_down(tmp_path, "localhost/pgpoolsync:latest", ["--help"])
    assert helped.returncode == 0 and "usage: pgpoolsync" in helped.stdout, helped
    for sub in ("run", "exporter", "render"):
        got = _locked_down(tmp_path, "localhost/pgpoolsync:latest", [sub, "--help"])
        assert got.returncode == 0 and f"usage: pgpoolsync {sub}" in got.stdout, got
    for name in ("pgpool", "pgpool-dropin"):
        # The version under test: the pgpool2 package the image's Dockerfile pins.
        pinned = pinned_pgpool(name)
        image = f"localhost/{name}:latest"
        got = _locked_down(tmp_path, image, ["--version"], opts=["--entrypoint=/usr/sbin/pgpool"])
        assert got.returncode == 0, got
        assert f"pgpool-II version {pinned} " in got.stdout + got.stderr, got


def test_the_image_s_kubernetes_client_renders_from_the_api_double(
    images: None, cluster: PgCluster, tmp_path: Path
) -> None:
    """`run --kube --once` in the image (its own kubernetes client and dependencies, not the
    test venv's) against the API double: Secrets and Services in, files out."""
    api = KubeApiDouble(bookmark_interval=1.0).start()
    try:
        api.put(
            "services", service("hippo-primary", port=cluster.primary.port, cluster_ip="127.0.0.1")
        )
        api.put(
            "services", service("hippo-replicas", port=cluster.replica.port, cluster_ip="127.0.0.1")
        )
        api.put("secrets", pgo_secret("kube_bob", "bob-pw"))
        config = tmp_path / "config"
        config.mkdir()
        os.chown(config, 10001, 10001)
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig", namespace="db")
        kubeconfig.chmod(0o644)
        pcp = tmp_path / "pcp"
        pcp.write_text("pcp-pw")
        pcp.chmod(0o644)
        got = _locked_down(
            tmp_path, "localhost/pgpoolsync:latest",
            ["run", "--kubeconfig", "/kubeconfig", "--once"],
            opts=["--network=host", "--user=10001:10001", f"--volume={config}:/etc/pgpool",
            f"--volume={kubeconfig}:/kubeconfig:ro", f"--volume={pcp}:/pcp:ro",
            "--env=PGPOOL_PCP_USER=pgpoolsync", "--env=PGPOOLSYNC_PCP_PASSWORD_FILE=/pcp",
            "--env=PGPOOLSYNC_CONFIG_DIR=/etc/pgpool", "--env=PGPOOLSYNC_LISTEN=127.0.0.1:0",
            "--env=PGPOOLSYNC_NAMESPACE=default", "--env=PGPOOLSYNC_PRESET=pgo",
            "--env=PGPOOLSYNC_CLUSTER=hippo", "--env=PGPOOLSYNC_SERVICE_ADDRESS=cluster-ip"],
        )  # fmt: skip
    finally:
        api.stop()
    assert got.returncode == 0, got.stdout[-2000:] + got.stderr[-2000:]
    assert "kube_bob:AES" in (config / "pool_passwd").read_text()
    conf = (config / "pgpool.conf").read_text()
    assert f"backend_port0 = '{cluster.primary.port}'" in conf, conf
    assert "Traceback" not in got.stderr


def _config_files(pod: PlayedPod) -> list[str]:
    where = podman(
        "volume", "inspect", "--format", "{{.Mountpoint}}", f"{pod.name}-config"
    ).stdout.strip()
    return sorted(p.name for p in Path(where).iterdir())


def _refused(
    rig: Rig,
    name: str,
    *,
    pool_key: dict[str, str],
    credentials: bool = True,
    config_read_only: bool = False,
) -> str:
    """Play a pod with one bad input; assert that it did not start pgpool and left the config
    volume empty; return what its init container said."""
    secrets = _secrets(rig, pool_key=pool_key)
    playable = playable_pod(
        deployment(rendered()),
        name=name,
        settings=rig.settings,
        credentials=rig.credentials if credentials else None,
    )
    spec = playable.pod["spec"]
    if config_read_only:  # pgpoolsync's mounts of the config volume, init and sidecar
        for c in [*spec["initContainers"], spec["containers"][0]]:
            for m in c["volumeMounts"]:
                if m["mountPath"] == "/etc/pgpool":
                    m["readOnly"] = True
    spec["restartPolicy"] = "Never"  # one attempt (a cluster retries, the same)
    pod = play(playable, secrets=secrets, workdir=rig.base)
    try:
        assert pod.result.returncode != 0, pod.result.stdout
        assert "init container" in pod.result.stderr, pod.result.stderr[-2000:]
        assert pod.state("pgpool")["Status"] == "created", pod.state("pgpool")  # never started
        assert not [f for f in _config_files(pod) if not f.startswith(".")], _config_files(pod)
        return pod.logs("pgpoolsync-init")
    finally:
        pod.remove()


# The bad-input pods come before the good one: each is refused at its init container.


def test_a_pod_without_its_secrets_volume_says_which_and_pgpool_never_starts(rig: Rig) -> None:
    said = _refused(rig, "pgpool-bad-1", pool_key={"pgpoolkey": POOL_KEY}, credentials=False)
    assert f"secrets directory {CREDENTIALS_MOUNT}: No such file or directory" in said, said
    assert "PGPOOLSYNC_SECRETS_DIR" in said and "Traceback" not in said, said


def test_a_read_only_config_volume_is_refused_before_pgpool_starts_on_partial_files(
    rig: Rig,
) -> None:
    said = _refused(rig, "pgpool-bad-2", pool_key={"pgpoolkey": POOL_KEY}, config_read_only=True)
    assert "cannot write in /etc/pgpool: Read-only file system" in said, said
    assert "PGPOOLSYNC_CONFIG_DIR" in said and "Traceback" not in said, said


def test_a_pool_key_secret_without_its_key_is_named_and_pgpool_never_starts(rig: Rig) -> None:
    said = _refused(rig, "pgpool-bad-3", pool_key={"wrong-key": POOL_KEY})
    assert (
        "pool key seed file (--pool-key-seed-file, PGPOOLSYNC_POOL_KEY_SEED_FILE) "
        "/var/run/secrets/pgpool-key/pgpoolkey: No such file or directory"
    ) in said, said


def test_a_missing_pool_key_secret_stops_the_pod_before_any_container_starts(rig: Rig) -> None:
    secrets = _secrets(rig, pool_key=None)
    playable = playable_pod(
        deployment(rendered()),
        name="pgpool-bad-4",
        settings=rig.settings,
        credentials=rig.credentials,
    )
    pod = play(playable, secrets=secrets, workdir=rig.base)
    try:
        assert pod.result.returncode != 0
        assert "pgpool-key" in pod.result.stderr, pod.result.stderr[-2000:]
        got = podman("container", "exists", pod.container("pgpool"), check=False)
        assert got.returncode != 0 or pod.state("pgpool")["Status"] == "created"
    finally:
        pod.remove()


def test_the_pod_serves_a_login_through_pgpool_with_the_exporter_up_and_pgpoolsync_ready(
    pod: PlayedPod, cluster: PgCluster
) -> None:
    ip = pod_ip(pod)
    user, version = _login(ip, "pod_alice", "alice-pw-1")
    assert user == "pod_alice" and version.startswith("15")
    assert not _can_login(ip, "pod_alice", "wrong")
    wait_until(lambda: _get(f"http://{ip}:9720/readyz")[0] == 200, timeout=30, what="/readyz 200")

    def scraped_up() -> str:
        status, body = _get(f"http://{ip}:9719/metrics")
        return body if status == 200 and "\npgpool2_up 1" in body else ""

    metrics = wait_until(scraped_up, timeout=60, what="pgpool2_up 1 on the exporter")
    nodes = [
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("pgpool2_pool_nodes_status{") and f'hostname="{GATEWAY}"' in line
    ]
    assert nodes == [1.0, 1.0], metrics[:3000]  # backends 0 and 1, both up


def test_every_container_runs_as_10001_with_no_capabilities_no_new_privileges_and_a_read_only_root(
    pod: PlayedPod,
) -> None:
    for short in ("pgpoolsync", "pgpool", "exporter"):
        state = pod.state(short)
        assert state["Running"], (short, state)
        status = Path(f"/proc/{state['Pid']}/status").read_text()
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        assert fields["Uid"].split() == ["10001"] * 4, (short, fields["Uid"])
        assert fields["Gid"].split() == ["10001"] * 4, (short, fields["Gid"])
        for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert int(fields[cap], 16) == 0, (short, cap, fields[cap])
        assert fields["NoNewPrivs"].strip() == "1", short
        root = [
            line.split()
            for line in Path(f"/proc/{state['Pid']}/mountinfo").read_text().splitlines()
            if line.split()[4] == "/"
        ]
        assert root and "ro" in root[-1][5].split(","), (short, root)
        # and nothing of the image is writable: only the mounted volumes are
        argv = Path(f"/proc/{state['Pid']}/cmdline").read_bytes().split(b"\0")
        assert b"sh" not in Path(argv[0].decode()).name.encode(), (short, argv)


def test_a_rotated_password_works_at_once_and_the_old_one_is_refused_without_restarting_pgpool(
    pod: PlayedPod, rig: Rig, cluster: PgCluster
) -> None:
    ip = pod_ip(pod)
    before = pod.state("pgpool")
    assert _can_login(ip, "pod_alice", "alice-pw-1")
    cluster.set_role("pod_alice", "alice-pw-2", encryption="scram-sha-256")
    kubelet_write(
        rig.credentials, "alice", {"username": "pod_alice", "password": "alice-pw-2"}, stamp="2"
    )
    rig.alice_password = "alice-pw-2"
    wait_until(lambda: _can_login(ip, "pod_alice", "alice-pw-2"), timeout=30, what="new password")
    assert not _can_login(ip, "pod_alice", "alice-pw-1")
    after = pod.state("pgpool")
    assert (after["Pid"], after["StartedAt"]) == (before["Pid"], before["StartedAt"])
    assert inspect(pod.container("pgpool"))["RestartCount"] == 0
    assert "reload" in pod.logs("pgpoolsync").lower()


def test_sigterm_to_the_pgpool_container_is_a_smart_shutdown_that_lets_an_open_transaction_end(
    pod: PlayedPod, rig: Rig
) -> None:
    """Last: it stops pgpool. kubelet sends SIGTERM after the preStop sleep and SIGKILL when the
    grace period ends; here the session ends well within it."""
    ip = pod_ip(pod)
    conn = psycopg.connect(
        host=ip, port=9999, user="pod_alice", password=rig.alice_password, dbname="postgres"
    )
    conn.execute("CREATE TEMP TABLE t (x int)")
    conn.execute("INSERT INTO t VALUES (1)")  # idle in transaction from here
    podman("kill", "--signal", "TERM", pod.container("pgpool"))
    signalled = time.monotonic()
    time.sleep(2)
    assert pod.state("pgpool")["Running"], "pgpool left with a session open"
    tried = time.monotonic()
    assert not _can_login(ip, "pod_alice", rig.alice_password), "a new session during shutdown"
    refused_in = time.monotonic() - tried
    row = conn.execute("SELECT count(*) FROM t").fetchone()
    conn.commit()
    conn.close()
    ended = time.monotonic()
    assert row == (1,)

    def exited() -> dict[str, Any]:
        state = pod.state("pgpool")
        return state if state["Status"] == "exited" else {}

    state = wait_until(exited, timeout=20, what="pgpool's exit once the session ended")
    assert state["ExitCode"] == 0, state
    print(  # the report: pytest -s shows it
        f"smart shutdown: a new login failed after {refused_in:.1f} s (connect_timeout 5 s); "
        f"the session ended {ended - signalled:.1f} s after SIGTERM, pgpool exited "
        f"{time.monotonic() - ended:.1f} s later (exit code 0)"
    )
    assert "shutting down by signal 15" in pod.logs("pgpool")  # SIGTERM: smart shutdown


def test_the_drop_in_image_with_pgpool2_on_k8s_minimal_env_serves_tls_logins_as_pid_1(
    rig: Rig, cluster: PgCluster
) -> None:
    """pgpool2_on_k8s's pgpool-deploy-minimal.yaml env, its backends being the Service
    stand-ins; the image's defaults otherwise (no flags, no mounts)."""
    cluster.set_role("mini_user", "mini:pw", encryption="scram-sha-256")
    settings = rig.settings
    env = pgpool2_on_k8s_minimal_env(
        primary=(settings["PGPOOLSYNC_PRIMARY_HOST"], int(settings["PGPOOLSYNC_PRIMARY_PORT"])),
        replica=(settings["PGPOOLSYNC_REPLICA_HOST"], int(settings["PGPOOLSYNC_REPLICA_PORT"])),
        user="mini_user",
        password="mini:pw",
    )
    env_file = rig.base / "dropin.env"
    env_file.touch(mode=0o600)
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))  # not argv
    name = "pgpool-dropin-ci"
    podman("rm", "--force", "--time", "0", name, check=False)
    podman(
        "run",
        "--detach",
        "--name",
        name,
        "--network",
        NETWORK,
        "--env-file",
        str(env_file),
        "--pull=never",
        "localhost/pgpool-dropin:latest",
    )
    try:
        rig.serve_backends()
        info = inspect(name)
        ip = str(info["NetworkSettings"]["Networks"][NETWORK]["IPAddress"])
        wait_port(9999, host=ip, timeout=60)  # the drop-in's pgpool
        with psycopg.connect(
            host=ip,
            port=9999,
            user="mini_user",
            password="mini:pw",
            dbname="postgres",
            sslmode="require",
        ) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("mini_user",)
            assert conn.pgconn.ssl_in_use
        with pytest.raises(psycopg.OperationalError):  # SSL=on: TLS required
            psycopg.connect(
                host=ip,
                port=9999,
                user="mini_user",
                password="mini:pw",
                dbname="postgres",
                sslmode="disable",
            ).close()
        pid = inspect(name)["State"]["Pid"]
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert argv[0] == b"/usr/sbin/pgpool", argv  # exec'd: pgpool is PID 1 of the container
        assert b"mini:pw" not in Path(f"/proc/{pid}/environ").read_bytes()
    finally:
        logs = podman("logs", name, check=False)
        podman("rm", "--force", "--time", "0", name, check=False)
    assert "mini:pw" not in logs.stdout + logs.stderr
