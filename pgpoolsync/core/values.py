"""What pgpool makes of a parameter's value and name: its booleans, which names hold a secret,
and which characters no value may hold (each would end a line of a file). A leaf of the core
(imports nothing), so every module that reads a value or shows one asks here.
"""

from __future__ import annotations

import re

# pgpool's booleans (src/config/pool_config_variables.c, parse_bool), in any case.
_TRUE = frozenset({"on", "true", "yes", "1"})
_FALSE = frozenset({"off", "false", "no", "0"})
_SENSITIVE = re.compile(r"password|secret|passphrase|key", re.IGNORECASE)
_FORBIDDEN = {"\n": "a newline", "\r": "a carriage return", "\0": "a NUL byte"}


def boolean(value: str) -> bool | None:
    """pgpool's reading of a boolean value; None when it is not one."""
    v = value.strip().lower()
    return True if v in _TRUE else False if v in _FALSE else None


def sensitive(name: str) -> bool:
    """A parameter whose value is never shown or digested (``*_password``, ``ssl_key``,
    ``ssl_passphrase_command``, …)."""
    return _SENSITIVE.search(name) is not None


def forbidden_char(value: str) -> str | None:
    """What in ``value`` no line of pgpool's files can hold (a newline, a NUL, …), or None."""
    for char, name in _FORBIDDEN.items():
        if char in value:
            return name
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # os.environ carries undecodable bytes as lone surrogates.
        return "bytes that are not valid UTF-8"
    return None
