"""pool_hba.conf: the default rules and validation of user-supplied ones.

pgpool rejects a pool_hba.conf with any bad line as a whole, keeping the old rules; a file that
pgpool would reject must therefore never be written. The checks follow pgpool's own parser
(src/auth/pool_hba.c): connection type, database, role, address (for host types), method, and
``name=value`` options. Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
import re

CONNECTION_TYPES = frozenset({"local", "host", "hostssl", "hostnossl"})
METHODS = frozenset({"trust", "reject", "md5", "password", "scram-sha-256", "pam", "ldap", "cert"})
AUTH_METHODS = ("scram-sha-256", "md5")
# Clear-text password from the client, checked by the backend: only over TLS, and only when
# pool_passwd is off (PGPOOL_ENABLE_POOL_PASSWD=false, as pgpool2_on_k8s does then).
PASSWORD_OVER_TLS = "password"
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^\.?{_LABEL}(\.{_LABEL})*$")
_TOKEN = re.compile(r'"[^"]*"|[^\s"]+')


def default_rules(*, auth_method: str, tls: bool = False, tls_required: bool = False) -> list[str]:
    """What pgpool2_on_k8s writes: local trust, then every host by the password method."""
    if auth_method == PASSWORD_OVER_TLS:
        return ["local   all   all   trust", f"hostssl all   all   all   {auth_method}"]
    if auth_method not in AUTH_METHODS:
        raise ValueError(f"unknown auth method {auth_method!r}")
    lines = ["local   all   all   trust"]
    if tls:
        lines.append(f"hostssl all   all   all   {auth_method}")
    if not (tls and tls_required):
        lines.append(f"host    all   all   all   {auth_method}")
    return lines


def _tokens(line: str) -> list[str] | None:
    """Split a line into tokens; None when quoting is unbalanced."""
    tokens: list[str] = []
    pos = 0
    for match in _TOKEN.finditer(line):
        gap = line[pos : match.start()]
        if gap.strip():
            return None
        tokens.append(match.group(0))
        pos = match.end()
    if line[pos:].strip():
        return None
    return tokens


def _check_address(tokens: list[str]) -> tuple[str | None, int]:
    """Check the address (and netmask) tokens; return (error, number of tokens used)."""
    addr = tokens[0]
    if addr in ("all", "samehost", "samenet"):
        return None, 1
    host, _, mask = addr.partition("/")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if mask:
            return f'specifying both host name and CIDR mask is invalid: "{addr}"', 1
        if not _HOSTNAME.match(host):
            return f'invalid IP address "{addr}"', 1
        return None, 1
    if mask:
        if not mask.isdigit() or int(mask) > ip.max_prefixlen:
            return f'invalid CIDR mask in address "{addr}"', 1
        return None, 1
    # An IP address without a CIDR suffix needs a netmask token.
    if len(tokens) < 2:
        return "end-of-line before netmask specification", 1
    try:
        netmask = ipaddress.ip_address(tokens[1])
    except ValueError:
        return f'invalid IP mask "{tokens[1]}"', 2
    if netmask.version != ip.version:
        return "IP address and mask do not match", 2
    return None, 2


def check_line(line: str, *, ssl: bool) -> str | None:
    """Return why pgpool would reject this (non-comment) line, or None when it is valid."""
    tokens = _tokens(line)
    if tokens is None:
        return "unbalanced double quotes"
    conn = tokens[0]
    if conn not in CONNECTION_TYPES:
        return f'invalid connection type "{conn}"'
    if conn == "hostssl" and not ssl:
        return "hostssl record cannot match because SSL is disabled (ssl = off)"
    rest = tokens[1:]
    if not rest:
        return "end-of-line before database specification"
    rest = rest[1:]
    if not rest:
        return "end-of-line before role specification"
    rest = rest[1:]
    if conn != "local":
        if not rest:
            return "end-of-line before IP address specification"
        error, used = _check_address(rest)
        if error:
            return error
        rest = rest[used:]
    if not rest:
        return "end-of-line before authentication method"
    method = rest[0]
    if method not in METHODS:
        return f'invalid authentication method "{method}"'
    if method == "cert" and conn not in ("hostssl",):
        return "cert authentication is only supported on hostssl connections"
    for option in rest[1:]:
        name, eq, _ = option.partition("=")
        if not eq or not name:
            return f'authentication option not in name=value format: "{option}"'
    return None


def validate(text: str, *, ssl: bool) -> list[str]:
    """All problems in a pool_hba.conf text, each as ``line N: problem``."""
    problems: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if "\0" in raw or "\r" in raw:
            problems.append(f"line {number}: contains a NUL or carriage return")
            continue
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        error = check_line(line, ssl=ssl)
        if error:
            problems.append(f"line {number}: {error}")
    return problems


def rules_from_text(text: str) -> list[str]:
    """The non-empty, non-comment lines of a pool_hba.conf, as written by the user."""
    return [raw.rstrip() for raw in text.splitlines() if raw.split("#", 1)[0].strip()]
