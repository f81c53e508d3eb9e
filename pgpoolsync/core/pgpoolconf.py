"""Reading a pgpool.conf someone else wrote (the config volume of the pgpool2_on_k8s image) into
parameters, so that it takes the place of ``PGPOOL_PARAMS_*`` as it does in the image. Pure.

The syntax is pgpool's (src/config/pool_config_l.l): ``name = value`` (the ``=`` may be left
out), a value quoted with ``'`` (``''`` or ``\\'`` inside it) or bare, ``#`` to the end of the
line a comment. A line that is none of these is a problem naming the file and line: pgpool would
refuse to start on it.
"""

from __future__ import annotations

import re

from pgpoolsync.core.model import Origin, Param, Problem

_LINE = re.compile(
    r"""^(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*=?\s*
        (?:'(?P<quoted>(?:[^'\\\n]|\\.|'')*)'|(?P<bare>[^\s#']+))
        \s*(?:\#.*)?$""",
    re.VERBOSE,
)
_ESCAPE = re.compile(r"\\(.)|''")


def _unquote(text: str) -> str:
    return _ESCAPE.sub(lambda m: m.group(1) if m.group(1) is not None else "'", text)


def parse(text: str, *, path: str) -> tuple[list[Param], list[Problem]]:
    """Parameters in file order (a later line overrides an earlier one), and the lines that are
    not ``name = value``."""
    params: list[Param] = []
    problems: list[Problem] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = Origin("file", f"{path}:{number}")
        m = _LINE.match(line)
        if m is None:
            problems.append(Problem(where, "not a 'name = value' line"))
            continue
        quoted = m.group("quoted")
        value = _unquote(quoted) if quoted is not None else m.group("bare")
        params.append(Param(m.group("name").lower(), value, where))
    return params, problems
