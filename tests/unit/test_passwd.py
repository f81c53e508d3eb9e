"""pool_passwd/pcp.conf encodings, byte-compared with pgpool's own pg_enc and pg_md5."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from pgpoolsync.core import passwd

# Awkward passwords: colon, backslash, quotes, spaces, unicode, 1 and 79 bytes, block edges.
AWKWARD = [
    "dev",
    "x",
    "a:b",
    "a\\b",
    "a\\:b\\\\",
    "it's",
    'say "hi"',
    "with space",
    " lead",
    "trail ",
    "ünïcödé-パスワード",
    "emoji-\U0001f511",
    "$dollar$",
    "`tick`",
    "semi;colon",
    "#hash",
    "p" * 15,
    "p" * 16,
    "p" * 17,
    "p" * 31,
    "p" * 32,
    "p" * 79,
    "é" * 39 + "x",
    "AESlooks-like-aes",
    "TEXTlooks-like-text",
    "md5" + "0" * 31,
]


def _pg_enc(key_file: Path, password: str) -> str:
    out = subprocess.run(
        ["pg_enc", "-k", str(key_file), password], capture_output=True, text=True, check=True
    ).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("pool_passwd string: "))
    return line.removeprefix("pool_passwd string: ")


def test_aes_matches_the_documented_pg_enc_example() -> None:
    assert passwd.AesEncoder(b"big secret").entry("dev") == "AESr+9xCFIYnHH+OodrKozLlQ=="


@pytest.mark.parametrize("key", [b"big secret", b"K" * 200, b"short"])
def test_aes_entries_are_byte_identical_to_pg_enc(tmp_path: Path, key: bytes) -> None:
    key_file = tmp_path / "key"
    key_file.write_bytes(key + b"\n")
    key_file.chmod(0o600)
    encoder = passwd.AesEncoder(key)
    mismatches = [p for p in AWKWARD if encoder.entry(p) != _pg_enc(key_file, p)]
    assert mismatches == []


def test_md5_entries_are_byte_identical_to_pg_md5(tmp_path: Path) -> None:
    conf = tmp_path / "pgpool.conf"
    conf.write_text(f"pool_passwd = '{tmp_path / 'pool_passwd'}'\n")
    users = ["alice", "bob_2", "Ünï", "x"]
    for user, password in zip(users * 7, AWKWARD, strict=False):
        (tmp_path / "pool_passwd").write_text("")
        subprocess.run(
            ["pg_md5", "-m", "-f", str(conf), "-u", user, password], capture_output=True, check=True
        )
        written = (tmp_path / "pool_passwd").read_text().strip()
        assert written == f"{user}:{passwd.md5_entry(user, password)}", password


def test_md5_entry_is_what_postgresql_stores() -> None:
    expected = "md5" + hashlib.md5(b"secretalice").hexdigest()  # noqa: S324
    assert passwd.md5_entry("alice", "secret") == expected


def test_pool_passwd_fields_escape_colon_and_backslash() -> None:
    assert passwd.pool_passwd_line("co:l", "TEXTa:b\\c") == "co\\:l:TEXTa\\:b\\\\c"


def test_pcp_line_is_user_and_md5_of_password() -> None:
    assert passwd.pcp_line("admin", "pw") == "admin:" + hashlib.md5(b"pw").hexdigest()  # noqa: S324


@pytest.mark.parametrize(
    ("value", "hashed"),
    [
        ("md5" + "a" * 32, True),
        ("SCRAM-SHA-256$4096:abc$def:ghi", True),
        ("md5" + "a" * 31, False),
        ("md5" + "g" * 32, False),
        ("md5password-that-is-long-enough-xx", False),
        ("plain", False),
    ],
)
def test_already_hashed_values_are_recognised(value: str, hashed: bool) -> None:
    assert passwd.looks_hashed(value) is hashed


def test_aes_refuses_an_empty_pool_key() -> None:
    with pytest.raises(ValueError, match="empty"):
        passwd.AesEncoder(b"")


def test_pool_passwd_reads_back_what_is_written_whatever_the_characters() -> None:
    entries = {"a:b": "AESxyz", "c\\d": "TEXTp:w\\x\u2028y", "e": "md5" + "1" * 32}
    text = "\n".join(passwd.pool_passwd_line(u, e) for u, e in entries.items()) + "\n"
    assert passwd.parse_pool_passwd(text) == entries
