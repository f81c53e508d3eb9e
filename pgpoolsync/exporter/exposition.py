"""The Prometheus text format (0.0.4) of the exporter's families, written without a client
library: prometheus_client's ``generate_latest`` took 1.7 ms for one scrape's ~70 samples,
nearly as long as the SHOW queries (bench/scrape), and the exporter process stays small
without it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from pgpoolsync.exporter.families import Family

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def exposition(fams: Iterable[Family]) -> bytes:
    """Families in the Prometheus text format 0.0.4, byte for byte what prometheus_client's
    ``generate_latest`` writes for the same families (labels sorted, Go-style floats), without
    its per-sample validation: names here are constants, and label values are escaped. A
    family's name is written as it is: a counter is named with ``_total`` by its family, or
    keeps pgpool2_exporter's name without it (which prometheus_client cannot write)."""
    out: list[str] = []
    # A node's labels tuple is shared by every family of its SHOW: key by identity (all are
    # alive in ``fams`` for the whole call) to skip re-hashing, sorting and escaping.
    label_text: dict[int, str] = {}
    for fam in fams:
        name, header = _header(fam.name, fam.kind, fam.help)
        out.append(header)
        for labels, value in fam.samples:
            text = repr(value)
            if len(text) > 8 or "n" in text:  # nan, inf, or a long one Go writes with e+
                text = _go_float(value)
            if labels:
                inner = label_text.get(id(labels))
                if inner is None:
                    inner = label_text[id(labels)] = ",".join(
                        f'{k}="{_escape_label(v)}"' for k, v in sorted(labels)
                    )
                out.append(f"{name}{{{inner}}} {text}\n")
            else:
                out.append(f"{name} {text}\n")
    return "".join(out).encode()


@functools.lru_cache(maxsize=512)
def _header(name: str, kind: str, help_: str) -> tuple[str, str]:
    help_ = help_.replace("\\", "\\\\").replace("\n", "\\n")
    return name, f"# HELP {name} {help_}\n# TYPE {name} {kind}\n"


def _escape_label(text: str) -> str:
    if "\\" in text or "\n" in text or '"' in text:
        return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return text


_GO_SPECIAL = {"nan": "NaN", "inf": "+Inf", "-inf": "-Inf"}


def _go_float(value: float) -> str:
    s = repr(float(value))
    if s in _GO_SPECIAL:
        return _GO_SPECIAL[s]
    dot = s.find(".")
    if value > 0 and dot > 6:  # Go switches to an exponent sooner than Python
        mantissa = f"{s[0]}.{s[1:dot]}{s[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return s
