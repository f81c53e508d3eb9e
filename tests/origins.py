"""Origins for tests, written the way they print: ``src("secret ns/a")``, ``src("env X")``."""

from __future__ import annotations

from pgpoolsync.core.model import Origin, env_origin, secret_origin


def src(text: str) -> Origin:
    kind, _, rest = text.partition(" ")
    if kind == "secret" and "/" in rest:
        namespace, _, name = rest.partition("/")
        return secret_origin(namespace, name)
    if kind == "env" and rest:
        return env_origin(rest)
    return Origin(text)
