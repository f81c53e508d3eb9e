"""What pgpoolsync costs a real kube-apiserver, from the server's own metrics.

`.ci/kube`'s cluster (PGPOOLSYNC_KUBE_DIR, or one brought up for the run), a namespace of N
credential Secrets, S sidecars (`pgpoolsync run --kube` host processes with the token of the
manifests' ServiceAccount and Role, each with its own real pgpool; one PostgreSQL primary +
replica behind selector-less Services). From ``apiserver_request_total`` (namespace scope, by
verb and resource) and ``apiserver_longrunning_requests`` (open WATCHes): the requests of the
sidecars at rest over a window (default 10 minutes, the issue's figure), minus the background: the
namespace-scoped requests over a window with no sidecar, measured once per Secret count in that
count's namespace (scaled to the window if ``--background-window`` differs); the requests per
rotation; the watches they hold open; and Secret PATCH → pgpool reloaded (the sidecar's
``pgpoolsync_reloads_total`` moves), p50/p99. Prints a table, writes bench/results/kube.json
(window, background and raw counts included).

    python -m bench.kube [--window 600] [--background-window SECONDS] [--rotations 20]
                         [--secrets 100,10000] [--sidecars 1,3]
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


def population(kube: KubeCluster, cluster: PgCluster, secrets: int) -> tuple[str, list[ServiceVip]]:
    """A namespace with the Role, ``secrets`` credential Secrets and the two Services."""
    ns = kube.namespace(f"bench-{secrets}-{int(time.time()) % 100000}")
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
    return ns, vips


def scenario(
    kube: KubeCluster,
    ns: str,
    base: Path,
    *,
    secrets: int,
    sidecars: int,
    window: float,
    rotations: int,
    background: Counter[str],
    background_window: float,
) -> dict[str, Any]:
    """S sidecars on the population in ``ns``; ``background`` (the namespace-scoped requests of
    everything else over ``background_window``, measured once per population before any
    sidecar) is scaled to ``window`` and subtracted from what the apiserver counted at rest."""
    runs: list[tuple[Pgpool, RunProcess]] = []
    try:
        watches0 = watches(kube)
        for k in range(sidecars):
            d = base / f"{ns}-{sidecars}-{k}"
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
        t_rest = time.monotonic()
        time.sleep(window)
        at_rest = requests(kube) - rest0
        rest_s = time.monotonic() - t_rest
        scale = window / background_window
        expected_bg = Counter({k: round(v * scale) for k, v in background.items()})
        own = at_rest - expected_bg  # Counter subtraction keeps only positive counts
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
            "window_measured_s": round(rest_s, 1),
            "background_window_s": background_window,
            "background_requests": dict(background),
            "at_rest_requests_raw": dict(at_rest),
            "at_rest_requests": dict(own),
            "at_rest_per_sidecar_per_window": {
                k: round(v / sidecars, 2) for k, v in sorted(own.items())
            },
            "at_rest_per_sidecar_per_min": round(sum(own.values()) / sidecars / (window / 60), 2),
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
        # the next scenario counts its watches from here: let these close first
        wait_until(
            lambda: watches(kube) <= watches0, what="the sidecars' watches closed", timeout=60
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--window", type=float, default=600.0, help="seconds at rest (issue: 10 min)")
    ap.add_argument(
        "--background-window",
        type=float,
        default=None,
        help="seconds of the no-sidecar window, once per Secret count (default: --window)",
    )
    ap.add_argument("--rotations", type=int, default=20)
    ap.add_argument("--secrets", default="100,10000")
    ap.add_argument("--sidecars", default="1,3")
    args = ap.parse_args()
    bg_window = args.background_window or args.window

    t_start = time.monotonic()
    base = Path(tempfile.mkdtemp(prefix="bench-kube-"))
    base.chmod(0o755)
    cluster = PgCluster(base / "pg")
    cluster.start()
    results = []
    try:
        for kube in cluster_session():
            for n in (int(x) for x in args.secrets.split(",")):
                ns, vips = population(kube, cluster, n)
                try:
                    idle0 = requests(kube)
                    t_bg = time.monotonic()
                    time.sleep(bg_window)
                    background = requests(kube) - idle0
                    bg_s = time.monotonic() - t_bg
                    print(
                        f"{n:>6} Secrets, no sidecar: background {dict(background)} "
                        f"over {bg_s:.0f} s",
                        flush=True,
                    )
                    for s in (int(x) for x in args.sidecars.split(",")):
                        res = scenario(
                            kube,
                            ns,
                            base,
                            secrets=n,
                            sidecars=s,
                            window=args.window,
                            rotations=args.rotations,
                            background=background,
                            background_window=bg_window,
                        )
                        results.append(res)
                        lat = res["patch_to_all_reloaded_s"]
                        print(
                            f"{n:>6} Secrets {s} sidecar(s): at rest "
                            f"{res['at_rest_per_sidecar_per_min']} req/min/sidecar, per "
                            f"sidecar per {args.window:.0f} s "
                            f"{res['at_rest_per_sidecar_per_window']} (raw, all sidecars: "
                            f"{res['at_rest_requests_raw']}); watches/sidecar "
                            f"{res['open_watches_per_sidecar']}; per rotation/sidecar "
                            f"{res['requests_per_rotation_per_sidecar']}; PATCH→reloaded "
                            f"p50 {lat['p50'] * 1000:.0f} ms p99 {lat['p99'] * 1000:.0f} ms",
                            flush=True,
                        )
                finally:
                    for vip in vips:
                        vip.close()
                    kube.kubectl("delete", "namespace", ns, "--wait=false", check=False)
            kube_version = kube.version
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)
    print(
        write(
            "kube",
            {
                "kubernetes": kube_version,
                "window_s": args.window,
                "background_window_s": bg_window,
                "background": "measured once per Secret count, in that count's namespace "
                "before any sidecar started; scaled to the window and subtracted",
                "rotations": args.rotations,
                "run_time_s": round(time.monotonic() - t_start),
                "scenarios": results,
            },
        )
    )


if __name__ == "__main__":
    main()
