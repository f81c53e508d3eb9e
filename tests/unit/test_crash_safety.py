"""SIGKILL `pgpoolsync run` at random moments during many applies: pool_passwd is always a whole
old or whole new file, mode 0600, and no temp file is ever taken for the real one."""

from __future__ import annotations

import os
import random
import signal
import stat
import subprocess
import time
from pathlib import Path

from devcluster import pgpoolsync_exe
from pgpoolsync.core import passwd

N_USERS = 100  # a pool_passwd of ~5 KB: larger than one write() page would need, torn shows


def _write_secrets(root: Path, generation: int) -> None:
    for i in range(N_USERS):
        d = root / f"u{i:03d}"
        if not d.exists():
            d.mkdir(parents=True)
            (d / "username").write_text(f"user{i:03d}")
        tmp = d / ".password.tmp"
        tmp.write_text(f"gen{generation}-pw{i}")
        os.replace(tmp, d / "password")  # each key changes atomically, like kubelet


def _decrypt(key: bytes, entry: str) -> str:
    import base64

    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    assert entry.startswith("AES")
    k, iv = passwd.derive_key_iv(key)
    dec = Cipher(algorithms.AES(k), modes.CBC(iv)).decryptor()
    data = dec.update(base64.b64decode(entry[3:])) + dec.finalize()
    unpad = padding.PKCS7(128).unpadder()
    return (unpad.update(data) + unpad.finalize()).decode()


def _check(path: Path, key: bytes, seen: set[int]) -> str:
    data = path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = data.split("\n")
    assert lines[-1] == "", "the file must end with a newline (not cut)"
    users = []
    for line in lines[:-1]:
        user, _, secret = line.partition(":")
        users.append(user)
        # each entry must be one that some generation wrote for that user
        plain = _decrypt(key, secret)
        gen, _, rest = plain.partition("-pw")
        assert rest == str(int(user[4:])) and int(gen[3:]) in seen, line
    assert users == [f"user{i:03d}" for i in range(N_USERS)], "all users, in order"
    return data


def test_sigkill_during_applies_never_leaves_a_torn_pool_passwd(tmp_path: Path) -> None:
    rng = random.Random(7)
    secrets, config = tmp_path / "secrets", tmp_path / "config"
    key = b"crash-test-key"
    (tmp_path / "key").write_bytes(key + b"\n")
    generation = 0
    _write_secrets(secrets, generation)
    seen = {0}
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PGPOOL_PCP_USER": "u",
        "PGPOOL_PCP_PASSWORD": "p",
        "PGPOOL_PARAMS_PCP_PORT": "1",
    }
    argv = [
        pgpoolsync_exe(),
        "--log-level",
        "WARNING",
        "run",
        "--config-dir",
        str(config),
        "--secrets-dir",
        str(secrets),
        "--primary-host",
        "db",
        "--pool-key-file",
        str(tmp_path / "key"),
        "--listen",
        "127.0.0.1:0",
        "--resync-seconds",
        "1",
    ]
    applies = 0
    kills = 0
    versions: set[str] = set()
    while applies < 200:
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + rng.uniform(0.3, 1.2)
        while time.monotonic() < deadline:
            generation += 1
            seen.add(generation)
            _write_secrets(secrets, generation)
            applies += 1
            time.sleep(rng.uniform(0, 0.02))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        if (config / "pool_passwd").exists():
            versions.add(_check(config / "pool_passwd", key, seen))
        leftovers = (
            [p.name for p in config.iterdir() if p.name.endswith(".tmp")] if config.exists() else []
        )
        # a kill between create and rename may leave a temp file; it is never the real name
        assert all(name.startswith(".") for name in leftovers)
    assert kills >= 5
    assert len(versions) >= 3, "pgpoolsync must really have applied between kills"
    assert (config / "pool_passwd").exists()
