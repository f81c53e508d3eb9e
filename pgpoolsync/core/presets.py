"""Operator conventions as data: where each operator keeps credentials and Services.

Templates use ``{cluster}``. docs/pgpool-facts.md ("Operators") has the table each row comes from.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    name: str
    primary_service: str
    replica_service: str
    secret_selector: str | None = None
    secret_names: tuple[str, ...] = ()
    user_keys: tuple[str, ...] = ("username", "user")
    password_keys: tuple[str, ...] = ("password",)
    # password key → fixed role name, for Secrets that do not hold the user name
    fixed_users: tuple[tuple[str, str], ...] = ()
    tls: bool = False

    def fill(self, cluster: str) -> Preset:
        def f(value: str) -> str:
            return value.format(cluster=cluster)

        return Preset(
            name=self.name,
            primary_service=f(self.primary_service),
            replica_service=f(self.replica_service),
            secret_selector=f(self.secret_selector) if self.secret_selector else None,
            secret_names=tuple(f(n) for n in self.secret_names),
            user_keys=self.user_keys,
            password_keys=self.password_keys,
            fixed_users=self.fixed_users,
            tls=self.tls,
        )


_PGO_SELECTOR = (
    "postgres-operator.crunchydata.com/cluster={cluster},postgres-operator.crunchydata.com/pguser"
)

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "zalando",
            "{cluster}",
            "{cluster}-repl",
            secret_selector="application=spilo,cluster-name={cluster}",
            tls=True,
        ),
        Preset(
            "pgo",
            "{cluster}-primary",
            "{cluster}-replicas",
            secret_selector=_PGO_SELECTOR,
            user_keys=("user",),
            tls=True,
        ),
        Preset(
            "percona",
            "{cluster}-primary",
            "{cluster}-replicas",
            secret_selector=_PGO_SELECTOR,
            user_keys=("user",),
            tls=True,
        ),
        Preset(
            "cnpg",
            "{cluster}-rw",
            "{cluster}-ro",
            secret_selector="cnpg.io/cluster={cluster},cnpg.io/userType",
        ),
        Preset("kubedb", "{cluster}", "{cluster}-standby", secret_names=("{cluster}-auth",)),
        Preset(
            "stackgres",
            "{cluster}",
            "{cluster}-replicas",
            secret_selector="app=StackGresCluster,stackgres.io/cluster-name={cluster}",
            user_keys=("superuser-username",),
            password_keys=("superuser-password",),
        ),
        Preset(
            "bitnami",
            "{cluster}-primary",
            "{cluster}-read",
            secret_names=("{cluster}",),
            password_keys=("postgres-password",),
            fixed_users=(("postgres-password", "postgres"),),
        ),
        Preset("pgset", "pgset-master", "pgset-replica"),
    )
}
