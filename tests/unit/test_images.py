"""The images, without a container engine: lint the Dockerfiles, and install the wheel into a fresh
venv the way images/pgpoolsync/Dockerfile does, then run its entrypoint commands."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from pgpoolsync.core import versions

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted((ROOT / "images").glob("*/Dockerfile"))


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfile_passes_hadolint(dockerfile: Path) -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run(
        [hadolint, str(dockerfile)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_images_run_as_a_numeric_non_root_user_without_a_wrapper_shell() -> None:
    for dockerfile in DOCKERFILES:
        text = dockerfile.read_text()
        users = [ln.split()[1] for ln in text.splitlines() if ln.startswith("USER ")]
        assert users and all(u.split(":")[0].isdigit() and u != "0" for u in users), dockerfile
        entry = next(ln for ln in text.splitlines() if ln.startswith("ENTRYPOINT"))
        assert entry.startswith('ENTRYPOINT ["'), dockerfile  # exec form: PID 1 gets signals
        assert "sh" not in entry.split(",")[0], dockerfile


def test_wheel_installs_into_a_fresh_venv_and_the_entrypoints_run(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--wheel-dir",
            str(wheels),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    [wheel] = list(wheels.glob("pgpoolsync-*.whl"))
    target = tmp_path / "venv"
    venv.create(target, with_pip=False, system_site_packages=False)
    # Dependencies come from the test environment's site-packages (no network needed); the
    # project itself comes only from the wheel, as in the image.
    site = next(p for p in sys.path if p.endswith("site-packages"))
    pth = next((target / "lib").glob("python3*/site-packages"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(pth),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    (pth / "deps.pth").write_text(site + "\n")
    env = {
        "PATH": f"{target / 'bin'}:{os.environ.get('PATH', '')}",
        "HOME": str(tmp_path),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    py = str(target / "bin" / "python")
    for args in (["--help"], ["run", "--help"], ["exporter", "--help"], ["render", "--help"]):
        out = subprocess.run(
            [py, "-c", "import sys; from pgpoolsync.cli import main; sys.exit(main())", *args],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            cwd=tmp_path,
        )
        assert out.returncode == 0, (args, out.stderr)
    secrets = tmp_path / "s" / "app"
    secrets.mkdir(parents=True)
    (secrets / "username").write_text("app")
    (secrets / "password").write_text("pw")
    config = tmp_path / "etc-pgpool"
    out = subprocess.run(
        [
            py,
            "-c",
            "import sys; from pgpoolsync.cli import main; sys.exit(main())",
            "run",
            "--once",
            "--config-dir",
            str(config),
            "--secrets-dir",
            str(tmp_path / "s"),
            "--primary-host",
            "db",
        ],
        env={**env, "PGPOOL_PCP_USER": "u", "PGPOOL_PCP_PASSWORD": "p"},
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert (config / "pool_passwd").read_text().startswith("app:AES")
    import pgpoolsync

    loaded = subprocess.run(
        [py, "-c", "import pgpoolsync; print(pgpoolsync.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout
    assert str(pth) in loaded and pgpoolsync.__file__ not in loaded


def pinned_pgpool(image: str) -> str:
    """The pgpool2 package version images/<image>/Dockerfile installs (comments aside): the
    version an image test must find."""
    text = (ROOT / "images" / image / "Dockerfile").read_text()
    code = "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#"))
    found = re.findall(r"pgpool2=(\d+\.\d+\.\d+)", code)
    assert len(found) == 1, (image, found)
    return str(found[0])


def test_the_default_pgpool_version_is_the_one_the_images_and_manifests_run() -> None:
    for name in ("pgpool", "pgpool-dropin"):
        assert pinned_pgpool(name).rsplit(".", 1)[0] == versions.DEFAULT_PGPOOL_VERSION, name
    for manifest in (ROOT / "manifests").rglob("*.yaml"):
        text = manifest.read_text()
        set_here = re.findall(r"PGPOOLSYNC_PGPOOL_VERSION\s*\n\s*value:\s*\"?([\d.]+)", text)
        assert set(set_here) <= {versions.DEFAULT_PGPOOL_VERSION}, manifest
