"""`pgpoolsync render`: exit codes, no file changed on bad input, env twins, help."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from devcluster import pgpoolsync_exe
from pgpoolsync import flags, settings
from pgpoolsync.cli import main
from pgpoolsync.sources import env


def _secret(root: Path, name: str, user: str | bytes, password: str | bytes) -> None:
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "username").write_bytes(user if isinstance(user, bytes) else user.encode())
    (d / "password").write_bytes(password if isinstance(password, bytes) else password.encode())


def _snapshot(directory: Path) -> dict[str, tuple[bytes, int, int]]:
    return {
        p.name: (p.read_bytes(), p.stat().st_ino, p.stat().st_mtime_ns)
        for p in sorted(directory.iterdir())
    }


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    secrets, config = tmp_path / "secrets", tmp_path / "config"
    _secret(secrets, "alice", "alice", "alice-pw")
    return secrets, config


def _render(config: Path, secrets: Path, *extra: str, env: dict[str, str] | None = None) -> int:
    argv = [
        "render",
        "--config-dir",
        str(config),
        "--secrets-dir",
        str(secrets),
        "--primary-host",
        "db",
        *extra,
    ]
    return main(argv, env or {})


def test_render_writes_the_four_files_with_safe_modes(dirs: tuple[Path, Path]) -> None:
    secrets, config = dirs
    assert _render(config, secrets, env={"APP_USERNAME": "app", "APP_PASSWORD": "app-pw"}) == 0
    assert sorted(p.name for p in config.iterdir()) == [
        ".pgpoolkey",
        "pcp.conf",
        "pgpool.conf",
        "pool_hba.conf",
        "pool_passwd",
        "tls.crt",
        "tls.key",
    ]
    users = [ln.split(":")[0] for ln in (config / "pool_passwd").read_text().splitlines()]
    assert users == ["alice", "app"]
    for name in (".pgpoolkey", "pool_passwd", "pcp.conf", "tls.key"):
        assert (config / name).stat().st_mode & 0o777 == 0o600


def test_a_second_render_changes_nothing(dirs: tuple[Path, Path]) -> None:
    secrets, config = dirs
    assert _render(config, secrets) == 0
    before = _snapshot(config)
    assert _render(config, secrets) == 0
    assert _snapshot(config) == before


BAD_CONFIG = [
    ({"PGPOOL_PARAMS_PORT": "99'99"}, "env PGPOOL_PARAMS_PORT"),
    ({"PGPOOL_PARAMS_BAD-NAME": "1"}, "env PGPOOL_PARAMS_BAD-NAME"),
]
BAD_CREDENTIALS = [
    ({"X_USERNAME": "x", "X_PASSWORD": "a\nb"}, None, "env X_USERNAME/X_PASSWORD"),
    ({}, ("bob", "bob", "p" * 80), "bob: password of user 'bob' is 80 bytes"),
    ({}, ("bob", "bob", ""), "bob: password of user 'bob' is empty"),
    ({}, ("bob", "bo\rb", "pw"), "bob: user name contains a carriage return"),
    ({}, ("bob", "alice", "other-pw"), "different passwords"),
]


@pytest.mark.parametrize(("env", "message"), BAD_CONFIG)
def test_bad_configuration_exits_1_names_the_source_and_changes_no_file(
    dirs: tuple[Path, Path], capsys: pytest.CaptureFixture[str], env: dict[str, str], message: str
) -> None:
    secrets, config = dirs
    assert _render(config, secrets) == 0
    before = _snapshot(config)
    assert _render(config, secrets, env=env) == 1
    err = capsys.readouterr().err
    assert message in err and "nothing written" in err
    assert _snapshot(config) == before


@pytest.mark.parametrize(("env", "secret", "message"), BAD_CREDENTIALS)
def test_a_bad_credential_is_named_and_exits_3_every_other_user_is_written(
    dirs: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    secret: tuple[str, str, str] | None,
    message: str,
) -> None:
    secrets, config = dirs
    assert _render(config, secrets) == 0
    alice = (config / "pool_passwd").read_text()
    if secret:
        _secret(secrets, *secret)
    _secret(secrets, "carol", "carol", "carol-pw")
    assert _render(config, secrets, env=env) == 3
    err = capsys.readouterr().err
    assert message in err and "written without the credentials above" in err
    users = [ln.split(":")[0] for ln in (config / "pool_passwd").read_text().splitlines()]
    assert users == ["alice", "carol"]  # alice as she was, even when her new value conflicts
    assert (config / "pool_passwd").read_text().splitlines()[0] == alice.splitlines()[0]


@pytest.mark.parametrize(("env", "secret", "message"), BAD_CREDENTIALS)
def test_strict_render_writes_nothing_for_a_bad_credential(
    dirs: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    secret: tuple[str, str, str] | None,
    message: str,
) -> None:
    secrets, config = dirs
    assert _render(config, secrets) == 0
    before = _snapshot(config)
    if secret:
        _secret(secrets, *secret)
    assert _render(config, secrets, "--strict", env=env) == 1
    err = capsys.readouterr().err
    assert message in err and "nothing written" in err
    assert _snapshot(config) == before


def test_a_broken_rotation_keeps_the_users_last_good_entry(
    dirs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    secrets, config = dirs
    assert _render(config, secrets) == 0
    before = (config / "pool_passwd").read_text()
    _secret(secrets, "alice", "alice", "")  # the rotation wrote an empty password
    assert _render(config, secrets) == 3
    err = capsys.readouterr().err
    assert "password of user 'alice' is empty" in err
    assert "user 'alice' keeps its entry from the last good pool_passwd" in err
    assert (config / "pool_passwd").read_text() == before


def test_bad_input_on_a_fresh_directory_creates_nothing_with_strict(tmp_path: Path) -> None:
    secrets, config = tmp_path / "s", tmp_path / "c"
    _secret(secrets, "bad", "u", "p\0")
    assert _render(config, secrets, "--strict") == 1
    assert not config.exists()
    assert _render(config, secrets) == 3
    assert (config / "pool_passwd").read_text() == ""


def test_an_already_hashed_password_is_a_warning_not_a_failure(
    dirs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    secrets, config = dirs
    _secret(secrets, "hashed", "h", "md5" + "0" * 32)
    assert _render(config, secrets) == 0
    assert "warning: secrets dir secrets/hashed" in capsys.readouterr().err
    assert "h:" not in (config / "pool_passwd").read_text()


def test_an_invalid_pool_hba_file_exits_1(
    dirs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    secrets, config = dirs
    hba = secrets.parent / "hba"
    hba.write_text("host all all 10.0.0.0/40 md5\n")
    assert _render(config, secrets, "--pool-hba-file", str(hba)) == 1
    assert "pool_hba.conf: line 1: invalid CIDR mask" in capsys.readouterr().err


def test_a_valid_pool_hba_file_is_used(dirs: tuple[Path, Path]) -> None:
    secrets, config = dirs
    hba = secrets.parent / "hba"
    hba.write_text("host all all 10.0.0.0/8 md5\n")
    assert _render(config, secrets, "--pool-hba-file", str(hba)) == 0
    assert "host all all 10.0.0.0/8 md5" in (config / "pool_hba.conf").read_text()


@pytest.mark.parametrize(
    "argv",
    [
        ["render", "--password-format", "sha1"],
        ["render", "--primary-port", "99999"],
        ["render", "--no-such-flag"],
        [],
    ],
)
def test_usage_errors_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv, {})
    assert info.value.code == 2


def test_an_invalid_env_twin_choice_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["render"], {"PGPOOLSYNC_PASSWORD_FORMAT": "sha1"})
    assert info.value.code == 2
    assert "PGPOOLSYNC_PASSWORD_FORMAT" in capsys.readouterr().err


def test_every_flag_has_an_env_twin(tmp_path: Path, dirs: tuple[Path, Path]) -> None:
    secrets, config = dirs
    env = {
        "PGPOOLSYNC_CONFIG_DIR": str(config),
        "PGPOOLSYNC_SECRETS_DIR": str(secrets),
        "PGPOOLSYNC_PRIMARY_HOST": "db",
        "PGPOOLSYNC_REPLICA_HOST": "db-ro",
        "PGPOOLSYNC_REPLICA_PORT": "5433",
        "PGPOOLSYNC_PASSWORD_FORMAT": "md5",
    }
    assert main(["render"], env) == 0
    conf = (config / "pgpool.conf").read_text()
    assert "backend_hostname1 = 'db-ro'" in conf and "backend_port1 = '5433'" in conf
    assert ":md5" in (config / "pool_passwd").read_text()


def test_help_mentions_the_env_twin_of_every_flag() -> None:
    parser = flags.build_parser({}, image=env.read({}))
    sub = parser._subparsers._group_actions[0].choices["render"]  # type: ignore[union-attr,index]
    for action in sub._actions:
        for flag in action.option_strings:
            if flag.startswith("--") and flag != "--help":
                assert settings.env_name(flag) in (action.help or ""), flag


def test_pgpool_password_encryption_method_md5_selects_md5_like_the_image(
    dirs: tuple[Path, Path],
) -> None:
    secrets, config = dirs
    assert _render(config, secrets, env={"PGPOOL_PASSWORD_ENCRYPTION_METHOD": "md5"}) == 0
    assert "alice:md5" in (config / "pool_passwd").read_text()
    assert (config / "pool_hba.conf").read_text().rstrip().endswith("md5")


def test_env_params_split_at_the_first_equals(dirs: tuple[Path, Path]) -> None:
    secrets, config = dirs
    env = {"PGPOOL_PARAMS_APPLICATION_NAME_LIST": "a=b=c"}
    assert _render(config, secrets, env=env) == 0
    assert "application_name_list = 'a=b=c'" in (config / "pgpool.conf").read_text()


def test_x_username_pairs_use_the_text_before_the_first_underscore() -> None:
    creds, warnings = env.env_credentials(
        {
            "POSTGRES_USERNAME": "postgres",
            "POSTGRES_PASSWORD": "pg",
            "APP_USERNAME": "app",
            "APP_PASSWORD": "a",
            "MY_APP_USERNAME": "ignored",
            "MY_APP_PASSWORD": "x",
            "LONE_USERNAME": "lone",
        }
    )
    assert sorted((c.user, c.password) for c in creds if not isinstance(c, Exception)) == [  # type: ignore[union-attr]
        ("app", "a"),
        ("postgres", "pg"),
    ]
    assert [str(w.source) for w in warnings] == ["env LONE_USERNAME"]


def test_pcp_password_comes_from_a_file_and_never_argv(
    tmp_path: Path, dirs: tuple[Path, Path]
) -> None:
    secrets, config = dirs
    pw = tmp_path / "pcp-pw"
    pw.write_text("pcp-secret\n")
    assert _render(config, secrets, "--pcp-user", "admin", "--pcp-password-file", str(pw)) == 0
    assert re.fullmatch(r"admin:[0-9a-f]{32}", (config / "pcp.conf").read_text().splitlines()[-1])


def test_an_undecodable_password_file_is_refused_without_quoting_it(
    tmp_path: Path, dirs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    secrets, config = dirs
    pw = tmp_path / "pcp-pw"
    pw.write_bytes(b"s3cr\xe9t")
    assert _render(config, secrets, "--pcp-user", "admin", "--pcp-password-file", str(pw)) == 2
    err = capsys.readouterr().err
    assert f"--pcp-password-file {pw}: not valid UTF-8" in err
    assert "xe9" not in err and "s3cr" not in err
    assert not (config / "pcp.conf").exists()


def test_console_script_and_module_both_run(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGPOOL", "PGPOOLSYNC"))}
    for cmd in (
        [sys.executable, "-m", "pgpoolsync", "--help"],
        [pgpoolsync_exe(), "render", "--help"],
    ):
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
        assert "render" in out


def test_pgpool_conf_is_private_because_params_may_hold_passwords(dirs: tuple[Path, Path]) -> None:
    secrets, config = dirs
    assert _render(config, secrets, env={"PGPOOL_PARAMS_SR_CHECK_PASSWORD": "s3cret"}) == 0
    assert "sr_check_password = 's3cret'" in (config / "pgpool.conf").read_text()
    assert (config / "pgpool.conf").stat().st_mode & 0o777 == 0o600
    assert (config / "pool_hba.conf").stat().st_mode & 0o777 == 0o644


def test_a_missing_secrets_directory_names_the_setting_for_render_and_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, pcp = tmp_path / "config", tmp_path / "pcp"
    pcp.write_text("pcp-pw")
    missing = tmp_path / "not-mounted"
    common = ["--config-dir", str(config), "--secrets-dir", str(missing), "--primary-host", "h"]
    assert main(["render", *common], environ={}) == 1
    run = [
        "run",
        *common,
        "--pcp-user",
        "p",
        "--pcp-password-file",
        str(pcp),
        "--listen",
        "127.0.0.1:0",
    ]
    assert main(run, environ={}) == 1
    err = capsys.readouterr().err
    said = [ln for ln in err.splitlines() if ln.startswith("pgpoolsync: error:")]
    assert len(said) == 2, err
    for line in said:
        assert f"secrets directory {missing}: No such file or directory" in line
        assert "PGPOOLSYNC_SECRETS_DIR" in line
    assert not config.exists() or not list(config.iterdir())


def test_a_read_only_config_directory_is_an_error_that_writes_nothing(
    dirs: tuple[Path, Path],
) -> None:
    """A read-only mount (as a volume mounted readOnly), made in a private mount namespace."""
    secrets, config = dirs
    config.mkdir()
    render = [pgpoolsync_exe(), "render", "--config-dir", str(config), "--secrets-dir",
              str(secrets), "--primary-host", "db"]  # fmt: skip
    script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
    got = subprocess.run(
        ["unshare", "-m", "sh", "-c", script, "sh", str(config), *render],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert got.returncode == 1, got
    assert f"pgpoolsync: error: cannot write in {config}: Read-only file system" in got.stderr
    assert "PGPOOLSYNC_CONFIG_DIR" in got.stderr and "Traceback" not in got.stderr, got.stderr
    assert list(config.iterdir()) == []


def test_a_missing_pool_key_seed_names_the_seed_setting_not_the_key_file(
    dirs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    secrets, config = dirs
    seed = config.parent / "pgpool-key" / "pgpoolkey"
    assert _render(config, secrets, "--pool-key-seed-file", str(seed)) == 1
    err = capsys.readouterr().err
    assert f"pool key seed file (--pool-key-seed-file, PGPOOLSYNC_POOL_KEY_SEED_FILE) {seed}" in err
    assert not (config / "pgpool.conf").exists()


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["exporter"], "exporter"),
        (["--log-level", "DEBUG", "exporter", "--listen", ":1"], "exporter"),
        (["--log-format=json", "exporter"], "exporter"),
        (["run", "--kube"], "run"),
        (["render", "--", "exporter"], "render"),
        (["--log-level", "LOUD", "exporter"], None),  # the whole command line says what is wrong
        (["-h"], None),
        ([], None),
    ],
)
def test_the_console_script_finds_the_command_after_the_top_level_flags(
    argv: list[str], command: str | None
) -> None:
    from pgpoolsync.main import command as find

    assert find(argv) == command


def test_the_exporter_s_own_command_line_refuses_a_bad_flag_by_name(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from pgpoolsync.exporter.command import main as exporter_main

    with pytest.raises(SystemExit) as exc:
        exporter_main(["exporter", "--hold-connection-seconds", "soon"], {})
    assert exc.value.code == 2
    assert "--hold-connection-seconds: 'soon' is not a whole number" in capsys.readouterr().err
