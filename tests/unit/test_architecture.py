"""The layering, enforced: which module may import which I/O library, and which way data flows.

Read from the source with ``ast`` (every import, including the lazy ones inside functions)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "pgpoolsync"

# library → the only module (or, ending in "/", the only package) allowed to import it
ONLY_IN = {
    "kubernetes": "kube/",
    "watchdog": "sources/dirsource.py",
    "prometheus_client": "report/metrics.py",
    "psycopg": "exporter/scrape.py",
    "jinja2": "core/render.py",
}
SOCKETS = {"socket", "ssl", "http", "urllib", "urllib3"}
# Modules that import nothing of the package: what the exporter may use outside its own rooms.
LEAVES = ("pgpoolsync.envflags", "pgpoolsync.httpserve", "pgpoolsync.logsetup")
# What the exporter's process must never load: render's and run's libraries and rooms.
NOT_IN_THE_EXPORTER = (
    "pgpoolsync.core",
    "pgpoolsync.settings",
    "pgpoolsync.cli",
    "pgpoolsync.report",
    "pgpoolsync.sources",
    "pgpoolsync.pgpool",
    "jinja2",
    "cryptography",
    "kubernetes",
    "prometheus_client",
    "watchdog",
    "_ssl",  # libpq has its own OpenSSL; Python's would be a second one (4 MiB)
)
IO = {"os", "pathlib", "subprocess", "threading", "shutil", "io", "tempfile", *SOCKETS}


def _modules() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
                names.update(f"{node.module}.{a.name}" for a in node.names)
        out[path.relative_to(PACKAGE).as_posix()] = names
    return out


MODULES = _modules()


def _top(name: str) -> str:
    return name.split(".", maxsplit=1)[0]


# Also allowed: psycopg has one home per process that talks to PostgreSQL. The exporter's process
# must load nothing of the sidecar's rooms (test below), and the sidecar's lag probe
# (pgpool/lagprobe.py) must not reach into the exporter: a shared module would tie the two.
ALSO_IN = {"psycopg": ("pgpool/lagprobe.py",)}


@pytest.mark.parametrize("library", sorted(ONLY_IN))
def test_each_io_library_is_imported_only_in_its_home(library: str) -> None:
    users = sorted(m for m, names in MODULES.items() if library in {_top(n) for n in names})
    home = ONLY_IN[library]
    if home.endswith("/"):
        assert users, library  # the walk really finds its users
        assert all(m.startswith(home) for m in users), users
    else:
        assert users == sorted([home, *ALSO_IN.get(library, ())])


def test_the_core_does_no_io() -> None:
    for module, names in MODULES.items():
        if module.startswith("core/"):
            bad = {_top(n) for n in names} & (IO | set(ONLY_IN) - {"jinja2"})
            assert not bad, f"{module} imports {bad}"
            outside = {n for n in names if n.startswith("pgpoolsync.") and ".core" not in n}
            assert not outside, f"{module} imports {outside} from outside the core"


def test_sockets_are_used_only_on_the_pgpool_side_and_by_the_http_edges() -> None:
    allowed = ("pgpool/", "report/metrics.py", "exporter/")
    for module, names in MODULES.items():
        if {_top(n) for n in names} & {"socket", "ssl"}:
            assert module.startswith(allowed), module


def test_data_flows_one_way_sources_never_import_the_loop_or_the_pgpool_side() -> None:
    for module, names in MODULES.items():
        ours = {n for n in names if n.startswith("pgpoolsync.")}
        if module.startswith("sources/"):
            assert not {
                n
                for n in ours
                if n.startswith(("pgpoolsync.reconcile", "pgpoolsync.pgpool", "pgpoolsync.cli"))
            }, module
        if module.startswith("pgpool/"):
            assert not {
                n
                for n in ours
                if n.startswith(("pgpoolsync.sources", "pgpoolsync.reconcile", "pgpoolsync.report"))
            }, module
        if module.startswith("exporter/"):
            outside = {n for n in ours if not n.startswith(("pgpoolsync.exporter", *LEAVES))}
            assert not outside, module


def test_the_cli_loads_the_kubernetes_client_only_for_kube() -> None:
    import subprocess
    import sys

    code = (
        "import sys, pgpoolsync.cli; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('kubernetes', 'psycopg', 'watchdog')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = {m.split(".")[0] for m in ast.literal_eval(out.stdout.strip())}
    assert loaded == {"watchdog"}


def test_the_kubernetes_client_s_asyncio_half_is_never_loaded_so_the_images_leave_it_out() -> None:
    import subprocess
    import sys

    code = (
        "import sys, pgpoolsync.cli, pgpoolsync.kube.api, pgpoolsync.kube.watch, "
        "pgpoolsync.kube.events, pgpoolsync.kube.deployments, pgpoolsync.sources.kubesource, "
        "pgpoolsync.restart.rollout; "
        "print(sorted(m for m in sys.modules if m.startswith('kubernetes')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = ast.literal_eval(out.stdout.strip())
    assert "kubernetes.client" in loaded  # the import really happened
    assert not [m for m in loaded if m.startswith("kubernetes.aio")], loaded
    for dockerfile in ("pgpoolsync", "pgpool-dropin"):
        text = (PACKAGE.parent / "images" / dockerfile / "Dockerfile").read_text()
        assert "site-packages/kubernetes/aio" in text, dockerfile


def test_the_leaves_the_exporter_shares_import_nothing_of_the_package() -> None:
    for leaf in LEAVES:
        module = leaf.removeprefix("pgpoolsync.") + ".py"
        ours = {n for n in MODULES[module] if n.startswith("pgpoolsync")}
        assert not ours, f"{module} imports {ours}"


def test_the_console_script_is_the_entry_that_picks_the_command() -> None:
    text = (PACKAGE.parent / "pyproject.toml").read_text()
    assert 'pgpoolsync = "pgpoolsync.main:main"' in text
    main_imports = {n for n in MODULES["main.py"] if n.startswith("pgpoolsync.")}
    assert {n.split(".")[1] for n in main_imports} == {"envflags", "exporter", "cli"}


def test_the_exporter_process_loads_neither_the_core_nor_render_s_and_run_s_libraries(
    tmp_path: Path,
) -> None:
    """The running ``pgpoolsync exporter``, after a scrape (psycopg loaded, pgpool asked):
    every module it imported, lazily too, read from ``-X importtime``."""
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as s:  # a port nothing listens on: the scrape says pgpool2_up 0
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DATA_SOURCE_URI": f"127.0.0.1:{closed}/postgres?sslmode=disable",
        "DATA_SOURCE_PASS": "not-a-secret",
    }
    err = tmp_path / "stderr"
    with err.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-X", "importtime", "-m", "pgpoolsync", "exporter", "--listen", ":0"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=out,
        )
    try:
        port = None
        for _ in range(300):
            for line in err.read_text().splitlines():
                if "exporting pgpool metrics" in line:
                    port = int(line.rsplit(":", 1)[1])
            if port is not None or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert port is not None, err.read_text()[-2000:]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            text = r.read().decode()
        assert "pgpool2_up 0.0" in text
    finally:
        proc.terminate()
        proc.wait(10)
    loaded = {
        line.split("|")[2].strip()
        for line in err.read_text().splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    }
    assert {"psycopg", "pgpoolsync.exporter.scrape"} <= loaded  # the scrape's imports are seen
    bad = sorted(
        m
        for m in loaded
        if m.split(".")[0] in NOT_IN_THE_EXPORTER or m.startswith(NOT_IN_THE_EXPORTER)
    )
    assert not bad, bad


def _ours(module: str) -> set[str]:
    return {n for n in MODULES[module] if n.startswith("pgpoolsync.")}


def test_the_reporter_reads_outcomes_from_the_core_never_from_the_pgpool_side() -> None:
    for module in MODULES:
        if module.startswith("report/"):
            assert not {n for n in _ours(module) if n.startswith("pgpoolsync.pgpool")}, module


def test_the_restart_policies_know_neither_the_actuator_nor_each_other_nor_the_sources() -> None:
    policies = [m for m in MODULES if m.startswith("restart/") and m != "restart/__init__.py"]
    assert sorted(policies) == ["restart/rollout.py", "restart/signal.py"]
    # The rollout policy reads the API calls' one error type; the calls come in as a protocol.
    also = {"restart/rollout.py": {"pgpoolsync.kube.errors", "pgpoolsync.kube.errors.ApiError"}}
    for module in policies:
        outside = {
            n
            for n in _ours(module)
            if not n.startswith("pgpoolsync.core") and n not in also.get(module, set())
        }
        assert not outside, f"{module} imports {outside}"
    assert not {n for n in _ours("pgpool/actuator.py") if n.startswith("pgpoolsync.restart")}


def test_the_kube_client_layer_imports_only_itself_and_the_sources_error_type() -> None:
    """kube/ knows nothing of pgpool/, report/, restart/, the core, the loop or the command line:
    its one import from the package is the ``SourceUnavailable`` its refusal derives from."""
    kube = [m for m in MODULES if m.startswith("kube/")]
    assert "kube/watch.py" in kube
    for module in kube:
        outside = {
            n
            for n in _ours(module)
            if not n.startswith("pgpoolsync.kube")
            and (module, n)
            not in {
                ("kube/errors.py", "pgpoolsync.sources"),
                ("kube/errors.py", "pgpoolsync.sources.SourceUnavailable"),
            }
        }
        assert not outside, f"{module} imports {outside}"


# Who may call the client layer: the Kubernetes source (the client, watches, Events, the
# rollout's calls), the rollout policy and the command line (an error type each, no client).
KUBE_CALLERS = {
    "sources/kubesource.py": None,  # any of kube/
    "restart/rollout.py": {"pgpoolsync.kube.errors", "pgpoolsync.kube.errors.ApiError"},
    "cli.py": {"pgpoolsync.kube.errors", "pgpoolsync.kube.errors.KubeConfigError"},
}


def test_only_the_kube_source_sees_the_client_the_rollout_and_cli_an_error_type() -> None:
    for module in MODULES:
        if module.startswith("kube/"):
            continue
        used = {n for n in _ours(module) if n.startswith("pgpoolsync.kube")}
        if not used:
            continue
        assert module in KUBE_CALLERS, f"{module} imports {used}"
        allowed = KUBE_CALLERS[module]
        assert allowed is None or used <= allowed, f"{module} imports {used - allowed}"
    assert {n for n in _ours("sources/kubesource.py") if n.startswith("pgpoolsync.kube.watch")}


def test_sources_keep_their_metrics_through_a_protocol_not_the_report_package() -> None:
    for module in MODULES:
        if module.startswith("sources/"):
            assert not {n for n in _ours(module) if n.startswith("pgpoolsync.report")}, module


def _is_frozen_dataclass(node: ast.ClassDef) -> bool:
    return any(
        isinstance(d, ast.Call)
        and isinstance(d.func, ast.Name)
        and d.func.id == "dataclass"
        and any(k.arg == "frozen" and getattr(k.value, "value", None) is True for k in d.keywords)
        for d in node.decorator_list
    )


def test_the_model_defines_value_types_only() -> None:
    """core/model.py: frozen dataclasses, constants and ``*_origin`` constructors; the rules live
    in params.py, credentials.py and versions.py, building in build.py. Nothing else: no guarded
    or lazy definitions, no forwards."""
    tree = ast.parse((PACKAGE / "core" / "model.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            assert _is_frozen_dataclass(node), node.name
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            assert node.name.endswith("_origin"), node.name
        else:
            assert not isinstance(node, ast.If | ast.Try), ast.unparse(node)[:80]
    assert "pgpoolsync.core.build" not in MODULES["core/model.py"]
    assert "class Inputs" in ast.unparse(tree)  # the walk really read the model


# Keys only a raw Kubernetes object has: a module that reads them parses API objects.
KUBE_OBJECT_KEYS = {"metadata", "spec", "ownerReferences", "clusterIP", "targetRef", "conditions"}
# The client layer keeps and posts them; the sources turn API objects into model values; the
# rollout policy reads its Deployment.
READS_KUBE_OBJECTS = ("kube/", "sources/", "restart/rollout.py")


def test_only_the_sources_and_the_rollout_policy_read_raw_kubernetes_objects() -> None:
    readers = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)}
        if strings & KUBE_OBJECT_KEYS:
            readers.add(path.relative_to(PACKAGE).as_posix())
    assert "sources/convert.py" in readers  # the walk really finds a reader
    assert all(m.startswith(READS_KUBE_OBJECTS) for m in readers), readers


def test_the_loop_takes_plain_values_and_never_imports_the_settings() -> None:
    outside = {
        n
        for n in _ours("reconcile.py")
        if n.startswith(
            ("pgpoolsync.settings", "pgpoolsync.flags", "pgpoolsync.wiring", "pgpoolsync.cli")
        )
    }
    assert not outside, outside
    readers = sorted(m for m in MODULES if {"pgpoolsync.settings"} & {n for n in _ours(m)})
    assert readers == ["cli.py", "wiring.py"], readers


def _environ_keys(module: str) -> set[str]:
    """The string keys a module looks up in a mapping named ``environ``."""
    tree = ast.parse((PACKAGE / module).read_text())
    keys: set[str] = set()
    for node in ast.walk(tree):
        target, key = None, None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            target, key = node.func.value, node.args[0]
            if node.func.attr != "get":
                continue
        elif isinstance(node, ast.Subscript):
            target, key = node.value, node.slice
        if (
            isinstance(target, ast.Name)
            and target.id == "environ"
            and isinstance(key, ast.Constant)
            and isinstance(key.value, str)
        ):
            keys.add(key.value)
    return keys


def test_the_image_s_environment_conventions_are_read_in_one_module() -> None:
    readers = {m: keys for m in MODULES if (keys := _environ_keys(m))}
    assert "PGPOOL_PCP_USER" in readers["sources/env.py"]  # the walk finds the reader
    # The exporter reads pgpool2_exporter's own DATA_SOURCE_* variables.
    assert set(readers) == {"sources/env.py", "exporter/conninfo.py"}, readers


def test_building_the_parser_reads_no_file() -> None:
    names = MODULES["flags.py"]
    assert not {_top(n) for n in names} & IO, names
    tree = ast.parse((PACKAGE / "flags.py").read_text())
    calls = {
        n.func.attr
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
    }
    assert "add" in calls  # the walk sees the flags being declared
    assert not calls & {"is_file", "exists", "read_text", "read_bytes", "open", "stat"}, calls


def test_bench_imports_nothing_from_tests() -> None:
    """The harness bench/ shares with the tests (the API double, the drills, the real cluster's
    harness, ``pgpoolsync run`` as a subprocess) lives in devcluster/."""
    used: set[str] = set()
    for path in sorted((PACKAGE.parent / "bench").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            used |= {n for n in names if n.split(".")[0] in {"tests", "devcluster"}}
    assert "devcluster.kubeapi" in used  # the walk sees bench's imports
    assert not {n for n in used if n.split(".")[0] == "tests"}, used


def test_devcluster_is_split_by_job_and_imports_nothing_from_tests() -> None:
    root = PACKAGE.parent / "devcluster"
    jobs = sorted(p.stem for p in root.glob("*.py") if not p.stem.startswith("__"))
    assert jobs == [
        "binaries",
        "demo",
        "drills",
        "forwarder",
        "kubeapi",
        "kubedrill",
        "kubehttp",
        "kubenode",
        "kubeobjects",
        "kubereal",
        "lagdrill",
        "netfault",
        "pgpool",
        "ports",
        "postgres",
        "runprocess",
        "sessions",
    ]
    for path in root.glob("*.py"):
        text = ast.unparse(ast.parse(path.read_text()))
        assert "import tests" not in text and "from tests" not in text, path.name
        # The harness drives the console script and the API over HTTP, never the package.
        imported = {
            name.split(".")[0]
            for node in ast.walk(ast.parse(path.read_text()))
            for name in (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
        }
        assert "pgpoolsync" not in imported, path.name
        assert len(path.read_text().splitlines()) < 400, path.name  # read in one sitting


TESTS = PACKAGE.parent / "tests"
# A test file's folder says what it needs: unit (plain values, fakes, the API double, local
# processes of our own), real (PostgreSQL and pgpool), containers (podman and the images), kube
# (a real Kubernetes from .ci/kube; its contract modules also run against the API double).
TIER_MARK = {"unit": None, "real": "real", "containers": "containers", "kube": "kube"}


def test_every_test_file_sits_in_the_folder_of_its_tier_and_carries_its_marker() -> None:
    assert not sorted(p.name for p in TESTS.glob("test_*.py")), "a test file outside a tier"
    seen = 0
    for tier, mark in TIER_MARK.items():
        for path in sorted((TESTS / tier).glob("test_*.py")):
            seen += 1
            marks = set(re.findall(r"pytest\.mark\.(real|containers|kube)\b", path.read_text()))
            if mark is None:
                assert not marks, f"{path.name} is in unit/ but marked {marks}"
            else:
                assert marks == {mark}, f"{path.name} is in {tier}/ but marked {marks or 'nothing'}"
    assert seen == len(list(TESTS.rglob("test_*.py")))
