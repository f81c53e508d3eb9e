"""TLS material: generation and the validation rules (pure, clock injected)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509

from pgpoolsync.core import tls
from pgpoolsync.sources.tlssource import tls_source

NOW = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)


def test_generated_certificate_has_the_service_names_and_localhost() -> None:
    m = tls.generate_self_signed(tls.default_names("pgpool", "db"), now=NOW)
    cert = x509.load_pem_x509_certificate(m.cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "pgpool.db.svc" in san.get_values_for_type(x509.DNSName)
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert tls.validate(m.cert_pem, m.key_pem, now=NOW).not_after == m.not_after


def test_a_key_that_does_not_match_is_refused() -> None:
    a, b = tls.generate_self_signed(["x"], now=NOW), tls.generate_self_signed(["x"], now=NOW)
    with pytest.raises(tls.TlsError, match="does not match"):
        tls.validate(a.cert_pem, b.key_pem, now=NOW)


def test_an_expired_certificate_is_refused() -> None:
    old = tls.generate_self_signed(["x"], days=1, now=NOW - dt.timedelta(days=10))
    with pytest.raises(tls.TlsError, match="expired on"):
        tls.validate(old.cert_pem, old.key_pem, now=NOW)


@pytest.mark.parametrize(
    ("cert", "key", "message"),
    [
        (b"garbage", None, "tls.crt is not a PEM certificate"),
        (None, b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "tls.key is not"),
    ],
)
def test_malformed_material_is_refused_without_echoing_it(
    cert: bytes | None, key: bytes | None, message: str
) -> None:
    good = tls.generate_self_signed(["x"], now=NOW)
    with pytest.raises(tls.TlsError, match=message) as info:
        tls.validate(cert or good.cert_pem, key or good.key_pem, now=NOW)
    assert "BEGIN" not in str(info.value)


def test_auto_keeps_the_pair_across_restarts_of_the_sidecar(tmp_path: Path) -> None:
    first, _ = tls_source(mode="auto", config_dir=tmp_path, tls_dir=None, names=["localhost"])()
    assert first is not None
    (tmp_path / "tls.crt").write_bytes(first.cert_pem)
    (tmp_path / "tls.key").write_bytes(first.key_pem)
    again, _ = tls_source(mode="auto", config_dir=tmp_path, tls_dir=None, names=["localhost"])()
    assert again is not None and again.cert_pem == first.cert_pem


def test_secret_mode_names_the_missing_file(tmp_path: Path) -> None:
    material, problem = tls_source(
        mode="secret", config_dir=tmp_path, tls_dir=tmp_path / "tls", names=[]
    )()
    assert material is None and problem is not None
    assert "needs tls.crt and tls.key" in problem.message
