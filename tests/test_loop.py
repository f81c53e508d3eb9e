"""The reconcile loop with plain in-memory sources: collapsing, restart-required, last good."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from pgpoolsync import model, reconcile
from pgpoolsync.cli import main
from pgpoolsync.metrics import Metrics
from pgpoolsync.settings import parse


class Source:
    def __init__(self) -> None:
        self.creds: list[model.Credential | model.Problem] = [model.Credential("a", "1", "s/a")]
        self.backends = (model.Backend("db", 5432, model.PRIMARY_FLAG),)
        self.problems: tuple[model.Problem, ...] = ()

    def __call__(self) -> reconcile.Snapshot:
        return reconcile.Snapshot(
            credentials=tuple(self.creds), backends=self.backends, problems=self.problems
        )


def _loop(tmp_path: Path, source: Source, **kw: Any) -> tuple[reconcile.Loop, list[str], Metrics]:
    settings = parse(
        ["run", "--config-dir", str(tmp_path)], {"PGPOOL_PCP_USER": "u", "PGPOOL_PCP_PASSWORD": "p"}
    )
    assert settings.common is not None
    calls: list[str] = []
    m = Metrics(CollectorRegistry())
    loop = reconcile.Loop(
        common=settings.common,
        snapshot=source,
        reload=lambda: calls.append("reload"),
        signal=reconcile.ChangeSignal(),
        metrics=m,
        **kw,
    )
    return loop, calls, m


def _value(m: Metrics, name: str, labels: dict[str, str] | None = None) -> float:
    v = m.registry.get_sample_value(name, labels or {})
    return v if v is not None else 0.0


def test_a_burst_of_changes_collapses_into_one_write_and_one_reload(tmp_path: Path) -> None:
    source = Source()
    loop, calls, m = _loop(tmp_path, source)
    loop.step()
    assert calls == ["reload"]
    for i in range(50):
        source.creds = [model.Credential("a", f"pw{i}", "s/a")]
        loop.signal.notify()
    loop.step()
    assert calls == ["reload", "reload"]
    loop.step()  # nothing changed: no write, no reload
    assert calls == ["reload", "reload"]
    assert _value(m, "pgpoolsync_applies_total", {"result": "unchanged"}) == 1
    assert _value(m, "pgpoolsync_change_to_reload_seconds_count") == 1


def test_a_broken_config_keeps_the_last_good_files(tmp_path: Path) -> None:
    source = Source()
    loop, calls, m = _loop(tmp_path, source)
    loop.step()
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    source.problems = (model.Problem("service default/db", "primary Service not found"),)
    source.creds = [model.Credential("b", "2", "s/b")]
    loop.step()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert _value(m, "pgpoolsync_applies_total", {"result": "error"}) == 1
    assert calls == ["reload"]


def test_a_restart_only_change_is_reported_and_the_policy_may_restart(tmp_path: Path) -> None:
    source = Source()
    reports: list[str] = []
    restarts: list[int] = []
    loop, _calls, m = _loop(tmp_path, source, report=lambda problem, reason: reports.append(reason))
    loop.step()
    source.backends = (model.Backend("db", 5433, model.PRIMARY_FLAG),)
    loop.step()
    assert loop.restart_needed == ("backend_port0",)
    assert _value(m, "pgpoolsync_restart_required") == 1
    assert "RestartRequired" in reports

    # With a restart policy the change is applied by restarting pgpool.
    def restart() -> bool:
        restarts.append(1)
        return True

    loop2, _, m2 = _loop(tmp_path / "two", Source(), restart=restart)
    loop2.step()
    source2 = Source()
    source2.backends = (model.Backend("db", 6000, model.PRIMARY_FLAG),)
    loop2._snapshot = source2
    loop2.step()
    assert restarts == [1]
    assert _value(m2, "pgpoolsync_restart_required") == 0


def test_a_failed_reload_is_retried_with_backoff(tmp_path: Path) -> None:
    source = Source()
    loop, _, m = _loop(tmp_path, source)
    attempts: list[int] = []

    def flaky() -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionRefusedError("pgpool is down")

    loop._reload = flaky
    loop.step()
    assert loop.pending_reload and loop._backoff > 0
    loop.step()
    loop.step()
    assert not loop.pending_reload and len(attempts) == 3
    assert _value(m, "pgpoolsync_reloads_total", {"result": "error"}) == 2
    assert _value(m, "pgpoolsync_reloads_total", {"result": "success"}) == 1


def test_invalid_inputs_are_reported_once_not_on_every_pass(tmp_path: Path) -> None:
    source = Source()
    source.creds.append(model.Problem("secret ns/bad", "no password key"))
    reports: list[str] = []
    loop, _, m = _loop(tmp_path, source, report=lambda p, r: reports.append(str(p)))
    loop.step()
    loop.step()
    assert reports == ["secret ns/bad: no password key"]
    assert _value(m, "pgpoolsync_invalid_inputs") == 1


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
    text = reconcile.describe_change(old, new)
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
