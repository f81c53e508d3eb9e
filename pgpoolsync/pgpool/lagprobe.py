"""The replica-lag probe: the primary's WAL position and each standby's replay position.

Logs in to the primary backend (``backend_hostname0``/``backend_port0`` of the desired state:
the primary Service) as the monitoring login (``--monitor-user``, a role in ``pg_monitor`` is
enough to read ``pg_stat_replication``'s positions and addresses) and answers a
``core.lag.Reading``. One connection, kept between probes and made again when the primary's
address changes or a query fails; short timeouts (connect, statement, and TCP: unacknowledged
data and keepalives), because the probe runs on the loop's thread.
The password goes to libpq as a keyword argument: never in argv, the environment or an error.
It is asked for (``password()``: the mounted Secret's file, re-read) on every new connection,
so a rotated monitoring password is used from the next connection on, without a restart.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import psycopg

from pgpoolsync.core.lag import Reading

# Positions as bytes since 0/0; one row per standby with an address (a standby streaming over
# a Unix socket has none and cannot be matched to an endpoint), and one row when there is none.
QUERY = """
SELECT (pg_current_wal_lsn() - '0/0')::bigint,
       host(r.client_addr),
       (r.replay_lsn - '0/0')::bigint
FROM (SELECT 1) AS one
LEFT JOIN pg_stat_replication AS r ON r.client_addr IS NOT NULL AND r.replay_lsn IS NOT NULL
"""


class LagProbeError(Exception):
    pass


class LagProbe:
    def __init__(
        self,
        *,
        user: str,
        password: Callable[[], str],
        dbname: str = "postgres",
        timeout: float = 2.0,
    ) -> None:
        self._user = user
        self._password = password
        self._dbname = dbname
        self._timeout = timeout
        self._conn: psycopg.Connection[Any] | None = None
        self._target: tuple[str, int] | None = None

    def __call__(self, params: Mapping[str, str]) -> Reading:
        """Raises LagProbeError (the message names the primary, never the password)."""
        target = (params.get("backend_hostname0", ""), int(params.get("backend_port0", "5432")))
        where = f"primary {target[0]}:{target[1]} as {self._user}"
        password = ""
        try:
            if self._conn is None or self._conn.closed or self._target != target:
                self.close()
                password = self._password()
                self._conn = psycopg.connect(
                    host=target[0],
                    port=target[1],
                    user=self._user,
                    password=password,
                    dbname=self._dbname,
                    autocommit=True,
                    connect_timeout=max(1, round(self._timeout)),
                    application_name="pgpoolsync-lag-probe",
                    options=f"-c statement_timeout={int(self._timeout * 1000)}",
                    # A kept connection to a primary that stopped answering (a dead node)
                    # must fail in seconds, not after the kernel's retransmissions: the loop
                    # that probes also runs the node commands.
                    tcp_user_timeout=int(self._timeout * 1000),
                    keepalives=1,
                    keepalives_idle=1,
                    keepalives_interval=1,
                    keepalives_count=max(1, round(self._timeout)),
                )
                self._target = target
            rows = self._conn.execute(QUERY).fetchall()
        except psycopg.Error as exc:
            self.close()
            text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            if password:
                text = text.replace(password, "***")
            raise LagProbeError(f"{where}: {text}") from None
        replay = tuple((str(a), int(r)) for _, a, r in rows if a is not None and r is not None)
        return Reading(lsn=int(rows[0][0]), replay=replay)

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None
