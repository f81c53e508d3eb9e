"""The layering, enforced: which module may import which I/O library, and which way data flows.

Read from the source with ``ast`` (every import, including the lazy ones inside functions)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "pgpoolsync"

# library → the only module allowed to import it
ONLY_IN = {
    "kubernetes": "sources/kube.py",
    "watchdog": "sources/dirsource.py",
    "prometheus_client": "report/metrics.py",
    "psycopg": "exporter/scrape.py",
    "jinja2": "core/render.py",
}
SOCKETS = {"socket", "ssl", "http", "urllib", "urllib3"}
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


# Also allowed, until the lead unifies them at merge: the replica-lag probe talks to the primary
# with psycopg (pgpool/lagprobe.py) while another change splits exporter/ (issue 26).
ALSO_IN = {"psycopg": ("pgpool/lagprobe.py",)}


@pytest.mark.parametrize("library", sorted(ONLY_IN))
def test_each_io_library_is_imported_in_exactly_one_module(library: str) -> None:
    users = sorted(m for m, names in MODULES.items() if library in {_top(n) for n in names})
    assert users == sorted([ONLY_IN[library], *ALSO_IN.get(library, ())])


def test_the_core_does_no_io() -> None:
    for module, names in MODULES.items():
        if module.startswith("core/"):
            bad = {_top(n) for n in names} & (IO | set(ONLY_IN) - {"jinja2"})
            assert not bad, f"{module} imports {bad}"
            outside = {n for n in names if n.startswith("pgpoolsync.") and ".core" not in n}
            assert not outside, f"{module} imports {outside} from outside the core"


def test_sockets_are_used_only_on_the_pgpool_side_and_by_the_http_edges() -> None:
    allowed = ("pgpool/", "sources/kube.py", "report/metrics.py", "exporter/")
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
            assert not {n for n in ours if not n.startswith("pgpoolsync.exporter")}, module


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
        "import sys, pgpoolsync.cli, pgpoolsync.sources.kube, pgpoolsync.sources.kubesource, "
        "pgpoolsync.rollout; print(sorted(m for m in sys.modules if m.startswith('kubernetes')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = ast.literal_eval(out.stdout.strip())
    assert "kubernetes.client" in loaded  # the import really happened
    assert not [m for m in loaded if m.startswith("kubernetes.aio")], loaded
    for dockerfile in ("pgpoolsync", "pgpool-dropin"):
        text = (PACKAGE.parent / "images" / dockerfile / "Dockerfile").read_text()
        assert "site-packages/kubernetes/aio" in text, dockerfile
