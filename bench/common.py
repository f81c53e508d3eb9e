"""Shared by the benchmarks: statistics, a machine description, and writing JSON results."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from devcluster import pgpool_binary
from devcluster.kubeapi import KubeApiDouble
from devcluster.kubeobjects import secret

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    got = subprocess.run(
        [pgpool_binary(), "--version"], capture_output=True, text=True, check=False
    )
    pgpool = (got.stdout + got.stderr).strip() or "?"  # pgpool prints its version on stderr
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "pgpool": pgpool,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def summary(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)

    def q(p: float) -> float:
        return s[min(len(s) - 1, int(p * (len(s) - 1) + 0.5))]

    return {
        "n": len(s),
        "mean": statistics.fmean(s),
        "p50": q(0.5),
        "p95": q(0.95),
        "p99": q(0.99),
        "max": s[-1],
    }


def write(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **result}, indent=2) + "\n")
    return path


def put_credential(api: KubeApiDouble, name: str, *, user: str, password: str, app: str) -> None:
    """Create or update the credential Secret ``name`` (labelled ``app``) in the API double."""
    api.put("secrets", secret(name, {"username": user, "password": password}, labels={"app": app}))
