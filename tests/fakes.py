"""In-memory stand-ins for the loop's unit tests: a pgpool that behaves like the real one where
the loop cares (what a reload takes, what only a restart takes), and a loop wired to it."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pgpoolsync import reconcile, wiring
from pgpoolsync.core import model
from pgpoolsync.pgpool.actuator import Actuator, Restarter
from pgpoolsync.pgpool.pcp import PcpConnectionError, PcpError
from pgpoolsync.report.metrics import Metrics, new_registry
from pgpoolsync.report.reporter import Reporter
from pgpoolsync.settings import parse
from pgpoolsync.sources import ChangeSignal

# What pgpool 4.3 takes only at start, for the parameters these tests change (docs/pgpool-facts.md).
START_ONLY = frozenset({"port", "num_init_children", "max_pool", "backend_port0", "ssl"})


class FakePgpool:
    """Starts on the first reload's parameters (as pgpool starts on the files), then takes
    reloadable values on reload, except those in ``refuse`` (pgpool keeps the old value)."""

    def __init__(self) -> None:
        self.reloads: list[float] = []
        self.running: dict[str, str] | None = None
        self.refuse: set[str] = set()
        self.down = 0  # this many calls fail as if pgpool were not listening
        self.cert: bytes | None = None
        self.status: dict[int, int] = {0: 2, 1: 2}  # node id → pgpool's status (3 = down)
        self.commands: list[tuple[str, int]] = []
        self.refuse_commands = 0  # this many node commands fail as pgpool's errors would
        # pgpool restarts its PCP process a second after a failover: after each detach, this
        # many PCP calls find their connection cut (an attach among them still takes effect
        # when ``cut_after_reply``: the cut came after pgpool had done it)
        self.cuts_after_detach = 0
        self.cut_after_reply = False
        self._cuts = 0

    def _maybe_down(self) -> None:
        if self._cuts and not self.cut_after_reply:
            self._cuts -= 1
            raise PcpConnectionError("PCP receive failed: [Errno 104] Connection reset by peer")
        if self.down:
            self.down -= 1
            raise PcpConnectionError("cannot connect to PCP at 127.0.0.1:9898: Connection refused")

    def start(self, params: Mapping[str, str]) -> None:
        self.running = dict(params)

    def reload(self, params: Mapping[str, str]) -> None:
        self._maybe_down()
        self.reloads.append(time.monotonic())
        if self.running is None:
            self.start(params)
            return
        for name, value in params.items():
            if name not in START_ONLY and name not in self.refuse:
                self.running[name] = value

    def running_params(self, params: Mapping[str, str]) -> dict[str, str]:
        self._maybe_down()
        return dict(self.running or {})

    def served_certificate(self, params: Mapping[str, str]) -> bytes | None:
        return self.cert

    def node_status(self, params: Mapping[str, str]) -> dict[int, int]:
        self._maybe_down()
        return dict(self.status)

    def detach(self, params: Mapping[str, str], node_id: int) -> None:
        self._command("detach", node_id)
        flag = (self.running or {}).get(f"backend_flag{node_id}", "")
        if "DISALLOW_TO_FAILOVER" in flag.split("|"):
            # pgpool cancels it (src/main/pool_internal_comms.c) and says so in its reply.
            raise PcpError("failover is disallowed on the node")
        self.status[node_id] = 3
        self._cuts = self.cuts_after_detach

    def attach(self, params: Mapping[str, str], node_id: int) -> None:
        self._command("attach", node_id)
        self.status[node_id] = 1
        if self._cuts and self.cut_after_reply:
            self._cuts -= 1
            raise PcpConnectionError("PCP receive failed: [Errno 104] Connection reset by peer")

    def _command(self, name: str, node_id: int) -> None:
        self._maybe_down()
        self.commands.append((name, node_id))
        if self.refuse_commands:
            self.refuse_commands -= 1
            raise PcpError(f"{name} of node {node_id} refused")
        if node_id not in self.status:
            raise PcpError("invalid node ID")


def make_loop(
    tmp_path: Path,
    snapshot: Callable[[], model.Snapshot],
    pgpool: FakePgpool,
    *,
    events: Callable[[model.Problem, str], None] | None = None,
    restart: Restarter | None = None,
    args: Sequence[str] = (),
    actuator_args: Mapping[str, Any] | None = None,
    **kw: Any,
) -> tuple[reconcile.Loop, Metrics]:
    settings = parse(
        ["run", "--config-dir", str(tmp_path), "--tls", "off", *args],
        {"PGPOOL_PCP_USER": "u", "PGPOOL_PCP_PASSWORD": "p"},
    )
    assert settings.common is not None and settings.run is not None
    common = settings.common
    m = Metrics(new_registry())
    actuator = Actuator(
        config_dir=common.config_dir,
        pool_key_file=common.pool_key_file,
        pgpool=pgpool,
        restart=restart,
        verify_seconds=0.0,
        sleep=lambda s: None,
        **{"settle_seconds": settings.run.node_settle_seconds, **(actuator_args or {})},
    )
    kw.setdefault("resync_seconds", settings.run.resync_seconds)
    loop = reconcile.Loop(
        snapshot=snapshot,
        build=wiring.builder(common, hba_text=None),
        actuator=actuator,
        reporter=Reporter(metrics=m, events=events),
        signal=ChangeSignal(),
        where=str(tmp_path),
        **kw,
    )
    return loop, m


def value(m: Metrics, name: str, labels: dict[str, str] | None = None) -> float:
    v = m.registry.get_sample_value(name, labels or {})
    return v if v is not None else 0.0
