"""The Kubernetes API client layer: the only importer of ``kubernetes``.

One room per job, after kopf's ``_cogs/clients/``: ``api`` (the client, its auth, one request),
``errors`` (what a call can fail with, the refusals named), ``watch`` (list+watch threads and the
waits derived from the watch timeout), ``cache`` (a watch cache as pure steps), ``events``
(posting Events), ``deployments`` (the rollout's calls). The sources and the rollout policy call
it; nothing else sees the client. Importing this package (or ``errors``) loads no ``kubernetes``.
"""
