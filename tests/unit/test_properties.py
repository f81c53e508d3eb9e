"""Property: no input, however hostile, can add a line to any rendered file."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pgpoolsync.core import build, model, passwd, pgpoolconf, render
from pgpoolsync.core.model import Backend, Credential, Inputs, Param
from tests.origins import src

# Text biased towards the characters that break config files.
nasty = st.text(
    alphabet=st.one_of(st.sampled_from("\n\r\0'\"\\:#= \t$`;"), st.characters()), max_size=40
)
names = st.one_of(st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True), nasty)


@settings(max_examples=300, deadline=None)
@given(
    creds=st.lists(st.tuples(nasty, nasty), max_size=6),
    params=st.lists(st.tuples(names, nasty), max_size=6),
    pcp=st.tuples(nasty, nasty),
    host=nasty,
    fmt=st.sampled_from(["aes", "md5", "text", "verbatim"]),
    previous=st.dictionaries(nasty, nasty, max_size=4),
    conf_text=st.lists(st.tuples(names, nasty), max_size=4),
)
def test_no_input_adds_a_line_to_any_rendered_file(
    creds: list[tuple[str, str]],
    params: list[tuple[str, str]],
    pcp: tuple[str, str],
    host: str,
    fmt: str,
    previous: dict[str, str],
    conf_text: list[tuple[str, str]],
) -> None:
    """Also: entries kept from a previous pool_passwd (parsed back from what this renders)
    and parameters read from a mounted pgpool.conf (PGPOOL_CONF_VOLUME)."""
    mounted, _ = pgpoolconf.parse(
        "\n".join(f"{n} = '{v}'" for n, v in conf_text), path="/config/pgpool.conf"
    )
    old = passwd.parse_pool_passwd(
        "\n".join(passwd.pool_passwd_line(u, e) for u, e in previous.items())
    )
    inputs = Inputs(
        backends=(Backend(host, 5432, model.PRIMARY_FLAG),),
        params=(
            *(Param(n, v, src(f"env {i}")) for i, (n, v) in enumerate(params)),
            *mounted,
        ),
        previous_entries=old,
        credentials=tuple(Credential(u, p, src(f"secret {i}")) for i, (u, p) in enumerate(creds)),
        pcp_users=(Credential(pcp[0], pcp[1], src("env pcp")),),
        password_format=fmt,
    )
    outcome = build.build(inputs)
    if outcome.state is None:
        return
    state = outcome.state
    files = render.render(state, pool_key=b"k")
    passwd_lines = files["pool_passwd"].split("\n")
    assert passwd_lines[-1] == ""
    assert len(passwd_lines) - 1 == len(state.credentials) + len(state.kept_entries)
    conf = [ln for ln in files["pgpool.conf"].split("\n")[:-1] if not ln.startswith("#")]
    assert len(conf) == len(state.params)
    for line, (name, value) in zip(conf, state.params, strict=True):
        assert line == f"{name} = '{value}'"
        assert value.count("'") == 0
    pcp_lines = [ln for ln in files["pcp.conf"].split("\n")[:-1] if not ln.startswith("#")]
    assert len(pcp_lines) == len(state.pcp_users)
    for text in files.values():
        assert "\r" not in text and "\0" not in text
