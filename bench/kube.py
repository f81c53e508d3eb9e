"""What pgpoolsync costs a real kube-apiserver, from the server's own metrics.

`.ci/kube`'s cluster (PGPOOLSYNC_KUBE_DIR, or one brought up for the run), a namespace of N
credential Secrets, S sidecars (`pgpoolsync run --kube` host processes with the token of the
manifests' ServiceAccount and Role, each with its own real pgpool; one PostgreSQL primary +
replica behind selector-less Services). From ``apiserver_request_total`` (namespace scope, by
verb and resource) and ``apiserver_longrunning_requests`` (open WATCHes): the requests of the
sidecars at rest over a window, minus the same window before they started; the requests per
rotation; the watches they hold open; and Secret PATCH → pgpool reloaded (the sidecar's
``pgpoolsync_reloads_total`` moves), p50/p99. Prints a table, writes bench/results/kube.json.

    python -m bench.kube [--window 60] [--rotations 20] [--secrets 100,10000] [--sidecars 1,3]
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import summary, write
from devcluster import PgCluster, Pgpool
from devcluster.kubereal import ROOT, KubeCluster, ServiceVip, cluster_session
from devcluster.ports import wait_until
from devcluster.runprocess import RunProcess

KINDS = ("secrets", "services", "endpointslices", "events")
_SAMPLE = re.compile(r"^(\w+)\{(.*)\} ([0-9.e+]+)$")


def _samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    out = []
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m and m.group(1) == name:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
            out.append((labels, float(m.group(3))))
    return out


def requests(kube: KubeCluster) -> Counter[str]:
    """Namespace-scoped requests so far for the sidecars' resources, as 'VERB resource'."""
    c: Counter[str] = Counter()
    for labels, value in _samples(kube.metrics(), "apiserver_request_total"):
        if labels.get("scope") == "namespace" and labels.get("resource") in KINDS:
            c[f"{labels['verb']} {labels['resource']}"] += int(value)
    return c


def watches(kube: KubeCluster) -> int:
    return int(
        sum(
            v
            for labels, v in _samples(kube.metrics(), "apiserver_longrunning_requests")
            if labels.get("verb") == "WATCH"
            and labels.get("scope") == "namespace"
            and labels.get("resource") in KINDS
        )
    )


def _secret(i: int, password: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": f"user-{i:05d}", "labels": {"app": "bench"}},
        "type": "Opaque",
        "data": {
            "username": base64.b64encode(f"user_{i:05d}".encode()).decode(),
            "password": base64.b64encode(password.encode()).decode(),
        },
    }


def scenario(
    kube: KubeCluster,
    cluster: PgCluster,
    base: Path,
    *,
    secrets: int,
    sidecars: int,
    window: float,
    rotations: int,
) -> dict[str, Any]:
    ns = kube.namespace(f"bench-{secrets}-{sidecars}-{int(time.time()) % 100000}")
    for f in ("serviceaccount", "role", "rolebinding"):
        kube.kubectl("apply", "-n", ns, "-f", str(ROOT / "manifests" / "base" / f"{f}.yaml"))
    for start in range(0, secrets, 500):
        items = [_secret(i, f"pw-{i}") for i in range(start, min(secrets, start + 500))]
        kube.kubectl(
            "create",
            "-n",
            ns,
            "-f",
            "-",
            stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
        )
    vips = []
    for name, port in (("db-primary", cluster.primary.port), ("db-replicas", cluster.replica.port)):
        kube.apply(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name},
                "spec": {"ports": [{"name": "postgres", "port": 5432}]},
            },
            ns,
        )
        ip = kube.get("service", "-n", ns, name)["spec"]["clusterIP"]
        vips.append(ServiceVip(ip, 5432, port))
    runs: list[tuple[Pgpool, RunProcess]] = []
    try:
        idle0 = requests(kube)
        time.sleep(window)
        background = requests(kube) - idle0
        watches0 = watches(kube)
        for k in range(sidecars):
            d = base / f"{ns}-{k}"
            d.mkdir()
            pool, run = kube.sidecar(
                d,
                namespace=ns,
                args=[
                    "--secret-selector", "app=bench",
                    "--primary-service", "db-primary", "--replica-service", "db-replicas",
                    "--service-address", "cluster-ip",
                ],
            )  # fmt: skip
            run.start()
            pool.start()
            run.wait_first_reload()
            runs.append((pool, run))
        time.sleep(2)
        open_watches = watches(kube) - watches0
        rest0 = requests(kube)
        time.sleep(window)
        at_rest = requests(kube) - rest0
        latencies = []
        rot0 = requests(kube)
        for r in range(rotations):
            before = [run.metric("pgpoolsync_reloads_total", 'result="success"') for _, run in runs]
            t0 = time.perf_counter()
            kube.kubectl(
                "patch", "secret", "-n", ns, "user-00000", "--type", "merge", "-p",
                json.dumps({"stringData": {"password": f"rotated-{r}"}}),
            )  # fmt: skip
            for (_, run), b in zip(runs, before, strict=True):
                wait_until(
                    lambda run=run, b=b: (  # type: ignore[misc]
                        run.metric("pgpoolsync_reloads_total", 'result="success"') > b
                    ),
                    what="reload",
                    timeout=60,
                )
            latencies.append(time.perf_counter() - t0)
        per_rotation = requests(kube) - rot0
        per_rotation.pop("PATCH secrets", None)  # the bench's own
        return {
            "secrets": secrets,
            "sidecars": sidecars,
            "window_s": window,
            "background_requests": dict(background),
            "at_rest_requests": dict(at_rest - background),
            "at_rest_per_sidecar_per_min": round(
                sum((at_rest - background).values()) / sidecars / (window / 60), 2
            ),
            "open_watches_per_sidecar": open_watches / sidecars,
            "requests_per_rotation_per_sidecar": {
                k: round(v / rotations / sidecars, 2) for k, v in per_rotation.items()
            },
            "patch_to_all_reloaded_s": summary(latencies),
        }
    finally:
        for pool, run in runs:
            run.stop()
            pool.stop()
        for vip in vips:
            vip.close()
        kube.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--window", type=float, default=60.0)
    ap.add_argument("--rotations", type=int, default=20)
    ap.add_argument("--secrets", default="100,10000")
    ap.add_argument("--sidecars", default="1,3")
    args = ap.parse_args()

    base = Path(tempfile.mkdtemp(prefix="bench-kube-"))
    base.chmod(0o755)
    cluster = PgCluster(base / "pg")
    cluster.start()
    results = []
    try:
        for kube in cluster_session():
            for n in (int(x) for x in args.secrets.split(",")):
                for s in (int(x) for x in args.sidecars.split(",")):
                    res = scenario(
                        kube,
                        cluster,
                        base,
                        secrets=n,
                        sidecars=s,
                        window=args.window,
                        rotations=args.rotations,
                    )
                    results.append(res)
                    lat = res["patch_to_all_reloaded_s"]
                    print(
                        f"{n:>6} Secrets {s} sidecar(s): at rest "
                        f"{res['at_rest_per_sidecar_per_min']} req/min/sidecar "
                        f"{res['at_rest_requests']}; watches/sidecar "
                        f"{res['open_watches_per_sidecar']}; per rotation/sidecar "
                        f"{res['requests_per_rotation_per_sidecar']}; PATCH→reloaded "
                        f"p50 {lat['p50'] * 1000:.0f} ms p99 {lat['p99'] * 1000:.0f} ms",
                        flush=True,
                    )
            kube_version = kube.version
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)
    print(write("kube", {"kubernetes": kube_version, "scenarios": results}))


if __name__ == "__main__":
    main()
