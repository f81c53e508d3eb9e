"""Rendering DesiredState into pgpool's four files."""

from __future__ import annotations

import pytest

from pgpoolsync.core import build, model, passwd, render
from pgpoolsync.core.model import Backend, Credential, DesiredState, Inputs
from tests.origins import src

KEY = b"big secret"


def _state(fmt: str = "aes", **kw: object) -> DesiredState:
    inputs = Inputs(
        backends=(Backend("p", 5432, model.PRIMARY_FLAG), Backend("r", 5433, model.REPLICA_FLAG)),
        credentials=(Credential("dev", "dev", src("s1")), Credential("c:l", "a:b\\c", src("s2"))),
        pcp_users=(Credential("pcpadmin", "pcppw", src("env")),),
        password_format=fmt,
        **kw,  # type: ignore[arg-type]
    )
    state = build.build(inputs).state
    assert state is not None
    return state


def test_pool_passwd_has_one_escaped_aes_line_per_user() -> None:
    files = render.render(_state(), pool_key=KEY)
    enc = passwd.AesEncoder(KEY)
    assert files["pool_passwd"] == (
        f"c\\:l:{enc.entry('a:b' + chr(92) + 'c')}\ndev:AESr+9xCFIYnHH+OodrKozLlQ==\n"
    )


def test_md5_and_text_formats() -> None:
    md5 = render.render(_state("md5"), pool_key=None)["pool_passwd"].splitlines()
    assert md5[1] == "dev:" + passwd.md5_entry("dev", "dev")
    text = render.render(_state("text"), pool_key=None)["pool_passwd"].splitlines()
    assert text == ["c\\:l:TEXTa\\:b\\\\c", "dev:TEXTdev"]


def test_aes_without_a_key_is_refused() -> None:
    with pytest.raises(ValueError, match="pool key"):
        render.render(_state(), pool_key=None)


def test_pgpool_conf_quotes_every_value_once_per_line() -> None:
    conf = render.render(_state(), pool_key=KEY)["pgpool.conf"]
    lines = [ln for ln in conf.splitlines() if not ln.startswith("#")]
    assert "backend_hostname1 = 'r'" in lines
    assert "backend_port1 = '5433'" in lines
    assert "backend_flag0 = 'ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER'" in lines
    assert len(lines) == len(_state().params)


def test_pcp_conf_has_the_md5_of_the_pcp_password() -> None:
    pcp = render.render(_state(), pool_key=KEY)["pcp.conf"]
    assert passwd.pcp_line("pcpadmin", "pcppw") in pcp.splitlines()
    assert "pcppw" not in pcp


def test_a_line_break_that_slipped_past_validation_is_still_refused() -> None:
    state = DesiredState(
        params=(("port", "1\nssl = on"),),
        credentials=(),
        password_format="aes",
        hba_rules=(),
        pcp_users=(),
    )
    with pytest.raises(render.UnsafeValue) as info:
        render.render(state, pool_key=KEY)
    assert "ssl" not in str(info.value)


def test_rendering_is_deterministic() -> None:
    assert render.render(_state(), pool_key=KEY) == render.render(_state(), pool_key=KEY)
