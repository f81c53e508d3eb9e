""".ci/debian-mirror: the Debian mirror the scripts use comes from the machine's own apt
configuration (one-line and deb822 formats), never from a host written in the repository."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / ".ci" / "debian-mirror"
VENDOR = "deb https://vendor.example/apt cloud-sdk-bookworm main\n"


def _etc(tmp_path: Path, files: dict[str, str], *, codename: str = "bookworm") -> Path:
    etc = tmp_path / "etc"
    (etc / "apt" / "sources.list.d").mkdir(parents=True)
    (etc / "os-release").write_text(f"ID=debian\nVERSION_CODENAME={codename}\n")
    for name, text in files.items():
        (etc / "apt" / name).write_text(text)
    return etc


def _mirror(etc: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), str(etc)], capture_output=True, text=True, check=False
    )


def test_a_one_line_sources_list_entry_for_the_machine_s_release_is_the_mirror(
    tmp_path: Path,
) -> None:
    etc = _etc(
        tmp_path,
        {
            "sources.list": "# deb http://old.example/debian bookworm main\n"
            "deb [arch=amd64 signed-by=/k.gpg] http://sec.example/debian-security "
            "bookworm-security main\n"
            "deb [ signed-by=/k.gpg ] http://mirror.example/debian/ bookworm main contrib\n",
            "sources.list.d/vendor.list": VENDOR,
        },
    )
    got = _mirror(etc)
    assert (got.returncode, got.stdout) == (0, "http://mirror.example/debian\n"), got.stderr


def test_a_deb822_entry_is_read_and_disabled_security_and_vendor_entries_are_not(
    tmp_path: Path,
) -> None:
    etc = _etc(
        tmp_path,
        {
            "sources.list.d/debian.sources": "Types: deb\n"
            "URIs: http://disabled.example/debian\n"
            "Suites: trixie\n"
            "Enabled: no\n"
            "Components: main\n\n"
            "Types: deb\n"
            "URIs: http://sec.example/debian-security\n"
            "Suites: trixie-security\n"
            "Components: main\n\n"
            "Types: deb deb-src\n"
            "# a comment inside the paragraph\n"
            "URIs:\n"
            "  http://mirror.example/debian\n"
            "  http://second.example/debian\n"
            "Suites: trixie trixie-updates\n"
            "Components: main\n"
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
            "sources.list.d/node.sources": "Types: deb\nURIs: https://node.example/x\n"
            "Suites: nodistro\nComponents: main\n",
        },
        codename="trixie",
    )
    got = _mirror(etc)
    assert (got.returncode, got.stdout) == (0, "http://mirror.example/debian\n"), got.stderr


def test_no_entry_for_the_machine_s_release_is_an_error_naming_the_files_read(
    tmp_path: Path,
) -> None:
    etc = _etc(
        tmp_path,
        {"sources.list.d/vendor.list": VENDOR},
    )
    got = _mirror(etc)
    assert got.returncode == 1 and got.stdout == ""
    assert "no enabled apt entry for Debian's archive (suite bookworm)" in got.stderr
    assert str(etc / "apt" / "sources.list.d" / "vendor.list") in got.stderr


def test_a_machine_without_a_release_codename_is_an_error_naming_os_release(
    tmp_path: Path,
) -> None:
    etc = _etc(tmp_path, {"sources.list": "deb http://mirror.example/debian bookworm main\n"})
    (etc / "os-release").write_text("ID=debian\n")
    got = _mirror(etc)
    assert got.returncode == 1
    assert f"no VERSION_CODENAME in {etc}/os-release" in got.stderr


def test_the_ci_scripts_name_no_debian_mirror_host() -> None:
    for script in (ROOT / ".ci").iterdir():
        if script.is_file():
            assert "debian.org" not in script.read_text(), script
