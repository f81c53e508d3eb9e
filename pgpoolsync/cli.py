"""``pgpoolsync`` command line: parse, wire the parts together, map outcomes to exit codes."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, Sequence

from pgpoolsync import logsetup, reconcile
from pgpoolsync.dirsource import SecretsDirError, read_secrets_dir
from pgpoolsync.settings import Common, UsageError, parse
from pgpoolsync.writer import KeyFileError

log = logging.getLogger("pgpoolsync")

EXIT_OK = 0
EXIT_INPUT = 1
EXIT_USAGE = 2


def _read_hba(common: Common) -> str:
    assert common.pool_hba_file is not None
    try:
        return common.pool_hba_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--pool-hba-file {common.pool_hba_file}: {exc}") from None


def cmd_render(common: Common) -> int:
    secrets = read_secrets_dir(common.secrets_dir) if common.secrets_dir else []
    hba_text = _read_hba(common) if common.pool_hba_file else None
    inputs = reconcile.inputs_from(common, secrets=secrets, hba_text=hba_text)
    result = reconcile.apply_once(common, inputs, strict=True)
    for problem in (*common.env_warnings, *result.outcome.problems):
        level = "error" if problem.fatal else "warning"
        print(f"pgpoolsync: {level}: {problem}", file=sys.stderr)
    if not result.written:
        print("pgpoolsync: nothing written: fix the errors above", file=sys.stderr)
        return EXIT_INPUT
    state = result.outcome.state
    assert state is not None
    if result.changed:
        log.info(
            "wrote %s in %s (%d users, %s entries)",
            ", ".join(result.changed),
            common.config_dir,
            len(state.credentials),
            state.password_format,
        )
    else:
        log.info("%s is up to date (%d users)", common.config_dir, len(state.credentials))
    return EXIT_OK


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    argv = sys.argv[1:] if argv is None else argv
    try:
        settings = parse(argv, environ)
    except UsageError as exc:
        print(f"pgpoolsync: {exc}", file=sys.stderr)
        return EXIT_USAGE
    logsetup.configure(level=settings.log_level, fmt=settings.log_format)
    try:
        if settings.command == "render":
            assert settings.common is not None
            return cmd_render(settings.common)
    except UsageError as exc:
        print(f"pgpoolsync: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (SecretsDirError, KeyFileError) as exc:
        print(f"pgpoolsync: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    print(f"pgpoolsync: unknown command {settings.command}", file=sys.stderr)
    return EXIT_USAGE
