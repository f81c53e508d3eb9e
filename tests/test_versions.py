"""Files that mean the same to pgpool 4.3 and 4.4+: renamed parameters under both names, and a
warning naming each parameter the target pgpool does not know. Pure (model.build)."""

from __future__ import annotations

from pgpoolsync.core import model
from tests.origins import src


def _build(params: dict[str, str], *, version: str = "4.3") -> model.Outcome:
    return model.build(
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
