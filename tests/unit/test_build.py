"""Building the desired state: defaults, overrides and every validation rule."""

from __future__ import annotations

import pytest

from pgpoolsync.core import build, model
from pgpoolsync.core.model import Backend, Credential, Inputs, Param
from tests.origins import src

PRIMARY = Backend("db-primary.ns.svc", 5432, model.PRIMARY_FLAG)
REPLICA = Backend("db-replicas.ns.svc", 5432, model.REPLICA_FLAG, weight=3)


def _build(**kw: object) -> model.Outcome:
    base: dict[str, object] = {"backends": (PRIMARY, REPLICA)}
    base.update(kw)
    return build.build(Inputs(**base))  # type: ignore[arg-type]


def test_defaults_fit_an_operator_that_owns_failover() -> None:
    state = _build().state
    assert state is not None
    p = dict(state.params)
    assert p["backend_clustering_mode"] == "streaming_replication"
    assert p["backend_flag0"] == "ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER"
    assert p["backend_flag1"] == "DISALLOW_TO_FAILOVER"
    assert p["backend_weight1"] == "3"
    assert (p["failover_on_backend_error"], p["sr_check_period"], p["health_check_period"]) == (
        "off",
        "0",
        "0",
    )
    assert (p["port"], p["pcp_port"], p["enable_pool_hba"]) == ("9999", "9898", "on")
    assert p["load_balance_mode"] == p["connection_cache"] == "on"


def test_env_params_override_defaults_and_backends() -> None:
    params = (
        Param("port", "5433", src("env PGPOOL_PARAMS_PORT")),
        Param("backend_weight0", "0", src("env PGPOOL_PARAMS_BACKEND_WEIGHT0")),
    )
    state = _build(params=params).state
    assert state is not None
    assert dict(state.params)["port"] == "5433"
    assert dict(state.params)["backend_weight0"] == "0"


@pytest.mark.parametrize(
    ("param", "message"),
    [
        (Param("port", "1'; x", src("env PGPOOL_PARAMS_PORT")), "single quote"),
        (Param("port", "1\nssl = on", src("env PGPOOL_PARAMS_PORT")), "newline"),
        (Param("port", "1\r", src("env PGPOOL_PARAMS_PORT")), "carriage return"),
        (Param("port", "1\0", src("env PGPOOL_PARAMS_PORT")), "NUL"),
        (Param("po-rt", "1", src("env PGPOOL_PARAMS_PO-RT")), "[a-z0-9_]+"),
        (Param("port", "\udcff", src("env PGPOOL_PARAMS_PORT")), "not valid UTF-8"),
        (Param("Port", "1", src("env X")), "[a-z0-9_]+"),
    ],
)
def test_a_bad_parameter_prevents_the_state_and_names_its_variable(
    param: Param, message: str
) -> None:
    outcome = _build(params=(param,))
    assert outcome.state is None
    assert len(outcome.errors) == 1
    assert outcome.errors[0].source == param.source
    assert message in outcome.errors[0].message


def test_no_primary_backend_is_an_error() -> None:
    outcome = _build(backends=())
    assert outcome.state is None
    assert "backend_hostname0" in str(outcome.errors[0])


def test_primary_may_come_from_env_params_alone() -> None:
    outcome = _build(backends=(), params=(Param("backend_hostname0", "h", src("env")),))
    assert outcome.state is not None


def _cred(user: str, password: str, source: str = "secret ns/s") -> Credential:
    return Credential(user=user, password=password, source=src(source))


@pytest.mark.parametrize(
    ("cred", "fmt", "message"),
    [
        (_cred("", "pw"), "aes", "user name is empty"),
        (_cred("a\nb", "pw"), "aes", "user name contains a newline"),
        (_cred("a\0b", "pw"), "aes", "user name contains a NUL"),
        (_cred("u" * 64, "pw"), "aes", "longer than 63 bytes"),
        (_cred("alice", ""), "aes", "is empty"),
        (_cred("alice", "a\nb"), "aes", "contains a newline"),
        (_cred("alice", "a\rb"), "aes", "contains a carriage return"),
        (_cred("alice", "a\0b"), "md5", "contains a NUL"),
        (_cred("alice", "p" * 80), "aes", "80 bytes; pgpool's AES entries hold at most 79"),
        (_cred("alice", "é" * 40), "aes", "80 bytes"),
        (_cred("alice", "p" * 125), "text", "TEXT entries hold at most 124"),
        (_cred("alice", "a\udcffb"), "aes", "not valid UTF-8"),
        (_cred("\udcff", "pw"), "md5", "not valid UTF-8"),
    ],
)
def test_a_bad_credential_is_skipped_with_an_error_naming_its_source(
    cred: Credential, fmt: str, message: str
) -> None:
    ok = _cred("bob", "fine", "secret ns/bob")
    outcome = _build(credentials=(cred, ok), password_format=fmt)
    assert outcome.state is not None
    assert [c.user for c in outcome.state.credentials] == ["bob"]
    assert len(outcome.errors) == 1
    assert str(outcome.errors[0].source) == "secret ns/s"
    assert message in outcome.errors[0].message


def test_error_text_never_contains_the_password() -> None:
    secret = "S3cr3t-" + "x" * 80
    outcome = _build(credentials=(_cred("alice", secret),))
    assert outcome.errors
    assert all(secret not in str(p) for p in outcome.problems)
    assert secret not in repr(_cred("alice", secret))


def test_long_passwords_are_fine_in_md5_format() -> None:
    outcome = _build(credentials=(_cred("alice", "p" * 200),), password_format="md5")
    assert outcome.errors == ()


@pytest.mark.parametrize("value", ["md5" + "0123456789abcdef" * 2, "SCRAM-SHA-256$4096:s$a:b"])
def test_an_already_hashed_value_is_skipped_with_a_warning(value: str) -> None:
    outcome = _build(credentials=(_cred("alice", value),))
    assert outcome.errors == ()
    assert len(outcome.warnings) == 1
    assert "already a hash" in outcome.warnings[0].message
    assert outcome.state is not None and outcome.state.credentials == ()


def test_the_same_user_with_the_same_password_from_two_sources_is_kept_once() -> None:
    outcome = _build(credentials=(_cred("a", "pw", "s1"), _cred("a", "pw", "s2")))
    assert outcome.problems == ()
    assert outcome.state is not None and len(outcome.state.credentials) == 1


def test_the_same_user_with_different_passwords_is_refused_from_both_sources() -> None:
    outcome = _build(
        credentials=(_cred("a", "pw1", "s1"), _cred("a", "pw2", "s2"), _cred("b", "pw", "s3"))
    )
    assert {str(p.source) for p in outcome.errors} == {"s1", "s2"}
    assert all("different passwords" in p.message for p in outcome.errors)
    assert outcome.state is not None
    assert [c.user for c in outcome.state.credentials] == ["b"]


def test_credentials_are_sorted_by_user() -> None:
    outcome = _build(credentials=(_cred("zed", "1", "s1"), _cred("amy", "2", "s2")))
    assert outcome.state is not None
    assert [c.user for c in outcome.state.credentials] == ["amy", "zed"]


def test_an_invalid_pool_hba_prevents_the_state() -> None:
    outcome = _build(hba_text="host all all 10.0.0.0/8 md5\nhots all all all md5\n")
    assert outcome.state is None
    assert str(outcome.errors[0].source) == "pool_hba.conf"
    assert "line 2" in outcome.errors[0].message


def test_a_pcp_user_with_a_colon_is_refused() -> None:
    outcome = _build(pcp_users=(_cred("a:b", "pw", "env PGPOOL_PCP_USER/PGPOOL_PCP_PASSWORD"),))
    assert outcome.state is None
    assert "PCP user name contains ':'" in str(outcome.errors[0])


def test_default_hba_follows_auth_method() -> None:
    state = _build(auth_method="md5").state
    assert state is not None
    assert state.hba_rules[-1].split() == ["host", "all", "all", "all", "md5"]


def test_a_pcp_user_that_would_become_a_comment_is_refused() -> None:
    outcome = _build(pcp_users=(_cred("#admin", "pw", "env PGPOOL_PCP_USER/PGPOOL_PCP_PASSWORD"),))
    assert outcome.state is None
    assert "starts with '#'" in str(outcome.errors[0])
