"""Asking pgpool's client port which TLS certificate it serves.

pgpool reads its certificate only at start, so the certificate on disk says nothing about the one
in use. This speaks the start of the PostgreSQL protocol: an SSLRequest (length 8, code
80877103), pgpool answers ``S`` (TLS on) or ``N`` (off), then a TLS handshake without
verification (we only read the certificate; no credentials are sent) and close.
"""

from __future__ import annotations

import socket
import ssl
import struct

_SSL_REQUEST = struct.pack("!II", 8, 80877103)


class ProbeError(Exception):
    """pgpool's client port could not be asked."""


def served_certificate(host: str, port: int, *, timeout: float = 5.0) -> bytes | None:
    """The DER certificate pgpool serves on ``host:port``, or None when it does not offer TLS."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(_SSL_REQUEST)
            answer = sock.recv(1)
            if answer != b"S":
                return None
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE  # we read the certificate, we do not trust it
            with ctx.wrap_socket(sock, server_hostname=None) as tls:
                der = tls.getpeercert(binary_form=True)
                return der or None
    except (OSError, ssl.SSLError) as exc:
        raise ProbeError(f"cannot ask {host}:{port} for its TLS certificate: {exc}") from None
