"""Applying the desired state: sources' snapshots → Inputs → build → render → write.

Owns ``apply_once`` (what ``render`` does, and what each pass of the live loop does) and the
translation of source snapshots into model Inputs. Knows nothing about kubernetes types: sources
hand in plain dicts.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pgpoolsync import model, render, writer
from pgpoolsync.dirsource import RawSecret
from pgpoolsync.settings import Common

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ApplyResult:
    outcome: model.Outcome
    changed: tuple[str, ...] = ()
    files: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def written(self) -> bool:
        """True when the files on disk now hold this outcome's state."""
        return bool(self.files)


def inputs_from(
    common: Common,
    *,
    secrets: Sequence[RawSecret],
    hba_text: str | None,
    backends: Sequence[model.Backend] | None = None,
) -> model.Inputs:
    """Model inputs from settings plus a snapshot of the credential sources."""
    if backends is None:
        backends = static_backends(common)
    creds: list[model.Credential | model.Problem] = [
        model.credential_from_data(s.source, s.data) for s in secrets
    ]
    creds += common.env_credentials
    return model.Inputs(
        backends=tuple(backends),
        params=common.env_params,
        credentials=tuple(creds),
        pcp_users=common.pcp_users,
        password_format=common.password_format,
        auth_method=common.auth_method,
        hba_text=hba_text,
    )


def static_backends(common: Common) -> list[model.Backend]:
    out: list[model.Backend] = []
    if common.primary_host:
        out.append(model.Backend(common.primary_host, common.primary_port, model.PRIMARY_FLAG))
        if common.replica_host:
            out.append(
                model.Backend(
                    common.replica_host,
                    common.replica_port,
                    model.REPLICA_FLAG,
                    weight=common.replica_weight,
                )
            )
    return out


def render_files(state: model.DesiredState, *, key_file: Path) -> dict[str, str]:
    key = None
    if state.password_format == "aes":
        key, _ = writer.load_or_create_pool_key(key_file)
    return render.render(state, pool_key=key)


def apply_once(common: Common, inputs: model.Inputs, *, strict: bool) -> ApplyResult:
    """Build, render and write.

    Nothing is written when the state cannot be built, nor, with ``strict``, when any input has
    an error (``render``); otherwise bad credentials are left out and the rest applied (``run``).
    """
    outcome = model.build(inputs)
    if outcome.state is None or (strict and outcome.errors):
        return ApplyResult(outcome)
    files = render_files(outcome.state, key_file=common.pool_key_file)
    changed = writer.write_files(common.config_dir, files, secret_files=render.SECRET_FILES)
    return ApplyResult(outcome, tuple(changed), files)
