"""The rules a credential must pass before it reaches pool_passwd or pcp.conf: a user name and
password each file can hold, in the format asked for, and one password per user. Each refusal is
a ``Problem`` naming the Secret (or variable) and never quoting the password.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from pgpoolsync.core import passwd, values
from pgpoolsync.core.model import Credential, Problem


@functools.lru_cache(maxsize=65536)
def check_credential(cred: Credential, *, password_format: str) -> Problem | None:
    """Why this credential cannot go into pool_passwd, or None. Never quotes the password.

    Memoised: an unchanged credential is not validated again on every pass.
    """
    src = cred.source
    if not cred.user:
        return Problem(src, "user name is empty")
    bad = values.forbidden_char(cred.user)
    if bad:
        return Problem(src, f"user name contains {bad}")
    if len(cred.user.encode()) > passwd.MAX_USER_BYTES:
        return Problem(src, f"user name {cred.user!r} is longer than {passwd.MAX_USER_BYTES} bytes")
    if not cred.password:
        return Problem(src, f"password of user {cred.user!r} is empty")
    bad = values.forbidden_char(cred.password)
    if bad:
        return Problem(src, f"password of user {cred.user!r} contains {bad}")
    if password_format == "verbatim":
        if not passwd.is_entry(cred.password):
            return Problem(
                src,
                f"value of user {cred.user!r} is not a pool_passwd entry (md5 + 32 hex digits, "
                "AES + base64, or TEXT + password), as PGPOOL_SKIP_PASSWORD_ENCRYPTION=true "
                "(--password-format verbatim) needs",
            )
        return None
    if passwd.looks_hashed(cred.password):
        return Problem(
            src,
            f"password of user {cred.user!r} is already a hash (md5/SCRAM), not a password; "
            "pgpool needs the clear password: user skipped",
            fatal=False,
        )
    size = len(cred.password.encode())
    if password_format == "aes" and size > passwd.MAX_AES_PASSWORD_BYTES:
        return Problem(
            src,
            f"password of user {cred.user!r} is {size} bytes; pgpool's AES entries hold at "
            f"most {passwd.MAX_AES_PASSWORD_BYTES}",
        )
    if password_format == "text" and size > passwd.MAX_TEXT_PASSWORD_BYTES:
        return Problem(
            src,
            f"password of user {cred.user!r} is {size} bytes; pgpool's TEXT entries hold at "
            f"most {passwd.MAX_TEXT_PASSWORD_BYTES}",
        )
    return None


def check_pcp_user(cred: Credential) -> Problem | None:
    if not cred.user or not cred.password:
        return Problem(cred.source, "PCP user name and password must both be set")
    for value, what in ((cred.user, "PCP user name"), (cred.password, "PCP password")):
        bad = values.forbidden_char(value)
        if bad:
            return Problem(cred.source, f"{what} contains {bad}")
    if ":" in cred.user:
        return Problem(cred.source, "PCP user name contains ':'")
    if cred.user.startswith("#") or cred.user != cred.user.strip():
        # pcp.conf treats a line starting with '#' as a comment: the user would vanish.
        return Problem(cred.source, "PCP user name starts with '#' or has surrounding spaces")
    return None


def dedupe_credentials(creds: Iterable[Credential]) -> tuple[list[Credential], list[Problem]]:
    """One entry per user; the same user with two different passwords is refused."""
    by_user: dict[str, list[Credential]] = {}
    for cred in creds:
        by_user.setdefault(cred.user, []).append(cred)
    kept: list[Credential] = []
    problems: list[Problem] = []
    for user in sorted(by_user):
        group = by_user[user]
        if len({c.password for c in group}) > 1:
            sources = ", ".join(str(c.source) for c in group)
            problems.extend(
                Problem(c.source, f"user {user!r} has different passwords in {sources}: skipped")
                for c in group
            )
            continue
        kept.append(group[0])
    return kept, problems
