"""A native client for pgpool's PCP protocol: login, reload, pool status, node info, detach
and attach.

Each message is one type byte and a 4-byte big-endian length that counts itself and the payload
(src/libs/pcp/pcp.c). Login: ``M`` → salt (``m``); ``R`` with ``user\\0`` +
``md5_hex(md5_hex(md5_hex(password) + user) + salt)\\0`` → ``r`` "AuthenticationOK". Reload: ``Z``
with a scope byte → ``z`` "CommandComplete". Pool status: ``B`` → ``b`` "ArraySize" + count, one
``b`` "ProcessConfig" name/value/description per parameter, ``b`` "CommandComplete" (the values
the PCP process runs with: it re-reads reloadable ones on reload, never the start-only ones,
src/pcp_con/pcp_worker.c, process_status_request). Errors come as ``E`` with ``S``/``M``/``D``
fields; notices (``N``) are skipped. The only socket user in pgpoolsync.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import struct
from dataclasses import dataclass
from types import TracebackType

SCOPE_LOCAL = b"l"
SCOPE_CLUSTER = b"c"


class PcpError(Exception):
    """PCP failed: connection, authentication or a command refused by pgpool."""


class PcpConnectionError(PcpError):
    """The connection to PCP could not be made, or broke: no answer, not a refusal. pgpool
    restarts its PCP process about a second after a failover or failback (a detach, an attach),
    cutting the connection it was serving then."""


@dataclass(frozen=True)
class NodeInfo:
    node_id: int
    host: str
    port: int
    status: int  # 0 init, 1 up (no connection yet), 2 up, 3 down
    pg_status: str
    weight: float  # share of the load balance, 0..1
    role: str  # primary, standby, main, replica


_ROLES = {0: "main", 1: "replica", 2: "primary", 3: "standby"}
_RAND_MAX = 2147483647  # pgpool keeps weights scaled by glibc's RAND_MAX


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def auth_hash(user: str, password: str, salt: bytes) -> str:
    inner = _md5(_md5(password.encode()).encode() + user.encode())
    return _md5(inner.encode() + salt)


class PcpClient:
    def __init__(self, host: str, port: int, *, timeout: float = 5.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._sock: socket.socket | None = None

    def __enter__(self) -> PcpClient:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def connect(self) -> None:
        try:
            self._sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as exc:
            raise PcpConnectionError(
                f"cannot connect to PCP at {self.host}:{self.port}: {exc}"
            ) from None

    def close(self) -> None:
        if self._sock is None:
            return
        with contextlib.suppress(OSError, PcpError):
            self._send(b"X", b"")
        self._sock.close()
        self._sock = None

    def _send(self, kind: bytes, payload: bytes) -> None:
        if self._sock is None:
            raise PcpError("not connected")
        try:
            self._sock.sendall(kind + struct.pack("!I", len(payload) + 4) + payload)
        except OSError as exc:
            raise PcpConnectionError(f"PCP send failed: {exc}") from None

    def _recv_exact(self, size: int) -> bytes:
        assert self._sock is not None
        chunks: list[bytes] = []
        while size:
            try:
                chunk = self._sock.recv(size)
            except OSError as exc:
                raise PcpConnectionError(f"PCP receive failed: {exc}") from None
            if not chunk:
                raise PcpConnectionError("PCP connection closed by pgpool")
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def _recv(self) -> tuple[bytes, bytes]:
        """The next message that is not a notice: (type, payload)."""
        while True:
            kind = self._recv_exact(1)
            (length,) = struct.unpack("!I", self._recv_exact(4))
            if length < 4 or length > 1 << 20:
                raise PcpError(f"PCP message with bad length {length}")
            payload = self._recv_exact(length - 4)
            if kind == b"N":
                continue
            if kind == b"E":
                raise PcpError(_error_text(payload))
            return kind, payload

    def _expect(self, kind: bytes) -> bytes:
        got, payload = self._recv()
        if got != kind:
            raise PcpError(f"unexpected PCP reply {got!r} (wanted {kind!r})")
        return payload

    def login(self, user: str, password: str) -> None:
        if self._sock is None:
            self.connect()
        self._send(b"M", b"")
        salt = self._expect(b"m")[:4]
        digest = auth_hash(user, password, salt)
        self._send(b"R", user.encode() + b"\0" + digest.encode() + b"\0")
        reply = self._expect(b"r").split(b"\0", 1)[0]
        if reply != b"AuthenticationOK":
            raise PcpError(f"PCP authentication failed for user {user!r}")

    def reload(self, *, scope: bytes = SCOPE_LOCAL) -> None:
        self._send(b"Z", scope)
        reply = self._expect(b"z").split(b"\0", 1)[0]
        if reply != b"CommandComplete":
            raise PcpError(f"PCP reload failed: {reply.decode(errors='replace')}")

    def pool_status(self) -> dict[str, str]:
        """Each parameter pgpool reports, with the value it runs with (``pcp_pool_status``)."""
        self._send(b"B", b"")
        out: dict[str, str] = {}
        while True:
            fields = self._expect(b"b").split(b"\0")
            code = fields[0]
            if code == b"CommandComplete":
                return out
            if code == b"ProcessConfig" and len(fields) >= 3:
                out[fields[1].decode(errors="replace")] = fields[2].decode(errors="replace")
            elif code != b"ArraySize":
                raise PcpError(f"unexpected PCP pool status record {code!r}")

    def node_count(self) -> int:
        self._send(b"L", b"")
        fields = self._expect(b"l").split(b"\0")
        if fields[0] != b"CommandComplete" or len(fields) < 2:
            raise PcpError("PCP node count failed")
        return int(fields[1])

    def node_info(self, node_id: int) -> NodeInfo:
        self._send(b"I", str(node_id).encode() + b"\0")
        fields = self._expect(b"i").split(b"\0")
        if fields[0] == b"ArraySize":  # announces the count, then NodeInfo, then CommandComplete
            fields = self._expect(b"i").split(b"\0")
            done = self._expect(b"i").split(b"\0", 1)[0]
            if done != b"CommandComplete":
                raise PcpError(f"PCP node info for node {node_id}: no CommandComplete")
        if fields[0] != b"NodeInfo" or len(fields) < 8:
            raise PcpError(f"PCP node info for node {node_id} failed")
        f = [x.decode(errors="replace") for x in fields]
        return NodeInfo(
            node_id=node_id,
            host=f[1],
            port=int(f[2]),
            status=int(f[3]),
            pg_status=f[5],
            weight=float(f[6]) / _RAND_MAX,
            role=_ROLES.get(int(f[7]), f[7]),
        )

    def detach(self, node_id: int) -> None:
        """Ask pgpool to detach a node (``D``, what ``pcp_detach_node`` sends). For a
        DISALLOW_TO_FAILOVER node pgpool cancels it with an ERROR ("failover is disallowed on
        the node"), which ``pcp_detach_node`` prints but exits 0 on; here it raises PcpError.
        The detach itself runs later in pgpool's main process: read the node's status to know."""
        self._send(b"D", str(node_id).encode() + b"\0")
        self._command_complete(b"d", f"detach node {node_id}")

    def attach(self, node_id: int) -> None:
        """Attach a node (``C``, ``pcp_attach_node``); allowed with DISALLOW_TO_FAILOVER."""
        self._send(b"C", str(node_id).encode() + b"\0")
        self._command_complete(b"c", f"attach node {node_id}")

    def _command_complete(self, kind: bytes, what: str) -> None:
        if self._expect(kind).split(b"\0", 1)[0] != b"CommandComplete":
            raise PcpError(f"PCP {what} failed")


def _error_text(payload: bytes) -> str:
    fields: dict[str, str] = {}
    for part in payload.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode(errors="replace")
    text = fields.get("M", "unknown error")
    if "D" in fields:
        text += f" ({fields['D']})"
    return f"pgpool PCP error: {text}"
