"""Reporting: pgpoolsync's own metrics and HTTP endpoints, and the asynchronous reporter that
turns loop outcomes into log lines, metrics and Kubernetes Events without blocking the loop."""
