"""The reconcile loop with plain in-memory sources and a fake pgpool: collapsing, the first pass,
restart-required against what pgpool runs, last good files, asynchronous Events."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest

from pgpoolsync.cli import main
from pgpoolsync.core import model, outcomes, rollout
from pgpoolsync.core.changes import describe_change
from pgpoolsync.report.reporter import AsyncEvents
from pgpoolsync.restart.signal import SignalRestart
from tests.fakes import FakePgpool, make_loop, value
from tests.origins import src


class Source:
    def __init__(self) -> None:
        self.creds: list[model.Credential | model.Problem] = [
            model.Credential("a", "1", src("secret ns/a"))
        ]
        self.backends = (model.Backend("db", 5432, model.PRIMARY_FLAG),)
        self.problems: tuple[model.Problem, ...] = ()

    def __call__(self) -> model.Snapshot:
        return model.Snapshot(
            credentials=tuple(self.creds), backends=self.backends, problems=self.problems
        )


def test_a_burst_of_changes_collapses_into_one_write_and_one_reload(tmp_path: Path) -> None:
    source, pgpool = Source(), FakePgpool()
    loop, m = make_loop(tmp_path, source, pgpool)
    loop.step()
    assert len(pgpool.reloads) == 1
    for i in range(50):
        source.creds = [model.Credential("a", f"pw{i}", src("secret ns/a"))]
        loop.signal.notify()
    loop.step()
    assert len(pgpool.reloads) == 2
    loop.step()  # nothing changed: no write, no reload
    assert len(pgpool.reloads) == 2
    assert value(m, "pgpoolsync_applies_total", {"result": "unchanged"}) == 1
    assert value(m, "pgpoolsync_change_to_reload_seconds_count") == 1


def test_the_first_pass_reloads_even_when_the_files_are_already_up_to_date(
    tmp_path: Path,
) -> None:
    # The sidecar died after writing pool_passwd and before reloading: the restarted sidecar
    # finds nothing to write, and must still make pgpool read the files.
    source = Source()
    first, _ = make_loop(tmp_path, source, FakePgpool())
    first.step()
    source.creds = [model.Credential("a", "rotated", src("secret ns/a"))]
    before = (tmp_path / "pool_passwd").read_bytes()
    first.actuator.apply(first._build(source()).state)  # type: ignore[arg-type]
    assert (tmp_path / "pool_passwd").read_bytes() != before  # written; killed before reload

    pgpool = FakePgpool()
    again, m = make_loop(tmp_path, source, pgpool)
    again.step()
    assert value(m, "pgpoolsync_applies_total", {"result": "unchanged"}) == 1
    assert len(pgpool.reloads) == 1
    assert not again.pending_reload


def test_a_broken_config_keeps_the_last_good_files(tmp_path: Path) -> None:
    source, pgpool = Source(), FakePgpool()
    loop, m = make_loop(tmp_path, source, pgpool)
    loop.step()
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    source.problems = (
        model.Problem(model.service_origin("default", "db"), "primary Service not found"),
    )
    source.creds = [model.Credential("b", "2", src("secret ns/b"))]
    loop.step()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert value(m, "pgpoolsync_applies_total", {"result": "error"}) == 1
    assert len(pgpool.reloads) == 1


def test_restart_required_is_what_pgpool_reports_it_runs_with(tmp_path: Path) -> None:
    source, pgpool = Source(), FakePgpool()
    reports: list[str] = []
    loop, m = make_loop(tmp_path, source, pgpool, events=lambda p, r: reports.append(r))
    loop.step()
    assert not loop.restart_needed
    source.backends = (model.Backend("db", 5433, model.PRIMARY_FLAG),)
    loop.step()
    assert loop.restart_needed == ("backend_port0",)
    assert value(m, "pgpoolsync_restart_required") == 1
    assert reports.count("RestartRequired") == 1

    # (a) the sidecar restarts, pgpool does not: still required (pgpool still runs 5432).
    again, m2 = make_loop(tmp_path, source, pgpool)
    again.step()
    assert again.restart_needed == ("backend_port0",)
    assert value(m2, "pgpoolsync_restart_required") == 1

    # (b) pgpool restarts on the new files: no longer required, though no file changed.
    pgpool.start(dict(again.state.params))  # type: ignore[union-attr]
    again.actuator._verified_at = None  # the periodic recheck, now
    again.step()
    assert not again.restart_needed
    assert value(m2, "pgpoolsync_restart_required") == 0


def test_a_reloadable_change_pgpool_refused_is_retried_not_called_restart_required(
    tmp_path: Path,
) -> None:
    source, pgpool = Source(), FakePgpool()
    loop, m = make_loop(tmp_path, source, pgpool)
    loop.step()
    pgpool.refuse = {"backend_weight0", "backend_flag0"}
    source.backends = (model.Backend("db", 5432, "DISALLOW_TO_FAILOVER|ALWAYS_PRIMARY", 1),)
    loop.step()  # the same flags in another order: pgpool runs them already
    assert not loop.pending_reload
    source.backends = (model.Backend("db", 5432, "ALWAYS_PRIMARY"),)
    wait = loop.step()
    assert not loop.restart_needed
    assert loop.pending_reload and 0 < wait <= 1
    assert value(m, "pgpoolsync_unapplied_params") == 1
    pgpool.refuse = set()
    loop.step()
    assert not loop.pending_reload
    assert value(m, "pgpoolsync_unapplied_params") == 0


def test_the_signal_policy_restarts_once_per_target_not_in_a_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, pgpool = Source(), FakePgpool()
    restarts: list[int] = []

    def kill(pid: int, signum: int) -> None:
        restarts.append(signum)  # but pgpool does not come back on the new port (cannot bind)

    pid_file = tmp_path / "pgpool.pid"
    pid_file.write_text("4242\0")  # as pgpool writes it: NUL-ended
    monkeypatch.setattr("os.kill", kill)
    loop, _ = make_loop(tmp_path, source, pgpool, restart=SignalRestart(pid_file=str(pid_file)))
    loop.step()
    source.backends = (model.Backend("db", 6000, model.PRIMARY_FLAG),)
    for _ in range(4):
        loop.step()
    assert restarts == [signal.SIGINT]
    assert loop.restart_needed == ("backend_port0",)


def test_a_failed_reload_is_retried_with_backoff(tmp_path: Path) -> None:
    source, pgpool = Source(), FakePgpool()
    loop, m = make_loop(tmp_path, source, pgpool)
    pgpool.down = 2
    wait = loop.step()
    assert loop.pending_reload and wait > 0
    assert loop.ready.is_set()  # the files are on disk: pgpool can start on them
    loop.step()
    loop.step()
    assert not loop.pending_reload and len(pgpool.reloads) == 1
    assert value(m, "pgpoolsync_reloads_total", {"result": "error"}) == 2
    assert value(m, "pgpoolsync_reloads_total", {"result": "success"}) == 1


def test_invalid_inputs_are_reported_once_not_on_every_pass(tmp_path: Path) -> None:
    source = Source()
    source.creds.append(model.Problem(src("secret ns/bad"), "no password key"))
    reports: list[str] = []
    loop, m = make_loop(tmp_path, source, FakePgpool(), events=lambda p, r: reports.append(str(p)))
    loop.step()
    loop.step()
    assert reports == ["secret ns/bad: no password key"]
    assert value(m, "pgpoolsync_invalid_inputs") == 1


def test_a_slow_event_sink_never_delays_the_reload(tmp_path: Path) -> None:
    release = threading.Event()
    posted: list[str] = []

    def slow_api(problem: model.Problem, reason: str) -> None:
        release.wait(10)  # an API server that takes its time (the client waits up to 15 s)
        posted.append(reason)

    events = AsyncEvents(slow_api)
    source, pgpool = Source(), FakePgpool()
    source.creds.append(model.Problem(src("secret ns/bad"), "no password key"))
    loop, _ = make_loop(tmp_path, source, pgpool, events=events)
    started = time.monotonic()
    loop.step()
    assert pgpool.reloads and pgpool.reloads[0] - started < 5  # not behind the Event
    assert posted == []
    release.set()
    events.close()
    assert posted == ["InvalidInput"]


def test_change_description_names_users_but_never_passwords() -> None:
    def state(
        creds: list[tuple[str, str]], params: tuple[tuple[str, str], ...]
    ) -> model.DesiredState:
        return model.DesiredState(
            params=params,
            password_format="aes",
            hba_rules=(),
            pcp_users=(),
            credentials=tuple(model.Credential(u, p) for u, p in creds),
        )

    old = state([("a", "old-secret"), ("b", "x")], (("sr_check_password", "s3"),))
    new = state([("a", "new-secret"), ("c", "y")], (("sr_check_password", "s4"),))
    text = describe_change(old, new)
    assert text == (
        "users added: c; users removed: b; passwords changed: a; sr_check_password = ***"
    )
    assert "secret" not in text and "s4" not in text


def test_run_once_writes_the_files_and_exits_without_pgpool(tmp_path: Path) -> None:
    secrets = tmp_path / "s" / "alice"
    secrets.mkdir(parents=True)
    (secrets / "username").write_text("alice")
    (secrets / "password").write_text("pw")
    env = {"PGPOOL_PCP_USER": "u", "PGPOOL_PCP_PASSWORD": "p", "PGPOOL_PARAMS_PCP_PORT": "1"}
    rc = main(
        [
            "run",
            "--once",
            "--config-dir",
            str(tmp_path / "c"),
            "--secrets-dir",
            str(tmp_path / "s"),
            "--primary-host",
            "db",
        ],
        env,
    )
    assert rc == 0
    assert (tmp_path / "c" / "pool_passwd").read_text().startswith("alice:AES")


def test_run_without_a_pcp_user_is_a_usage_error(tmp_path: Path) -> None:
    assert main(["run", "--config-dir", str(tmp_path), "--primary-host", "db"], {}) == 2


def test_a_bad_pcp_port_is_an_input_error_naming_the_variable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {"PGPOOL_PCP_USER": "u", "PGPOOL_PCP_PASSWORD": "p", "PGPOOL_PARAMS_PCP_PORT": "98x"}
    argv = ["--config-dir", str(tmp_path), "--primary-host", "db", "--tls", "off"]
    assert main(["render", *argv], env) == 1
    assert main(["run", "--once", *argv], env) == 1
    err = capsys.readouterr().err
    assert "env PGPOOL_PARAMS_PCP_PORT: pcp_port must be a whole number, not '98x'" in err
    assert not (tmp_path / "pgpool.conf").exists()


def test_kube_without_any_cluster_config_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kube/config
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    env = {"PGPOOL_PCP_USER": "u", "PGPOOL_PCP_PASSWORD": "p"}
    argv = ["run", "--kube", "--config-dir", str(tmp_path), "--primary-service", "db"]
    assert main(argv, env) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "pass --kubeconfig FILE" in err


def test_a_requested_rollout_is_one_log_line_one_event_and_a_metric_then_pending(
    tmp_path: Path,
) -> None:
    source, pgpool = Source(), FakePgpool()
    calls: list[str | None] = []

    def policy(
        state: model.DesiredState, names: tuple[str, ...], *, blocked: str | None
    ) -> outcomes.RestartOutcome:
        calls.append(blocked)
        first = len(calls) == 1
        return outcomes.RestartOutcome(
            decision=rollout.PATCH if first else rollout.PENDING,
            restart_hash="abc",
            deployment="pgpool",
            why="its pod template had no restart hash" if first else "rolling out abc",
            requested_at=1234.0,
        )

    reasons: list[str] = []
    loop, m = make_loop(
        tmp_path, source, pgpool, restart=policy, events=lambda p, r: reasons.append(r)
    )
    loop.step()
    assert calls == []  # nothing needs a restart
    source.backends = (model.Backend("db", 6000, model.PRIMARY_FLAG),)
    for _ in range(3):
        loop.step()
    assert calls == [None, None, None]
    assert reasons.count("RolloutRequested") == 1
    assert value(m, "pgpoolsync_rollouts_requested_total") == 1
    assert value(m, "pgpoolsync_rollout_pending") == 1
    assert value(m, "pgpoolsync_rollout_requested_timestamp_seconds") == 1234.0
    source.creds.append(model.Problem(src("secret ns/bad"), "password contains a newline"))
    loop.step()
    assert calls[-1] == "secret ns/bad: password contains a newline"  # no rollout for it


def test_a_broken_rotation_in_run_keeps_the_users_entry_and_every_other_change_applies(
    tmp_path: Path,
) -> None:
    source, pgpool = Source(), FakePgpool()
    loop, m = make_loop(tmp_path, source, pgpool)
    loop.step()
    alice = (tmp_path / "pool_passwd").read_text()
    source.creds = [
        model.Credential("a", "", src("secret ns/a")),  # the rotation wrote an empty password
        model.Credential("b", "2", src("secret ns/b")),
    ]
    loop.step()
    lines = (tmp_path / "pool_passwd").read_text().splitlines()
    assert [ln.split(":")[0] for ln in lines] == ["a", "b"]
    assert lines[0] == alice.splitlines()[0]
    assert value(m, "pgpoolsync_invalid_inputs") == 2  # the error and the kept-entry notice
