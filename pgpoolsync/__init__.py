"""pgpoolsync: keeps Pgpool-II in step with an operator-managed PostgreSQL cluster."""

__version__ = "0.1.0"
