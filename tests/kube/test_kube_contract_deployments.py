"""The contract for the rollout's calls (pgpoolsync/kube/deployments.py, as restart/rollout.py makes
them): the API double and the real kube-apiserver answer them alike, through manifests/base's
Role: the owner chain Pod → ReplicaSet → Deployment, the template patch and its generation, and
the refusals (404, 403, 409) as the same ``ApiError`` over the same Status body."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pgpoolsync.core.rollout import HASH_ANNOTATION, REQUESTED_AT_ANNOTATION
from pgpoolsync.kube.deployments import Deployments
from pgpoolsync.kube.errors import ApiError
from pgpoolsync.restart.rollout import annotation, owner, patch_body
from tests.kube.contract import DEPLOYMENT, Server, client, refusal, refused, servers


@pytest.fixture(params=["double", pytest.param("real", marks=pytest.mark.kube)])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    yield from servers(request)


def test_a_pod_leads_through_its_replica_set_to_its_deployment_by_controller_references(
    server: Server, tmp_path: Path
) -> None:
    api = Deployments(client(server, tmp_path), namespace=server.ns)
    pod = api.get("pods", server.rollout_pod())
    rs_name = owner(pod, "ReplicaSet")
    assert rs_name is not None
    rs = api.get("replicasets", rs_name)
    assert owner(rs, "Deployment") == DEPLOYMENT
    dep = api.get("deployments", DEPLOYMENT)
    for child, parent in ((pod, rs), (rs, dep)):
        (ref,) = child["metadata"]["ownerReferences"]
        assert ref["uid"] == parent["metadata"]["uid"]
        assert ref["controller"] is True and ref["blockOwnerDeletion"] is True
        assert (ref["apiVersion"], ref["kind"]) == (parent["apiVersion"], parent["kind"])
    assert [(o["apiVersion"], o["kind"]) for o in (pod, rs, dep)] == [
        ("v1", "Pod"),
        ("apps/v1", "ReplicaSet"),
        ("apps/v1", "Deployment"),
    ]
    assert [o["metadata"]["generation"] for o in (pod, rs, dep)] == [1, 1, 1]


def test_a_patch_of_the_template_annotation_bumps_the_generation_and_the_next_get_sees_it(
    server: Server, tmp_path: Path
) -> None:
    server.rollout_pod()
    api = Deployments(client(server, tmp_path), namespace=server.ns)
    before = api.get("deployments", DEPLOYMENT)["metadata"]
    body = patch_body(
        desired="abc123",
        now_text="2026-01-02T03:04:05Z",
        resource_version=before["resourceVersion"],
    )
    answered = api.patch_deployment(DEPLOYMENT, body)
    read = api.get("deployments", DEPLOYMENT)
    for dep in (answered, read):
        assert annotation(dep, "spec", "template", key=HASH_ANNOTATION) == "abc123"
        assert annotation(dep, key=REQUESTED_AT_ANNOTATION) == "2026-01-02T03:04:05Z"
        assert dep["metadata"]["generation"] == before["generation"] + 1
        assert dep["metadata"]["uid"] == before["uid"]
    assert int(read["metadata"]["resourceVersion"]) > int(before["resourceVersion"])
    # A Deployment's own annotations count as its spec (the server's strategy); no change, no bump.
    stamp = {"metadata": {"annotations": {REQUESTED_AT_ANNOTATION: "2026-01-02T03:05:00Z"}}}
    twice = before["generation"] + 2
    assert api.patch_deployment(DEPLOYMENT, stamp)["metadata"]["generation"] == twice
    assert api.patch_deployment(DEPLOYMENT, stamp)["metadata"]["generation"] == twice
    assert (
        api.patch_deployment(DEPLOYMENT, body | {"metadata": {}})["metadata"]["generation"] == twice
    )


def test_a_patch_with_the_resource_version_of_an_older_read_is_a_conflict(
    server: Server, tmp_path: Path
) -> None:
    server.rollout_pod()
    api = Deployments(client(server, tmp_path), namespace=server.ns)
    old = api.get("deployments", DEPLOYMENT)["metadata"]["resourceVersion"]
    api.patch_deployment(DEPLOYMENT, patch_body(desired="a", now_text="x", resource_version=old))
    with pytest.raises(ApiError) as caught:
        api.patch_deployment(
            DEPLOYMENT, patch_body(desired="b", now_text="y", resource_version=old)
        )
    assert (caught.value.status, str(caught.value)) == (
        409,
        f"PATCH deployments/{DEPLOYMENT}: 409 Conflict",
    )
    got = api.get("deployments", DEPLOYMENT)
    assert annotation(got, "spec", "template", key=HASH_ANNOTATION) == "a"
    stale = {"metadata": {"resourceVersion": old}}
    assert refused(server, tmp_path, "PATCH", "deployments", DEPLOYMENT, stale) == refusal(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on deployments.apps "{DEPLOYMENT}": the object has been '
        "modified; please apply your changes to the latest version and try again",
        {"name": DEPLOYMENT, "group": "apps", "kind": "deployments"},
    )


@pytest.mark.parametrize(
    ("kind", "qualified", "group"),
    [("pods", "pods", None), ("replicasets", "replicasets.apps", "apps")],
)
def test_getting_what_is_not_there_raises_not_found_naming_the_call(
    server: Server, tmp_path: Path, kind: str, qualified: str, group: str | None
) -> None:
    api = Deployments(client(server, tmp_path), namespace=server.ns)
    with pytest.raises(ApiError) as missing:
        api.get(kind, "missing")
    assert (missing.value.status, str(missing.value)) == (404, f"GET {kind}/missing: 404 Not Found")
    details = {"name": "missing", **({"group": group} if group else {}), "kind": kind}
    assert refused(server, tmp_path, "GET", kind, "missing") == refusal(
        404, "NotFound", f'{qualified} "missing" not found', details
    )


def _forbidden(server: Server, verb: str, name: str) -> str:
    return (
        f'deployments.apps "{name}" is forbidden: User "{server.user}" cannot {verb} resource '
        f'"deployments" in API group "apps" in the namespace "{server.ns}"'
    )


def test_a_deployment_the_role_does_not_name_is_refused_not_reported_missing(
    server: Server, tmp_path: Path
) -> None:
    api = Deployments(client(server, tmp_path), namespace=server.ns)
    with pytest.raises(ApiError) as caught:
        api.get("deployments", "other")
    assert (caught.value.status, str(caught.value)) == (
        403,
        "GET deployments/other: 403 Forbidden",
    )
    details = {"name": "other", "group": "apps", "kind": "deployments"}
    assert refused(server, tmp_path, "GET", "deployments", "other") == refusal(
        403, "Forbidden", _forbidden(server, "get", "other"), details
    )


def test_a_patch_the_role_forbids_is_refused_naming_the_verb_and_resource(
    server: Server, tmp_path: Path
) -> None:
    server.rollout_pod()
    server.forbid("patch", "deployments")
    api = Deployments(client(server, tmp_path), namespace=server.ns)
    dep = api.get("deployments", DEPLOYMENT)  # get stays allowed
    rv = dep["metadata"]["resourceVersion"]
    with pytest.raises(ApiError) as caught:
        api.patch_deployment(DEPLOYMENT, patch_body(desired="a", now_text="x", resource_version=rv))
    assert (caught.value.status, str(caught.value)) == (
        403,
        f"PATCH deployments/{DEPLOYMENT}: 403 Forbidden",
    )
    details = {"name": DEPLOYMENT, "group": "apps", "kind": "deployments"}
    assert refused(server, tmp_path, "PATCH", "deployments", DEPLOYMENT) == refusal(
        403, "Forbidden", _forbidden(server, "patch", DEPLOYMENT), details
    )
    assert api.get("deployments", DEPLOYMENT)["metadata"]["resourceVersion"] == rv
