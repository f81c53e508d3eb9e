"""A steady stream of new sessions, each timed and recorded (the drills' load): one session every
``interval`` seconds, each in its own thread, so a hung one does not hold up the next."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psycopg


@dataclass
class Session:
    start: float
    end: float | None = None
    ok: bool = False
    error: str = ""
    port: int | None = None  # the PostgreSQL port that served it

    def took(self, now: float) -> float:
        return (self.end if self.end is not None else now) - self.start


class Stream:
    """A new session every ``interval`` seconds, each in its own thread (a hung one does not
    hold up the next)."""

    def __init__(self, session: Callable[[], int], *, interval: float = 0.25) -> None:
        self._session = session
        self._interval = interval
        self.sessions: list[Session] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stream", daemon=True)

    def start(self) -> Stream:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            s = Session(time.monotonic())
            self.sessions.append(s)
            threading.Thread(target=self._one, args=(s,), daemon=True).start()
            self._stop.wait(self._interval)

    def _one(self, s: Session) -> None:
        try:
            s.port = self._session()
            s.ok = True
        except psycopg.Error as exc:
            s.error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        s.end = time.monotonic()


@contextlib.contextmanager
def streaming(session: Callable[[], int], *, interval: float = 0.25) -> Iterator[Stream]:
    stream = Stream(session, interval=interval).start()
    try:
        yield stream
    finally:
        stream.stop()
