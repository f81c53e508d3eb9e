"""TLS material for pgpool: generating a self-signed pair, and validating supplied ones.

Owns the certificate rules: a PEM certificate and a matching private key, not expired; an
optional CA bundle. ``generate_self_signed`` makes an ECDSA P-256 key and a certificate whose SANs
are the pgpool Service names and localhost. Pure: bytes in, bytes out (the clock is injected).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

MODES = ("auto", "secret", "off")
CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"
CA_FILE = "ca.crt"


class TlsError(ValueError):
    """Unusable TLS material; the message names the problem, never key bytes."""


@dataclass(frozen=True)
class TlsMaterial:
    cert_pem: bytes
    key_pem: bytes = field(repr=False)
    ca_pem: bytes | None = None
    not_after: float = 0.0  # certificate expiry, Unix seconds


def _public_bytes(key: object) -> bytes:
    return key.public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def validate(
    cert_pem: bytes, key_pem: bytes, ca_pem: bytes | None = None, *, now: dt.datetime | None = None
) -> TlsMaterial:
    """Parse and check a certificate/key pair (and CA bundle); raise TlsError on any problem."""
    now = now or dt.datetime.now(dt.UTC)
    try:
        certs = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        raise TlsError("tls.crt is not a PEM certificate") from None
    cert = certs[0]
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise TlsError("tls.key is not an unencrypted PEM private key") from None
    if _public_bytes(key.public_key()) != _public_bytes(cert.public_key()):
        raise TlsError("tls.key does not match the certificate in tls.crt")
    if cert.not_valid_after_utc <= now:
        raise TlsError(f"the certificate in tls.crt expired on {cert.not_valid_after_utc:%Y-%m-%d}")
    if cert.not_valid_before_utc > now:
        raise TlsError("the certificate in tls.crt is not valid yet")
    if ca_pem:
        try:
            x509.load_pem_x509_certificates(ca_pem)
        except ValueError:
            raise TlsError("ca.crt is not a PEM certificate bundle") from None
    return TlsMaterial(
        cert_pem=cert_pem,
        key_pem=key_pem,
        ca_pem=ca_pem or None,
        not_after=cert.not_valid_after_utc.timestamp(),
    )


def generate_self_signed(
    names: Sequence[str], *, days: int = 3650, now: dt.datetime | None = None
) -> TlsMaterial:
    """A new ECDSA P-256 key and a self-signed certificate for ``names`` (DNS names or IPs)."""
    now = now or dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for name in dict.fromkeys(names):
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0] if names else "pgpool")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return TlsMaterial(
        cert_pem=cert_pem, key_pem=key_pem, not_after=cert.not_valid_after_utc.timestamp()
    )


def default_names(service: str | None, namespace: str | None) -> list[str]:
    names: list[str] = []
    if service and namespace:
        names += [
            f"{service}.{namespace}.svc",
            f"{service}.{namespace}.svc.cluster.local",
            f"{service}.{namespace}",
            service,
        ]
    return [*names, "localhost", "127.0.0.1", "::1"]


def cert_der(cert_pem: bytes) -> bytes:
    """The certificate in DER, as a TLS server sends it."""
    return x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
