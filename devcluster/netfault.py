"""Dropping the packets to one port the test owns (a dead node, a partition), with iptables: on
loopback, or arriving on an interface the test's cluster made (`.ci/kube`'s node veth); every
rule carries a comment naming this process and is always removed."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator


def _rule(port: int, interface: str) -> list[str]:
    chain, direction = ("OUTPUT", "-o") if interface == "lo" else ("INPUT", "-i")
    return [
        chain,
        direction,
        interface,
        "-p",
        "tcp",
        "--dport",
        str(port),
        "-m",
        "comment",
        "--comment",
        f"pgpoolsync-test-{os.getpid()}",
        "-j",
        "DROP",
    ]


def available() -> bool:
    return shutil.which("iptables") is not None and os.geteuid() == 0


@contextlib.contextmanager
def dropped(port: int, *, interface: str = "lo") -> Iterator[None]:
    """Packets to ``port`` (sent on loopback, or arriving on ``interface``) are silently
    dropped while inside."""
    subprocess.run(["iptables", "-I", *_rule(port, interface)], check=True, capture_output=True)
    try:
        yield
    finally:
        undrop(port, interface=interface)


def undrop(port: int, *, interface: str = "lo") -> None:
    while (
        subprocess.run(
            ["iptables", "-D", *_rule(port, interface)], capture_output=True, check=False
        ).returncode
        == 0
    ):
        pass
