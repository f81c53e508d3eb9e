"""Where the TLS pair comes from: generated and kept in the config dir, a directory, or a Secret.

Reads files (the kept pair, a mounted cert-manager Secret); a Secret's data is handed in by the
Kubernetes source. Validation is the core's (``tls.validate``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from pathlib import Path

from pgpoolsync.core import model, tls
from pgpoolsync.sources.convert import TLS_SECRET_ORIGIN, TlsResult, tls_from_data


def _read_pair(directory: Path) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for name in (tls.CERT_FILE, tls.KEY_FILE, tls.CA_FILE):
        try:
            out[name] = (directory / name).read_bytes()
        except FileNotFoundError:
            continue
    return out


def tls_source(
    *,
    mode: str,
    config_dir: Path,
    tls_dir: Path | None,
    names: Sequence[str],
    secret: Callable[[], dict[str, bytes] | None] | None = None,
) -> Callable[[], TlsResult]:
    """What TLS material the next pass should use.

    auto: the pair already in ``config_dir`` (kept across restarts of the sidecar) while it is
    valid for another 30 days, else a new self-signed one, generated once per process.
    secret: from ``tls_dir`` (a mounted Secret) or the watched Secret. off: none.
    """
    generated: list[tls.TlsMaterial] = []

    def auto() -> TlsResult:
        existing = _read_pair(config_dir)
        if tls.CERT_FILE in existing and tls.KEY_FILE in existing:
            soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
            try:
                return tls.validate(
                    existing[tls.CERT_FILE],
                    existing[tls.KEY_FILE],
                    existing.get(tls.CA_FILE),
                    now=soon,
                ), None
            except tls.TlsError:
                pass  # expiring, broken or foreign: replace it
        if not generated:
            generated.append(tls.generate_self_signed(list(names)))
        return generated[0], None

    def from_dir() -> TlsResult:
        assert tls_dir is not None
        return tls_from_data(model.flag_origin(f"--tls-dir {tls_dir}"), _read_pair(tls_dir))

    def from_secret() -> TlsResult:
        assert secret is not None
        data = secret()
        if data is None:
            return None, model.Problem(TLS_SECRET_ORIGIN, "the TLS Secret does not exist")
        return tls_from_data(TLS_SECRET_ORIGIN, data)

    if mode == "off":
        return lambda: (None, None)
    if mode == "auto":
        return auto
    if tls_dir is not None:
        return from_dir
    if secret is not None:
        return from_secret
    raise ValueError("--tls secret needs --tls-dir (or --tls-secret with --kube)")
