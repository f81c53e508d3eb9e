"""The contract for posting Events (pgpoolsync/kube/events.py's ``EventRecorder``): the API double
stores what the real kube-apiserver stores, read back as admin: the involved object, reason, type
and message as posted, the fields the server makes and defaults; a repeat inside the quiet time
is not posted, one after it is a second Event; a Role without ``create`` on events is a warning."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pgpoolsync.kube.events import EventRecorder
from tests.kube.contract import Server, client, refusal, refused, servers


@pytest.fixture(params=["double", pytest.param("real", marks=pytest.mark.kube)])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    yield from servers(request)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _recorder(server: Server, tmp_path: Path, clock: Clock) -> EventRecorder:
    return EventRecorder(
        client(server, tmp_path), namespace=server.ns, pod_name="pgpool-0", clock=clock
    )


def _about(server: Server, name: str) -> list[dict[str, Any]]:
    return [e for e in server.stored("events") if e["involvedObject"]["name"] == name]


def test_an_event_about_a_secret_lands_with_its_object_reason_type_and_message(
    server: Server, tmp_path: Path
) -> None:
    rec = _recorder(server, tmp_path, Clock())
    rec.event(reason="InvalidSecret", message="no password key", kind="Secret", name="db-auth")
    rec.event(reason="Reloaded", message="pgpool reloaded", warning=False)
    (secret,) = _about(server, "db-auth")
    assert secret["involvedObject"] == {  # no uid: the recorder does not read the Secret
        "apiVersion": "v1",
        "kind": "Secret",
        "name": "db-auth",
        "namespace": server.ns,
    }
    assert (secret["apiVersion"], secret["kind"]) == ("v1", "Event")
    assert (secret["reason"], secret["type"], secret["message"]) == (
        "InvalidSecret",
        "Warning",
        "no password key",
    )
    assert (secret["count"], secret["source"]) == (1, {"component": "pgpoolsync"})
    assert secret["firstTimestamp"] == secret["lastTimestamp"]
    # What the server makes and defaults, the same on both.
    meta = secret["metadata"]
    assert re.fullmatch(r"db-auth\.[bcdfghjklmnpqrstvwxz2456789]{5}", meta["name"]), meta
    assert (meta["generateName"], meta["namespace"]) == ("db-auth.", server.ns)
    assert meta["uid"] and int(meta["resourceVersion"]) > 0 and meta["creationTimestamp"]
    assert {k: secret[k] for k in ("eventTime", "reportingComponent", "reportingInstance")} == {
        "eventTime": None,
        "reportingComponent": "",
        "reportingInstance": "",
    }
    (pod,) = _about(server, "pgpool-0")
    assert (pod["involvedObject"]["kind"], pod["type"], pod["reason"]) == (
        "Pod",
        "Normal",
        "Reloaded",
    )


def test_a_repeat_is_not_posted_in_its_quiet_time_and_is_a_second_event_after_it(
    server: Server, tmp_path: Path
) -> None:
    clock = Clock()
    rec = _recorder(server, tmp_path, clock)
    for _ in range(3):
        rec.event(reason="InvalidSecret", message="no password key", kind="Secret", name="db-auth")
    assert len(_about(server, "db-auth")) == 1
    clock.now += 601
    rec.event(reason="InvalidSecret", message="no password key", kind="Secret", name="db-auth")
    # The server merges nothing (client-go's recorder counts repeats; this one does not).
    first, second = _about(server, "db-auth")
    assert first["metadata"]["name"] != second["metadata"]["name"]
    assert first["metadata"]["uid"] != second["metadata"]["uid"]
    assert [e["count"] for e in (first, second)] == [1, 1]
    assert {e["message"] for e in (first, second)} == {"no password key"}


def test_an_event_the_role_does_not_allow_is_logged_with_its_status_and_not_raised(
    server: Server, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server.forbid("create", "events")
    rec = _recorder(server, tmp_path, Clock())
    with caplog.at_level(logging.WARNING, logger="pgpoolsync.kube.events"):
        rec.event(reason="InvalidSecret", message="no password key", kind="Secret", name="db-auth")
    assert [r.getMessage() for r in caplog.records] == [
        "could not post Event InvalidSecret on Secret/db-auth: 403"
    ]
    assert server.stored("events") == []
    event = {"metadata": {"generateName": "db-auth."}, "involvedObject": {"name": "db-auth"}}
    assert refused(server, tmp_path, "POST", "events", None, event) == refusal(
        403,
        "Forbidden",
        f'events is forbidden: User "{server.user}" cannot create resource "events" in API '
        f'group "" in the namespace "{server.ns}"',
        {"kind": "events"},
    )
