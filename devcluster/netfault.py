"""Dropping the packets to one loopback port the test owns (a dead node, a partition), with
iptables; every rule carries a comment naming this process and is always removed."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator


def _rule(port: int) -> list[str]:
    return [
        "OUTPUT",
        "-o",
        "lo",
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
def dropped(port: int) -> Iterator[None]:
    """Packets to 127.0.0.1:``port`` are silently dropped while inside."""
    subprocess.run(["iptables", "-I", *_rule(port)], check=True, capture_output=True)
    try:
        yield
    finally:
        undrop(port)


def undrop(port: int) -> None:
    while (
        subprocess.run(
            ["iptables", "-D", *_rule(port)], capture_output=True, check=False
        ).returncode
        == 0
    ):
        pass
