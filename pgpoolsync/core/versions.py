"""The pgpool versions the files are written for, and what each version renamed or added.

A leaf of the core (imports nothing): supporting a new pgpool release starts here; what
``core/params.py`` does with these facts (both names, or the one the target reads, and a
warning for a parameter the target does not know) lives there.
"""

from __future__ import annotations

# pgpool versions the files are written for (CI runs 4.6 and 4.3; 4.7 was checked once by hand,
# docs/pgpool-facts.md), and the one assumed when none is given: what the images run.
PGPOOL_VERSIONS = ("4.3", "4.4", "4.5", "4.6", "4.7")
DEFAULT_PGPOOL_VERSION = "4.6"
# Renamed parameters: (old name, new name, the version that renamed it, written under both).
# socket_dir: the newer pgpool ignores the old name (an INFO line only) and the older one the new
# name, so both are written. logdir: under the one name the target reads, with the value given
# under either, since 4.7 warns about `logdir`; 4.7 always gets a work_dir (4.7.0 with neither
# writes /pgpool_status, docs/pgpool-facts.md).
RENAMED_PARAMS = (
    ("socket_dir", "unix_socket_directories", "4.4", True),
    ("logdir", "work_dir", "4.7", False),
)
# pgpool's compiled-in pid_file_name (DEFAULT_PID_FILE_NAME, src/include/pool.h): work_dir's
# default for 4.7 is its directory, the run directory pgpool must be able to write anyway.
PGPOOL_PID_FILE = "/var/run/pgpool/pgpool.pid"
# Parameters a pgpool older than the version given does not know (and ignores); read in
# src/config/pool_config_variables.c of each stable branch.
ADDED_PARAMS = {
    "process_management_mode": "4.4",
    "process_management_strategy": "4.4",
    "min_spare_children": "4.4",
    "max_spare_children": "4.4",
    "delay_threshold_by_time": "4.4",
    "trusted_server_command": "4.4",
    "unix_socket_group": "4.4",
    "unix_socket_permissions": "4.4",
    "log_pcp_processes": "4.5",
    "user_redirect_preference_list": "4.5",
    "log_backend_messages": "4.6",
    "recovery_database": "4.7",
    "wd_listen_address": "4.7",
    "wd_listen_port": "4.7",
    "wd_heartbeat_listen_addresses": "4.7",
    "wd_heartbeat_listen_port": "4.7",
}


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in version.split(".")[:2])
