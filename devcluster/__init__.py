"""A local PostgreSQL primary + streaming replica and a pgpool, for the demo and the tests.

Everything lives in one base directory on loopback ports. PostgreSQL refuses to run as root, so
when we are root its processes run as the ``postgres`` user (``runuser``); pgpool runs as the
calling user so it can read the 0600 files pgpoolsync writes. Debian's packages provide the
binaries (``/usr/lib/postgresql/<v>/bin``, ``/usr/sbin/pgpool``). Passwords are set over a
psycopg connection, never passed in argv.

``python -m devcluster`` runs the demo: cluster, demo secrets, ``pgpoolsync``, pgpool.

One module per job: ``binaries`` (where PostgreSQL and pgpool are, running as ``postgres``),
``ports`` (free ports, waiting for a server or a condition), ``postgres`` (the primary and
replica), ``pgpool`` (pgpool and the login check), ``demo``, ``runprocess`` (``pgpoolsync run``
as a subprocess). The names below are the package's face.

The harness the tests and bench/ share, imported by module (not loaded with the package):
``kubeapi`` (the Kubernetes API double; its HTTP side ``kubehttp``, the objects ``kubeobjects``),
``kubereal`` (the real cluster of ``.ci/kube``), ``kubenode`` (the Deployment on its real
node), ``forwarder`` (a kube-proxy-like forwarder), ``netfault`` (dropping a port's packets),
``sessions`` (a timed stream of sessions), ``drills`` (topology drills), ``kubedrill`` (the
drills on the real node) and ``lagdrill`` (the replica-lag drill).
"""

from devcluster.binaries import pg_bindir, pgpool_binary, pgpool_version, pgpoolsync_exe
from devcluster.demo import DEMO_USERS, demo
from devcluster.pgpool import Pgpool, can_login
from devcluster.ports import free_port, wait_port, wait_ready
from devcluster.postgres import Node, PgCluster, running_cluster

__all__ = [
    "DEMO_USERS",
    "Node",
    "PgCluster",
    "Pgpool",
    "can_login",
    "demo",
    "free_port",
    "pg_bindir",
    "pgpool_binary",
    "pgpool_version",
    "pgpoolsync_exe",
    "running_cluster",
    "wait_port",
    "wait_ready",
]
