"""Building the desired state from the sources' inputs: ``build``, in named steps.

Each step validates one part and returns what it kept with the problems it found: the settings
(formats, methods), pgpool.conf's parameters (``params.py``'s rules), pool_hba.conf's rules,
the PCP users and the pool_passwd credentials (``credentials.py``'s rules), and the nodes to
mirror. Credential problems drop that credential only; any other fatal problem prevents a state
so that the last good files stay in place.
"""

from __future__ import annotations

from collections.abc import Sequence

from pgpoolsync.core import credentials, hba, params, passwd, values, versions
from pgpoolsync.core.model import (
    DEFAULT_ORIGIN,
    Backend,
    Credential,
    DesiredState,
    Inputs,
    NodeTarget,
    Origin,
    Outcome,
    Param,
    Problem,
    env_origin,
    flag_origin,
)

_HBA_FILE = Origin("file", "pool_hba.conf")


def build(inputs: Inputs) -> Outcome:
    """Validate everything and build the desired state.

    Credential problems drop that credential only; parameter, pool_hba or PCP problems prevent a
    state (``state`` is None) so that the last good files stay in place.
    """
    problems = [*inputs.problems, *setting_problems(inputs)]
    if any(p.fatal for p in problems):
        return Outcome(None, tuple(problems))
    conf, param_problems = conf_params(inputs)
    problems += param_problems
    if conf is None:
        return Outcome(None, tuple(problems))
    ssl = any(p.name == "ssl" and values.boolean(p.value) for p in conf)
    rules, hba_problems = hba_rules(inputs, ssl=ssl)
    pcp_users, pcp_problems = valid_pcp_users(inputs)
    creds, kept, cred_problems = pool_passwd_credentials(inputs)
    problems += [*hba_problems, *pcp_problems, *cred_problems]
    problems += params.check_monitoring_users(conf, (c.user for c in creds))
    credential_sources = {c.source for c in inputs.credentials}
    if any(p.fatal and p.source not in credential_sources for p in problems):
        return Outcome(None, tuple(problems))
    state = DesiredState(
        params=tuple((p.name, p.value) for p in conf),
        credentials=tuple(creds),
        password_format=inputs.password_format,
        hba_rules=tuple(rules),
        pcp_users=tuple(pcp_users),
        tls=inputs.tls,
        kept_entries=kept,
        nodes=node_targets(inputs.backends),
    )
    return Outcome(state, tuple(problems))


def setting_problems(inputs: Inputs) -> list[Problem]:
    """The choices every other step depends on: the password format, the auth method, and
    PGPOOL_ENABLE_POOL_PASSWD=false only over TLS."""
    problems: list[Problem] = []
    if inputs.password_format not in passwd.FORMATS:
        problems.append(
            Problem(flag_origin("--password-format"), f"unknown format {inputs.password_format!r}")
        )
    if not inputs.pool_passwd and inputs.tls is None:
        problems.append(
            Problem(
                env_origin("PGPOOL_ENABLE_POOL_PASSWD"),
                "false sends clients' passwords in clear text: it needs TLS (--tls auto or "
                "secret, not off)",
            )
        )
    if inputs.pool_passwd and inputs.auth_method not in hba.AUTH_METHODS:
        problems.append(
            Problem(flag_origin("--auth-method"), f"unknown method {inputs.auth_method!r}")
        )
    return problems


def conf_params(inputs: Inputs) -> tuple[list[Param] | None, list[Problem]]:
    """pgpool.conf's parameters: defaults, then backends, TLS and the given ones, as the target
    version reads them; None when the version is not one the files are written for."""
    defaults = [Param(n, v, DEFAULT_ORIGIN) for n, v in params.DEFAULT_PARAMS]
    conf, problems = params.merge_params(
        [defaults, params.backend_params(inputs.backends), params.tls_params(inputs), inputs.params]
    )
    if inputs.pgpool_version not in versions.PGPOOL_VERSIONS:
        problems.append(
            Problem(
                flag_origin("--pgpool-version"),
                f"unsupported version {inputs.pgpool_version!r} "
                f"(supported: {', '.join(versions.PGPOOL_VERSIONS)})",
            )
        )
        return None, problems
    conf, version_problems = params.version_params(conf, version=inputs.pgpool_version)
    problems += version_problems
    conf += params.backend_defaults(conf)
    if not any(p.name == "backend_hostname0" for p in conf):
        problems.append(
            Problem(
                flag_origin("--primary-host"),
                "no primary backend (backend_hostname0) is configured",
            )
        )
    return conf, problems


def hba_rules(inputs: Inputs, *, ssl: bool) -> tuple[list[str], list[Problem]]:
    """pool_hba.conf's rules: the given file's, checked, or the defaults for the auth method."""
    if inputs.hba_text is None:
        method = inputs.auth_method if inputs.pool_passwd else hba.PASSWORD_OVER_TLS
        rules = hba.default_rules(auth_method=method, tls=ssl, tls_required=inputs.tls_required)
        return list(rules), []
    problems = [Problem(_HBA_FILE, e) for e in hba.validate(inputs.hba_text, ssl=ssl)]
    rules = list(hba.rules_from_text(inputs.hba_text))
    if not inputs.pool_passwd and not any(r.split()[:1] == ["hostssl"] for r in rules):
        problems.append(
            Problem(
                _HBA_FILE,
                "with PGPOOL_ENABLE_POOL_PASSWD=false clients send clear-text passwords: "
                "add hostssl lines to secure all connections",
            )
        )
    return rules, problems


def valid_pcp_users(inputs: Inputs) -> tuple[list[Credential], list[Problem]]:
    """pcp.conf's users that pass; with the verbatim format their passwords are md5 digests."""
    users: list[Credential] = []
    problems: list[Problem] = []
    for pcp in inputs.pcp_users:
        problem = credentials.check_pcp_user(pcp)
        verbatim = inputs.password_format == "verbatim"
        if problem is None and verbatim and not passwd.is_md5_hex(pcp.password):
            problem = Problem(
                pcp.source,
                "PCP password is not an md5 hex digest (32 hex digits), as "
                "PGPOOL_SKIP_PASSWORD_ENCRYPTION=true needs",
            )
        if problem:
            problems.append(problem)
        else:
            users.append(pcp)
    return users, problems


def pool_passwd_credentials(
    inputs: Inputs,
) -> tuple[list[Credential], tuple[tuple[str, str], ...], list[Problem]]:
    """pool_passwd's credentials that pass, one per user, and the last good entry kept for each
    user whose credential is bad now (a broken rotation never locks the role out)."""
    valid: list[Credential] = []
    problems: list[Problem] = []
    for item in inputs.credentials if inputs.pool_passwd else ():
        if isinstance(item, Problem):
            problems.append(item)
            continue
        problem = credentials.check_credential(item, password_format=inputs.password_format)
        if problem:
            problems.append(problem)
        else:
            valid.append(item)
    creds, dup_problems = credentials.dedupe_credentials(valid)
    problems += dup_problems
    kept = _kept_entries(inputs, written={c.user for c in creds})
    problems += [
        Problem(
            Origin("file", "pool_passwd"),
            f"user {user!r} keeps its entry from the last good pool_passwd",
            fatal=False,
        )
        for user, _ in kept
    ]
    return creds, kept, problems


def _kept_entries(inputs: Inputs, *, written: set[str]) -> tuple[tuple[str, str], ...]:
    bad_users = {
        item.user
        for item in inputs.credentials
        if isinstance(item, Credential) and item.user not in written
    }
    return tuple(
        (user, inputs.previous_entries[user])
        for user in sorted(bad_users)
        if user in inputs.previous_entries
    )


def node_targets(backends: Sequence[Backend]) -> tuple[NodeTarget, ...]:
    """The nodes to mirror: each backend whose Service's ready endpoints were observed."""
    return tuple(
        NodeTarget(i, b.ready, b.source or Origin("backend", str(i)), "ALWAYS_PRIMARY" in b.flag)
        for i, b in enumerate(backends)
        if b.ready is not None
    )
