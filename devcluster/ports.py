"""Loopback ports: a free one that no outgoing connection can take, and waiting for a server
(a port that accepts, or ``pgpoolsync run``'s /readyz) or any condition (``wait_until``)."""

from __future__ import annotations

import random
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A free loopback port below the ephemeral range, so that no outgoing connection can take
    it between now and the moment a server binds it."""
    low, _ = _ephemeral_range()
    top = max(low, 12000)
    for _ in range(200):
        port = random.randrange(10000, top)  # noqa: S311 - not security relevant
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port found")


def wait_port(port: int, *, timeout: float = 30.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s") from None
            time.sleep(0.05)


def wait_ready(
    port: int,
    proc: subprocess.Popen[bytes],
    *,
    timeout: float = 60.0,
    host: str = "127.0.0.1",
) -> None:
    """Wait until the ``pgpoolsync run`` in ``proc`` serves /readyz 200 on ``port``: its first
    apply is on disk, every file pgpool reads included. Start pgpool only after this, as the
    manifests' startup probe does: ``pool_passwd`` is written before ``pgpool.conf``, and a
    pgpool started in between reads no configuration (port 9999, defaults)."""
    import urllib.error  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415

    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"pgpoolsync run exited {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/readyz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.HTTPError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"pgpoolsync run not ready (/readyz on {host}:{port}) after {timeout}s"
            )
        time.sleep(0.05)


def wait_until(check: Callable[[], T], *, timeout: float = 20.0, what: str = "condition") -> T:
    """Polls ``check`` until it returns something true, and returns that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
