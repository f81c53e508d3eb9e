"""DesiredState → the text of pgpool's four files.

Owns the templates (jinja2, StrictUndefined) and the choice of pool_passwd encoding. Every value
passes the ``line`` filter, which refuses a newline, carriage return or NUL: whatever reached this
point, a value can never add a line to a rendered file. Pure: the pool key is handed in.
"""

from __future__ import annotations

from jinja2 import Environment, PackageLoader, StrictUndefined

from pgpoolsync.core import passwd, tls
from pgpoolsync.core.model import DesiredState

PGPOOL_CONF = "pgpool.conf"
POOL_HBA = "pool_hba.conf"
POOL_PASSWD = "pool_passwd"
PCP_CONF = "pcp.conf"
TLS_FILES = (tls.CERT_FILE, tls.KEY_FILE, tls.CA_FILE)
FILES = (POOL_PASSWD, PCP_CONF, *TLS_FILES, POOL_HBA, PGPOOL_CONF)
# Files holding secrets (or hashes of them) are written 0600. pgpool.conf may hold
# sr_check_password, health_check_password, ... (PGPOOL_PARAMS_*), so it is one of them.
SECRET_FILES = frozenset({POOL_PASSWD, PCP_CONF, tls.KEY_FILE, PGPOOL_CONF})


class UnsafeValue(ValueError):
    """A value would have broken a line; model validation should have caught it first."""


def _line(value: object) -> str:
    text = str(value)
    if "\n" in text or "\r" in text or "\0" in text:
        raise UnsafeValue("a value contains a line break or NUL and was not rendered")
    return text


_ENV = Environment(
    loader=PackageLoader("pgpoolsync.core", "templates"),
    undefined=StrictUndefined,
    autoescape=False,  # noqa: S701 - these are config files, not HTML
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
)
_ENV.filters["line"] = _line


_ENCODERS: dict[bytes, passwd.AesEncoder] = {}


def _encoder(pool_key: bytes) -> passwd.AesEncoder:
    """One encoder per pool key (pgpool has exactly one), so its memo survives between renders."""
    encoder = _ENCODERS.get(pool_key)
    if encoder is None:
        _ENCODERS.clear()
        encoder = _ENCODERS[pool_key] = passwd.AesEncoder(pool_key)
    return encoder


def pool_passwd_entries(state: DesiredState, *, pool_key: bytes | None) -> list[str]:
    """Every user's line, sorted by user: the credentials' entries and the kept ones."""
    lines = _credential_entries(state, pool_key=pool_key)
    if not state.kept_entries:
        return lines
    users = [c.user for c in state.credentials]
    kept = [(u, passwd.pool_passwd_line(u, secret)) for u, secret in state.kept_entries]
    return [line for _, line in sorted([*zip(users, lines, strict=True), *kept])]


def _credential_entries(state: DesiredState, *, pool_key: bytes | None) -> list[str]:
    if state.password_format == "aes":
        if pool_key is None:
            raise ValueError("AES pool_passwd entries need the pool key")
        encoder = _encoder(pool_key)
        return [
            passwd.pool_passwd_line(c.user, encoder.entry(c.password)) for c in state.credentials
        ]
    if state.password_format == "md5":
        return [
            passwd.pool_passwd_line(c.user, passwd.md5_entry(c.user, c.password))
            for c in state.credentials
        ]
    if state.password_format == "verbatim":
        return [passwd.pool_passwd_line(c.user, c.password) for c in state.credentials]
    return [
        passwd.pool_passwd_line(c.user, passwd.text_entry(c.password)) for c in state.credentials
    ]


def render(state: DesiredState, *, pool_key: bytes | None) -> dict[str, str]:
    """pgpool's files by name, in the order they should be written (pgpool.conf last)."""
    files = {
        POOL_PASSWD: _ENV.get_template("pool_passwd.j2").render(
            entries=pool_passwd_entries(state, pool_key=pool_key)
        ),
        PCP_CONF: _ENV.get_template("pcp.conf.j2").render(
            entries=[
                passwd.pcp_verbatim_line(u.user, u.password)
                if state.password_format == "verbatim"
                else passwd.pcp_line(u.user, u.password)
                for u in state.pcp_users
            ]
        ),
    }
    if state.tls is not None:
        files[tls.CERT_FILE] = state.tls.cert_pem.decode()
        files[tls.KEY_FILE] = state.tls.key_pem.decode()
        if state.tls.ca_pem:
            files[tls.CA_FILE] = state.tls.ca_pem.decode()
    files[POOL_HBA] = _ENV.get_template("pool_hba.conf.j2").render(rules=state.hba_rules)
    files[PGPOOL_CONF] = _ENV.get_template("pgpool.conf.j2").render(params=state.params)
    return files
