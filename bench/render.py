"""pool_passwd entries per second (AES and md5), beside a loop of the real pg_enc.

    python -m bench.render [--entries 20000] [--pg-enc 200]

Prints a table and writes bench/results/render.json. Target: >= 50,000 AES entries/s.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import write
from pgpoolsync.core import build, model, render


def _state(n: int, fmt: str) -> model.DesiredState:
    creds = tuple(
        model.Credential(f"user{i:05d}", f"password-{i}-x:y", model.Origin("bench", str(i)))
        for i in range(n)
    )
    state = build.build(
        model.Inputs(
            backends=(model.Backend("db", 5432, model.PRIMARY_FLAG),),
            credentials=creds,
            password_format=fmt,
        )
    ).state
    assert state is not None
    return state


def rate(n: int, fmt: str, *, key: bytes) -> float:
    """Entries/s of one render. AES entries are memoised per pool key (one rotation re-encrypts
    one password), so a fresh ``key`` measures encryption and a reused one the memo."""
    state = _state(n, fmt)
    t0 = time.perf_counter()
    text = render.render(state, pool_key=key)["pool_passwd"]
    elapsed = time.perf_counter() - t0
    assert text.count("\n") == n
    return n / elapsed


def pg_enc_rate(n: int) -> float:
    with tempfile.TemporaryDirectory() as d:
        key = Path(d) / "key"
        key.write_text("bench-key\n")
        key.chmod(0o600)
        t0 = time.perf_counter()
        for i in range(n):
            subprocess.run(
                ["pg_enc", "-k", str(key), f"password-{i}-x:y"], capture_output=True, check=True
            )
        return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--entries", type=int, default=20000)
    ap.add_argument("--pg-enc", type=int, default=200)
    args = ap.parse_args()
    aes = max(rate(args.entries, "aes", key=f"bench-key-{i}".encode()) for i in range(3))
    memo = max(rate(args.entries, "aes", key=b"bench-key-0") for _ in range(3))
    md5 = max(rate(args.entries, "md5", key=b"bench-key-0") for _ in range(3))
    real = pg_enc_rate(args.pg_enc)
    print(f"{'pool_passwd entries/s':36}{'':>4}")
    print(f"{'pgpoolsync AES (each encrypted)':36}{aes:12,.0f}")
    print(f"{'pgpoolsync AES re-render (memoised)':36}{memo:12,.0f}")
    print(f"{'pgpoolsync md5':36}{md5:12,.0f}")
    print(f"{'pg_enc loop (one per call)':36}{real:12,.0f}")
    print(
        f"AES vs pg_enc: {aes / real:,.0f}x; target >= 50,000/s: "
        f"{'met' if aes >= 50000 else 'MISSED'}"
    )
    print(
        "wrote",
        write(
            "render",
            {
                "entries": args.entries,
                "aes_per_s": aes,
                "aes_memoised_rerender_per_s": memo,
                "md5_per_s": md5,
                "pg_enc_per_s": real,
                "target_aes_per_s": 50000,
            },
        ),
    )


if __name__ == "__main__":
    main()
