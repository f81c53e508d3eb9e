"""A kube-proxy-like TCP forwarder standing in for a Service in the drills.

New connections go to the current target; re-pointing it (the Service's endpoints changed) sends
new connections to the new target while existing ones keep their old one, as conntrack entries
do. A target whose packets are dropped makes a new connection hang, not fail, as with a dead
node behind a ClusterIP.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class Forwarder:
    def __init__(
        self,
        target_port: int,
        *,
        host: str = "127.0.0.1",
        listen: tuple[str, int] | None = None,
    ) -> None:
        """Forwards to ``host``:``target_port``; listens on ``listen`` (default: a free port on
        ``host``)."""
        self.host = host
        self.target_port = target_port
        self._listener = socket.create_server(listen or (host, 0), backlog=128)
        self.port: int = self._listener.getsockname()[1]
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, name=f"fwd-{self.port}", daemon=True).start()

    def repoint(self, target_port: int) -> None:
        self.target_port = target_port

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            conns, self._conns = set(self._conns), set()
        for c in conns:
            with contextlib.suppress(OSError):
                c.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            target = self.target_port  # chosen at accept, like a conntrack entry
            threading.Thread(target=self._serve, args=(client, target), daemon=True).start()

    def _serve(self, client: socket.socket, target: int) -> None:
        try:
            upstream = socket.create_connection((self.host, target))  # no timeout: SYNs retry
        except OSError:
            client.close()
            return
        with self._lock:
            if self._closed:
                client.close()
                upstream.close()
                return
            self._conns.update((client, upstream))
        threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()
        self._pipe(client, upstream)

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    s.close()
            with self._lock:
                self._conns.discard(src)
                self._conns.discard(dst)
