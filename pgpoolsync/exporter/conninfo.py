"""Where the exporter connects, from pgpool2_exporter's environment, and what logs may say of it.

Owns ``DATA_SOURCE_NAME`` / ``DATA_SOURCE_URI`` / ``DATA_SOURCE_USER`` / ``DATA_SOURCE_PASS``
(the password is kept out of the conninfo when given apart), masking a conninfo for logs, and
the one-line reason a connection failed.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote


def reason(exc: BaseException) -> str:
    """Why a connection failed, from the driver's message ("Connection refused", "password
    authentication failed for user ..."): libpq never puts the password in it; a conninfo it
    might echo is masked all the same."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = lines[0] if lines else type(exc).__name__
    return mask(text)[:300]


def conninfo_from_env(
    environ: dict[str, str] | Any, *, uri: str | None, user: str | None
) -> tuple[str, str | None]:
    """pgpool2_exporter's conventions: DATA_SOURCE_NAME, else DATA_SOURCE_URI/USER/PASS.

    Returns (conninfo, password); the password is kept out of the conninfo when separate.
    """
    dsn = environ.get("DATA_SOURCE_NAME")
    if dsn and not uri:
        return dsn, None
    uri = uri or environ.get("DATA_SOURCE_URI") or "127.0.0.1:9999/postgres?sslmode=disable"
    user = user or environ.get("DATA_SOURCE_USER") or "postgres"
    password = environ.get("DATA_SOURCE_PASS")
    prefix = "" if uri.startswith(("postgres://", "postgresql://")) else "postgresql://"
    if prefix:
        return f"postgresql://{quote(user, safe='')}@{uri}", password
    return uri, password


def mask(conninfo: str) -> str:
    """A conninfo (URL or key=value) with any password replaced, for logs."""
    text = re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", conninfo)
    return re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1***", text)
