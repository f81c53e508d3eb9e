"""What pgpool takes only at start: the one rule behind restart-required (core/changes.py) and
the rollout's restart hash (core/rollout.py). Pure.

From docs/pgpool-facts.md, "Reload and what pgpool runs with"; in pgpool's source, the
CFGCXT_INIT variables of src/config/pool_config_variables.c. An existing backend's address is
start-only (a new slot is reloadable, but starts down); of ``backend_flagN`` only
``ALWAYS_PRIMARY`` is (a reload cannot remove it; the rest is reloadable, and the topology
actuator changes it for a moment around a detach). Every ``ssl*`` setting is read at start.
"""

from __future__ import annotations

import re

RESTART_PARAMS = frozenset(
    {
        "backend_clustering_mode",
        "listen_addresses",
        "port",
        "pcp_listen_addresses",
        "pcp_port",
        "socket_dir",
        "unix_socket_directories",
        "pcp_socket_dir",
        "num_init_children",
        "max_pool",
        "connection_cache",
        "load_balance_mode",
        "child_life_time",
        "connection_life_time",
        "child_max_connections",
        "reserved_connections",
        "authentication_timeout",
        "pool_passwd",
        "pid_file_name",
        "logdir",
        "work_dir",  # logdir's name from 4.7
        "wd_ipc_socket_dir",
        "serialize_accept",
        "listen_backlog_multiplier",
        "memory_cache_enabled",
        "use_watchdog",
    }
)
_BACKEND_ADDRESS = re.compile(r"^backend_(hostname|port|data_directory)\d+$")
_BACKEND_FLAG = re.compile(r"^backend_flag\d+$")


def start_only(name: str) -> bool:
    """A parameter whose every change needs a restart."""
    return name in RESTART_PARAMS or name.startswith("ssl") or bool(_BACKEND_ADDRESS.match(name))


def is_flag(name: str) -> bool:
    return bool(_BACKEND_FLAG.match(name))


def flag_part(flag: str) -> str:
    """The start-only part of a ``backend_flagN`` value: ``ALWAYS_PRIMARY`` or nothing."""
    return "ALWAYS_PRIMARY" if "ALWAYS_PRIMARY" in flag else ""
