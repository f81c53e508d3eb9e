"""Files that mean the same to pgpool 4.3 to 4.7: renamed parameters under both names or under the
one the target reads, and a warning naming each parameter the target pgpool does not know. Pure
(core/build.py)."""

from __future__ import annotations

import pytest

from pgpoolsync.core import build, model, versions
from tests.origins import src


def _build(params: dict[str, str], *, version: str = "4.3") -> model.Outcome:
    return build.build(
        model.Inputs(
            backends=(model.Backend("db", 5432, model.PRIMARY_FLAG),),
            params=tuple(
                model.Param(n, v, src(f"env PGPOOL_PARAMS_{n.upper()}")) for n, v in params.items()
            ),
            pgpool_version=version,
        )
    )


def _params(outcome: model.Outcome) -> dict[str, str]:
    assert outcome.state is not None, outcome.problems
    return dict(outcome.state.params)


def test_socket_dir_is_written_under_its_4_4_name_too() -> None:
    params = _params(_build({"socket_dir": "/var/run/pgpool"}))
    assert params["socket_dir"] == params["unix_socket_directories"] == "/var/run/pgpool"


def test_unix_socket_directories_is_written_under_the_4_3_name_too() -> None:
    params = _params(_build({"unix_socket_directories": "/run/p"}, version="4.6"))
    assert params["socket_dir"] == "/run/p"


def test_both_names_with_different_values_are_refused_naming_both() -> None:
    out = _build({"socket_dir": "/a", "unix_socket_directories": "/b"})
    assert out.state is None
    assert any(
        "socket_dir and unix_socket_directories" in p.message
        and p.source == src("env PGPOOL_PARAMS_UNIX_SOCKET_DIRECTORIES")
        for p in out.errors
    )


def test_a_parameter_newer_than_the_target_pgpool_is_a_warning_naming_it() -> None:
    out = _build({"log_backend_messages": "terse"})
    assert out.state is not None  # written: harmless, and right for a newer pgpool
    assert [str(p) for p in out.warnings] == [
        "env PGPOOL_PARAMS_LOG_BACKEND_MESSAGES: log_backend_messages exists from pgpool 4.6: "
        "pgpool 4.3 ignores it (--pgpool-version says which pgpool reads the files)"
    ]
    assert _build({"log_backend_messages": "terse"}, version="4.6").warnings == ()


def test_an_unsupported_version_is_an_error() -> None:
    out = _build({}, version="3.7")
    assert out.state is None and "unsupported version '3.7'" in str(out.errors[0])


def test_pgpool_4_7_gets_logdir_as_work_dir_and_never_logdir() -> None:
    params = _params(_build({"logdir": "/var/run/pgpool"}, version="4.7"))
    assert params["work_dir"] == "/var/run/pgpool"
    assert "logdir" not in params


def test_pgpool_4_7_gets_a_work_dir_in_the_run_directory_when_none_is_given() -> None:
    # 4.7.0 refuses to start with neither logdir nor work_dir (pgpool/pgpool2 issue #144).
    assert _params(_build({}, version="4.7"))["work_dir"] == "/var/run/pgpool"
    mine = _params(_build({"pid_file_name": "/run/p/pgpool.pid"}, version="4.7"))
    assert mine["work_dir"] == "/run/p"
    # A relative pid file is pgpool.conf's directory's: never work_dir '' or '/' from it.
    relative = _params(_build({"pid_file_name": "pgpool.pid"}, version="4.7"))
    assert relative["work_dir"] == "/var/run/pgpool"


@pytest.mark.parametrize("version", ["4.3", "4.6"])
def test_pgpool_before_4_7_gets_work_dir_as_logdir_and_never_work_dir(version: str) -> None:
    params = _params(_build({"work_dir": "/w"}, version=version))
    assert params["logdir"] == "/w"
    assert "work_dir" not in params
    assert "work_dir" not in _params(_build({}, version=version))  # pgpool's own default


def test_logdir_and_work_dir_with_different_values_are_refused_naming_both() -> None:
    out = _build({"logdir": "/a", "work_dir": "/b"}, version="4.7")
    assert out.state is None
    assert [str(p) for p in out.errors] == [
        "env PGPOOL_PARAMS_WORK_DIR: logdir and work_dir (its name from pgpool 4.7) have "
        "different values: set one of them"
    ]
    assert _params(_build({"logdir": "/a", "work_dir": "/a"}, version="4.7"))["work_dir"] == "/a"


@pytest.mark.parametrize(
    ("name", "since"),
    [
        ("recovery_database", "4.7"),
        ("wd_listen_address", "4.7"),
        ("wd_listen_port", "4.7"),
        ("wd_heartbeat_listen_addresses", "4.7"),
        ("wd_heartbeat_listen_port", "4.7"),
        ("log_backend_messages", "4.6"),
    ],
)
def test_the_parameters_added_in_4_6_and_4_7_are_known_to_the_version_check(
    name: str, since: str
) -> None:
    older = _build({name: "x"}, version="4.5" if since == "4.6" else "4.6")
    assert [p.message for p in older.warnings] == [
        f"{name} exists from pgpool {since}: pgpool {'4.5' if since == '4.6' else '4.6'} ignores "
        "it (--pgpool-version says which pgpool reads the files)"
    ]
    assert _build({name: "x"}, version="4.7").warnings == ()


def test_without_a_version_the_files_are_for_what_the_images_run() -> None:
    assert model.Inputs().pgpool_version == versions.DEFAULT_PGPOOL_VERSION == "4.6"
    assert "work_dir" not in _params(
        build.build(model.Inputs(backends=(model.Backend("db", 5432, model.PRIMARY_FLAG),)))
    )
