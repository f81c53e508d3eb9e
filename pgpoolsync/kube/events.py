"""Posting core/v1 Events about this Pod (or the offending Secret or Deployment), rate-limited."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import kubernetes.client
import urllib3
from kubernetes.client.exceptions import ApiException

from pgpoolsync.kube.api import request

log = logging.getLogger(__name__)


class EventRecorder:
    """Posts core/v1 Events about a Pod (or the offending Secret); repeats are rate-limited."""

    def __init__(
        self,
        api: kubernetes.client.ApiClient,
        *,
        namespace: str,
        pod_name: str | None,
        component: str = "pgpoolsync",
        clock: Callable[[], float] = time.monotonic,
        quiet_seconds: float = 600,
    ) -> None:
        self._api = api
        self.namespace = namespace
        self.pod_name = pod_name
        self.component = component
        self._clock = clock
        self._quiet = quiet_seconds
        self._sent: dict[tuple[str, str, str], float] = {}

    def event(
        self,
        *,
        reason: str,
        message: str,
        kind: str = "Pod",
        name: str | None = None,
        warning: bool = True,
    ) -> None:
        name = name or self.pod_name
        if not name:
            return
        key = (kind, name, reason + message)
        now = self._clock()
        if now - self._sent.get(key, -1e18) < self._quiet:
            return
        # Messages vary (a lag, an error's text): forget what is past its quiet time.
        self._sent = {k: at for k, at in self._sent.items() if now - at < self._quiet}
        self._sent[key] = now
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        body: Any = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{name}.", "namespace": self.namespace},
            "involvedObject": {
                "apiVersion": "apps/v1" if kind == "Deployment" else "v1",
                "kind": kind,
                "name": name,
                "namespace": self.namespace,
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": self.component},
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            request(
                self._api, "POST", "events", self.namespace, body=body, timeout=(5, 10)
            ).drain_conn()
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            log.warning(
                "could not post Event %s on %s/%s: %s",
                reason,
                kind,
                name,
                getattr(exc, "status", type(exc).__name__),
            )
