"""Where the binaries under test are, and running PostgreSQL's as the ``postgres`` user.

Debian's packages provide them (``/usr/lib/postgresql/<v>/bin``, ``/usr/sbin/pgpool``);
PostgreSQL refuses to run as root, so when we are root its processes run as ``postgres``
(``runuser``). Children get a clean environment: no PG*/PGPOOL* variable, no secret.
"""

from __future__ import annotations

import functools
import glob
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path


def pg_bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql)")
    return Path(found[-1]).parent


def pgpoolsync_exe() -> str:
    """The ``pgpoolsync`` console script of the running interpreter's environment."""
    return str(Path(sys.executable).parent / "pgpoolsync")


def pgpool_binary() -> str:
    found = shutil.which("pgpool") or (
        "/usr/sbin/pgpool" if Path("/usr/sbin/pgpool").exists() else None
    )
    if not found:
        raise RuntimeError("pgpool not found (apt-get install pgpool2)")
    return found


@functools.cache
def pgpool_version() -> str:
    """The version of the pgpool under test, e.g. ``4.3.5`` (``pgpool --version`` prints
    ``pgpool-II version 4.3.5 (tamahomeboshi)`` on stderr)."""
    got = subprocess.run(
        [pgpool_binary(), "--version"], capture_output=True, text=True, check=False
    )
    words = (got.stdout + got.stderr).split()
    return words[words.index("version") + 1] if "version" in words else "?"


def as_postgres() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def chown_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(path, pw.pw_uid, pw.pw_gid)


def clean_env() -> dict[str, str]:
    """Child environment with no PG*/PGPOOL* variables leaking in (nor secrets)."""
    keep = ("PATH", "LANG", "LC_ALL", "HOME", "TZ")
    return {k: v for k, v in os.environ.items() if k in keep}
