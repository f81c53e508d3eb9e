"""Drop-in for the pgpool2_on_k8s image: its env means the same here (pgpool.docker/entrypoint.sh
read in pgpool/pgpool2_on_k8s), differences are deliberate. Pure; the real
pgpool checks are in tests/real/test_dropin_real.py."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgpoolsync.core import build, model, tls
from pgpoolsync.exporter import conninfo, scrape
from pgpoolsync.settings import UsageError, parse
from pgpoolsync.sources.env import env_params
from tests.origins import src
from tests.unit.test_exporter import FakeConn


def _build(
    params: dict[str, str], *, users: tuple[str, ...] = (), backends: bool = False
) -> model.Outcome:
    return build.build(
        model.Inputs(
            backends=(model.Backend("db", 5432, model.PRIMARY_FLAG),) if backends else (),
            params=tuple(
                model.Param(n, v, src(f"env PGPOOL_PARAMS_{n.upper()}")) for n, v in params.items()
            ),
            credentials=tuple(model.Credential(u, "pw", src(f"secret ns/{u}")) for u in users),
        )
    )


def _params(outcome: model.Outcome) -> dict[str, str]:
    assert outcome.state is not None, outcome.problems
    return dict(outcome.state.params)


def test_a_backend_given_only_by_hostname_gets_port_weight_and_flag() -> None:
    params = _params(_build({"backend_hostname0": "db-rw", "backend_hostname1": "db-ro"}))
    assert (params["backend_port0"], params["backend_weight0"]) == ("5432", "1")
    assert params["backend_flag0"] == model.PRIMARY_FLAG
    assert (params["backend_port1"], params["backend_flag1"]) == ("5432", model.REPLICA_FLAG)


def test_an_explicit_backend_port_is_kept() -> None:
    params = _params(_build({"backend_hostname0": "db", "backend_port0": "6432"}))
    assert params["backend_port0"] == "6432"


def test_pcp_listens_on_loopback_by_default_as_pgpool_and_the_image_do() -> None:
    assert _params(_build({}, backends=True))["pcp_listen_addresses"] == "localhost"


def test_two_variables_for_one_parameter_in_different_case_are_refused_naming_both() -> None:
    with pytest.raises(UsageError, match="PGPOOL_PARAMS_PORT and PGPOOL_PARAMS_Port both set port"):
        env_params({"PGPOOL_PARAMS_PORT": "1", "PGPOOL_PARAMS_Port": "2"})


def test_an_unknown_password_encryption_method_is_refused_naming_the_variable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as info:
        parse(["render"], {"PGPOOL_PASSWORD_ENCRYPTION_METHOD": "password"})
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "PGPOOL_PASSWORD_ENCRYPTION_METHOD='password': must be scram-sha-256" in err


def test_pgpool_install_dir_is_the_default_config_dir_as_in_the_image() -> None:
    settings = parse(["render"], {"PGPOOL_INSTALL_DIR": "/opt/pgpool"})
    assert settings.common is not None
    assert settings.common.config_dir == Path("/opt/pgpool/etc")
    flagged = parse(["render", "--config-dir", "/x"], {"PGPOOL_INSTALL_DIR": "/opt/pgpool"})
    assert flagged.common is not None and flagged.common.config_dir == Path("/x")


@pytest.mark.parametrize("prefix", ["sr_check", "health_check"])
def test_a_check_period_needs_its_user_and_a_password(prefix: str) -> None:
    period = f"{prefix}_period"
    no_user = _build({period: "10"}, backends=True)
    assert no_user.state is None
    assert [str(p) for p in no_user.errors] == [
        f"env PGPOOL_PARAMS_{period.upper()}: {period} > 0 needs {prefix}_user"
    ]
    no_password = _build({period: "10", f"{prefix}_user": "mon"}, backends=True)
    assert no_password.state is None
    assert f"{prefix}_user 'mon' has no password" in str(no_password.errors[0])
    # A password in pgpool.conf, or the user's entry in pool_passwd, will do.
    with_password = {period: "10", f"{prefix}_user": "mon", f"{prefix}_password": "x"}
    assert _build(with_password, backends=True).state is not None
    assert _build({period: "10", f"{prefix}_user": "mon"}, backends=True, users=("mon",)).state
    assert _build({period: "0"}, backends=True).state is not None


def test_the_exporter_names_why_pgpool_is_unreachable_and_drops_the_version() -> None:
    calls = [0]

    def connect(*args: object, **kw: object) -> Any:
        calls[0] += 1
        if calls[0] > 1:
            raise psycopg.OperationalError(
                'connection failed: connection to server at "127.0.0.1", port 9999 failed: '
                "Connection refused\n\tIs the server running on that host?"
            )
        return FakeConn(set())

    scraper = scrape.Scraper(conninfo="postgresql://mon:s3cret@h:9999/x", connect=connect)
    first = {f.name for f in scraper.scrape()}
    scraper._drop()  # pgpool goes away
    second = {f.name for f in scraper.scrape()}
    assert "pgpool2_version_info" in first
    assert "pgpool2_version_info" not in second and "pgpool2_version" not in second
    why = conninfo.reason(
        psycopg.OperationalError("connection to server at h failed: password=s3cret rejected")
    )
    assert "s3cret" not in why and "rejected" in why
    refused = conninfo.reason(psycopg.OperationalError("connection failed: Connection refused\nx"))
    assert refused == "connection failed: Connection refused"


def _common(argv: list[str], env: dict[str, str]) -> Any:
    settings = parse(["render", *argv], env)
    assert settings.common is not None
    return settings.common


def test_pgpool_params_ssl_on_asks_for_tls_and_gets_it_required() -> None:
    common = _common([], {"PGPOOL_PARAMS_SSL": "on"})
    assert common.tls == "auto" and common.tls_required
    with pytest.raises(UsageError, match="PGPOOL_PARAMS_SSL=on with --tls off"):
        _common(["--tls", "off"], {"PGPOOL_PARAMS_SSL": "on"})


def _tls_inputs(**kw: Any) -> model.Inputs:
    return model.Inputs(
        backends=(model.Backend("db", 5432, model.PRIMARY_FLAG),),
        credentials=(model.Credential("alice", "pw", src("secret ns/alice")),),
        tls=tls.generate_self_signed(["pgpool"]),
        tls_required=True,
        pool_passwd=False,
        **kw,
    )


def test_without_pool_passwd_clients_send_passwords_over_tls_only() -> None:
    out = build.build(_tls_inputs())
    assert out.state is not None and out.state.credentials == ()
    assert out.state.hba_rules == (
        "local   all   all   trust",
        "hostssl all   all   all   password",
    )


def test_without_pool_passwd_tls_off_or_a_pool_hba_without_hostssl_is_refused() -> None:
    no_tls = build.build(replace(_tls_inputs(), tls=None))
    assert no_tls.state is None
    assert "PGPOOL_ENABLE_POOL_PASSWD: false sends clients' passwords in clear text" in str(
        no_tls.errors[0]
    )
    plain = build.build(_tls_inputs(hba_text="host all all all password\n"))
    assert plain.state is None and "add hostssl lines" in str(plain.errors[0])


def test_skip_password_encryption_copies_entries_verbatim_and_refuses_clear_passwords() -> None:
    common = _common([], {"PGPOOL_SKIP_PASSWORD_ENCRYPTION": "true"})
    assert common.password_format == "verbatim"
    entries = {
        "m": "md5" + "0" * 32,
        "a": "AES" + "q83vEjRWeJq83vEjRWeJqw==",
        "t": "TEXTpass:with colon",
    }
    out = build.build(
        model.Inputs(
            backends=(model.Backend("db", 5432, model.PRIMARY_FLAG),),
            credentials=(
                *(
                    model.Credential(u, e, src(f"env {u.upper()}_PASSWORD"))
                    for u, e in entries.items()
                ),
                model.Credential("clear", "hunter2", src("env CLEAR_PASSWORD")),
            ),
            pcp_users=(model.Credential("pcp", "not-a-digest", src("env PGPOOL_PCP_PASSWORD")),),
            password_format="verbatim",
        )
    )
    errors = [str(p) for p in out.errors]
    assert any(e.startswith("env CLEAR_PASSWORD: value of user 'clear' is not a") for e in errors)
    assert any("env PGPOOL_PCP_PASSWORD: PCP password is not an md5" in e for e in errors)
    assert all("hunter2" not in e for e in errors)


def test_pgpool_conf_lines_parse_as_pgpool_reads_them() -> None:
    from pgpoolsync.core import pgpoolconf

    params, problems = pgpoolconf.parse(
        "# comment\nport = 9999\nlisten_addresses = '*'   # all\nnum_init_children=8\n"
        "backend_hostname0 'db'\nreplication_user = 'it''s'\nthis is not a line\n",
        path="/config/pgpool.conf",
    )
    assert [(p.name, p.value) for p in params] == [
        ("port", "9999"),
        ("listen_addresses", "*"),
        ("num_init_children", "8"),
        ("backend_hostname0", "db"),
        ("replication_user", "it's"),  # then refused by check_param: a quote ends a value
    ]
    assert [str(p) for p in problems] == ["/config/pgpool.conf:7: not a 'name = value' line"]


def test_the_command_run_after_render_gets_no_password_in_its_environment() -> None:
    from pgpoolsync.sources.env import scrubbed_env

    env = scrubbed_env(
        {
            "PATH": "/usr/bin",
            "ALICE_USERNAME": "alice",
            "ALICE_PASSWORD": "s3cret",
            "PGPOOL_PCP_PASSWORD": "p",
            "DATA_SOURCE_PASS": "d",
            "DATA_SOURCE_URI": "postgresql://monitor:d@pgpool:9999/postgres",
            "PGPOOL_PARAMS_SR_CHECK_PASSWORD": "x",
            "PGPOOL_PARAMS_SSL_PASSPHRASE_COMMAND": "echo x",
            "PGPOOL_PARAMS_PORT": "9999",  # pgpool reads pgpool.conf, not these
        }
    )
    assert env == {"PATH": "/usr/bin", "ALICE_USERNAME": "alice"}


def test_the_drop_in_images_entrypoint_parses_as_render_then_pgpool() -> None:
    text = (Path(__file__).resolve().parents[2] / "images/pgpool-dropin/Dockerfile").read_text()
    import json

    entry = json.loads(next(ln for ln in text.splitlines() if ln.startswith("ENTRYPOINT"))[11:])
    settings = parse([*entry[1:], "--log-error-verbosity=default"], {"PGPOOL_INSTALL_DIR": "/o"})
    assert settings.command == "render" and settings.common is not None
    assert settings.common.config_dir == Path("/o/etc")
    assert settings.then[0] == "/usr/sbin/pgpool" and settings.then[-1].startswith("--log")
