"""The pgpool2_on_k8s image's environment conventions, read once into one value (``ImageEnv``).

``PGPOOL_PARAMS_<NAME>=<value>`` → ``<name> = '<value>'``, or the mounted
``$PGPOOL_CONF_VOLUME/pgpool.conf`` instead; every ``X_USERNAME``/``X_PASSWORD`` pair (X is the
text before the first ``_``) → a pool_passwd user; ``PGPOOL_PCP_USER``/``PGPOOL_PCP_PASSWORD`` →
pcp.conf; ``PGPOOL_PASSWORD_ENCRYPTION_METHOD`` (scram-sha-256 | md5) and
``PGPOOL_SKIP_PASSWORD_ENCRYPTION`` → the auth method and entry format;
``PGPOOL_ENABLE_POOL_PASSWD``, ``PGPOOL_INSTALL_DIR``, ``PGPOOLKEYFILE``, ``POD_NAME``; a mounted
pool_hba.conf and TLS pair. settings.py turns this value and the flags into Settings; the flags'
defaults come from it (flags.py reads no file itself).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pgpoolsync.core import pgpoolconf
from pgpoolsync.core.model import Credential, Param, Problem, env_origin
from pgpoolsync.envflags import UsageError, truthy

PARAMS_PREFIX = "PGPOOL_PARAMS_"
_METHODS = ("scram-sha-256", "md5")


@dataclass(frozen=True)
class ImageEnv:
    """What the image's variables and mounts say, before any flag."""

    password_method: str = "scram-sha-256"  # PGPOOL_PASSWORD_ENCRYPTION_METHOD
    skip_encryption: bool = False  # PGPOOL_SKIP_PASSWORD_ENCRYPTION: entries are given verbatim
    install_dir: str | None = None  # PGPOOL_INSTALL_DIR: the config dir is its etc/
    config_volume: Path = Path("/config")  # PGPOOL_CONF_VOLUME
    mounted_hba: Path | None = None  # its pool_hba.conf, when mounted
    mounted_tls: Path | None = None  # its tls/ directory, when it holds tls.crt and tls.key
    pool_passwd: bool = True  # PGPOOL_ENABLE_POOL_PASSWD
    key_file: str | None = None  # PGPOOLKEYFILE
    pcp_user: str = ""  # PGPOOL_PCP_USER
    pcp_password: str = field(default="", repr=False)  # PGPOOL_PCP_PASSWORD
    pod_name: str | None = None  # POD_NAME (the downward API)
    # PGPOOL_PARAMS_*, or the mounted pgpool.conf's (some hold passwords: not in the repr)
    params: tuple[Param, ...] = field(default=(), repr=False)
    params_problems: tuple[Problem, ...] = ()  # in the mounted pgpool.conf: no state is built
    credentials: tuple[Credential | Problem, ...] = field(default=(), repr=False)
    warnings: tuple[Problem, ...] = ()
    # Refused before any flag is read: a value no flag can mend (every command).
    flag_errors: tuple[str, ...] = ()
    # Refused for render and run, the commands that read the pgpool parameters.
    param_errors: tuple[str, ...] = ()

    @property
    def default_format(self) -> str:
        """pool_passwd's entry format when --password-format is not given."""
        if self.skip_encryption:
            return "verbatim"
        return "md5" if self.password_method == "md5" else "aes"

    @property
    def default_auth_method(self) -> str:
        return "md5" if self.password_method == "md5" else "scram-sha-256"

    @property
    def default_config_dir(self) -> str:
        return f"{self.install_dir.rstrip('/')}/etc" if self.install_dir else "/etc/pgpool"


def read(environ: Mapping[str, str]) -> ImageEnv:
    """The conventions in ``environ`` and the config volume; never raises (errors are kept)."""
    method = environ.get("PGPOOL_PASSWORD_ENCRYPTION_METHOD", "scram-sha-256")
    flag_errors = []
    if method not in _METHODS:
        flag_errors.append(
            f"PGPOOL_PASSWORD_ENCRYPTION_METHOD={method!r}: must be scram-sha-256 (AES entries) "
            "or md5"
        )
    volume = Path(environ.get("PGPOOL_CONF_VOLUME") or "/config")
    tls_dir = volume / "tls"
    has_pair = (tls_dir / "tls.crt").is_file() and (tls_dir / "tls.key").is_file()
    creds, warnings = env_credentials(environ)
    param_errors: list[str] = []
    try:
        params, problems, ignored = mounted_params(volume, env_params(environ))
    except UsageError as exc:
        params, problems, ignored = [], [], []
        param_errors.append(str(exc))
    return ImageEnv(
        password_method=method,
        skip_encryption=truthy(environ.get("PGPOOL_SKIP_PASSWORD_ENCRYPTION", "false")),
        install_dir=environ.get("PGPOOL_INSTALL_DIR"),
        config_volume=volume,
        mounted_hba=volume / "pool_hba.conf" if (volume / "pool_hba.conf").is_file() else None,
        mounted_tls=tls_dir if has_pair else None,
        pool_passwd=truthy(environ.get("PGPOOL_ENABLE_POOL_PASSWD", "true")),
        key_file=environ.get("PGPOOLKEYFILE") or None,
        pcp_user=environ.get("PGPOOL_PCP_USER", ""),
        pcp_password=environ.get("PGPOOL_PCP_PASSWORD", ""),
        pod_name=environ.get("POD_NAME") or None,
        params=tuple(params),
        params_problems=tuple(problems),
        credentials=tuple(creds),
        warnings=(*warnings, *ignored),
        flag_errors=tuple(flag_errors),
        param_errors=tuple(param_errors),
    )


def env_params(environ: Mapping[str, str]) -> list[Param]:
    """``PGPOOL_PARAMS_<NAME>=<value>`` → ``<name> = '<value>'`` (environ splits at the first =).
    Two variables naming the same parameter in different case are refused (UsageError)."""
    out: dict[str, Param] = {}
    for key, value in sorted(environ.items()):
        if not key.startswith(PARAMS_PREFIX) or len(key) <= len(PARAMS_PREFIX):
            continue
        name = key[len(PARAMS_PREFIX) :].lower()
        if name in out:
            raise UsageError(
                f"{out[name].source.name} and {key} both set {name}: ambiguous, keep one"
            )
        out[name] = Param(name=name, value=value, source=env_origin(key))
    return list(out.values())


def mounted_params(
    volume: Path, params: list[Param]
) -> tuple[list[Param], list[Problem], list[Problem]]:
    """A pgpool.conf in the config volume is used instead of ``PGPOOL_PARAMS_*`` (as the image
    does): (parameters, problems in the file, a warning naming the variables ignored)."""
    path = volume / "pgpool.conf"
    if not path.is_file():
        return params, [], []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: {exc}") from None
    found, problems = pgpoolconf.parse(text, path=str(path))
    warnings = []
    if params:
        names = sorted(str(p.source.name) for p in params)
        warnings.append(
            Problem(
                env_origin(*names),
                f"ignored: the mounted {path} is used instead, as the pgpool2_on_k8s image does",
                fatal=False,
            )
        )
    return found, problems, warnings


def env_credentials(environ: Mapping[str, str]) -> tuple[list[Credential | Problem], list[Problem]]:
    """Every ``X_USERNAME``/``X_PASSWORD`` pair, X being the text before the first ``_``."""
    prefixes = sorted(
        {
            key.split("_", 1)[0]
            for key, value in environ.items()
            if key.endswith("_USERNAME") and value and "_" in key
        }
    )
    out: list[Credential | Problem] = []
    warnings: list[Problem] = []
    for prefix in prefixes:
        user_var, pass_var = f"{prefix}_USERNAME", f"{prefix}_PASSWORD"
        if not prefix or user_var not in environ:
            continue
        if pass_var not in environ:
            warnings.append(
                Problem(env_origin(user_var), f"{pass_var} is not set: user skipped", fatal=False)
            )
            continue
        out.append(
            Credential(
                user=environ[user_var],
                password=environ[pass_var],
                source=env_origin(user_var, pass_var),
            )
        )
    return out, warnings


# pgpool reads its parameters from pgpool.conf, never from PGPOOL_PARAMS_*, and the exporter's
# DATA_SOURCE_NAME/_URI may carry a password in the URI: none of them goes on.
_SECRET_ENV = re.compile(r"(PASSWORD|PASS|SECRET|TOKEN|KEY)$|^PGPOOL_PARAMS_|^DATA_SOURCE_", re.I)


def scrubbed_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment for a command exec'd after render: no password (``X_PASSWORD``,
    ``PGPOOL_PCP_PASSWORD``, ``DATA_SOURCE_*``), no ``PGPOOL_PARAMS_*`` (some hold passwords or
    a command: ``ssl_passphrase_command``), ..."""
    return {k: v for k, v in environ.items() if not _SECRET_ENV.search(k)}
