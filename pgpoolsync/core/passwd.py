"""pool_passwd and pcp.conf entries: the password encodings pgpool reads.

Owns the byte-exact formats: AES entries identical to ``pg_enc``, md5 entries identical to
``pg_md5 -m``, TEXT entries, the backslash escaping of pool_passwd fields, and pcp.conf lines.
Pure functions: no I/O, no validation beyond what the format itself needs (credentials.py
validates).
"""

from __future__ import annotations

import base64
import hashlib
import re

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

AES_PREFIX = "AES"
MD5_PREFIX = "md5"
TEXT_PREFIX = "TEXT"
SCRAM_PREFIX = "SCRAM-SHA-256$"

# pgpool reads at most 128 characters of the (unescaped) secret field; docs/pgpool-facts.md.
MAX_FIELD = 128
MAX_AES_PASSWORD_BYTES = 79
MAX_TEXT_PASSWORD_BYTES = MAX_FIELD - len(TEXT_PREFIX)
# PostgreSQL role names are at most NAMEDATALEN - 1 bytes.
MAX_USER_BYTES = 63

FORMATS = ("aes", "md5", "text", "verbatim")  # verbatim: the values are entries already


def derive_key_iv(pool_key: bytes) -> tuple[bytes, bytes]:
    """OpenSSL EVP_BytesToKey(aes-256-cbc, sha1, no salt, count=1): 32-byte key, 16-byte IV."""
    out = b""
    block = b""
    while len(out) < 48:
        block = hashlib.sha1(block + pool_key, usedforsecurity=False).digest()
        out += block
    return out[:32], out[32:48]


class AesEncoder:
    """Encrypts passwords the way ``pg_enc`` does; the key derivation is done once per key.

    Entries are deterministic, so they are memoised: re-rendering 10,000 users after one
    rotation encrypts one password, not 10,000.
    """

    __slots__ = ("_cipher", "_memo")
    MEMO_MAX = 200_000

    def __init__(self, pool_key: bytes) -> None:
        if not pool_key:
            raise ValueError("the pool key is empty")
        key, iv = derive_key_iv(pool_key)
        self._cipher = Cipher(algorithms.AES(key), modes.CBC(iv))
        self._memo: dict[str, str] = {}

    def entry(self, password: str) -> str:
        cached = self._memo.get(password)
        if cached is None:
            if len(self._memo) >= self.MEMO_MAX:
                self._memo.clear()
            cached = self._memo[password] = self._encrypt(password)
        return cached

    def _encrypt(self, password: str) -> str:
        padder = padding.PKCS7(128).padder()
        plain = padder.update(password.encode()) + padder.finalize()
        enc = self._cipher.encryptor()
        ciphertext = enc.update(plain) + enc.finalize()
        return AES_PREFIX + base64.b64encode(ciphertext).decode("ascii")


def md5_entry(user: str, password: str) -> str:
    """``"md5" + md5_hex(password + user)``, what PostgreSQL stores and ``pg_md5 -m`` writes."""
    digest = hashlib.md5((password + user).encode(), usedforsecurity=False).hexdigest()
    return MD5_PREFIX + digest


def text_entry(password: str) -> str:
    return TEXT_PREFIX + password


def escape_field(value: str) -> str:
    """Backslash-escape ``\\`` and ``:`` so pgpool splits the line where we mean it to."""
    return value.replace("\\", "\\\\").replace(":", "\\:")


def pool_passwd_line(user: str, secret: str) -> str:
    return f"{escape_field(user)}:{escape_field(secret)}"


def parse_pool_passwd(text: str) -> dict[str, str]:
    """user → secret field of a pool_passwd file (``\\`` and ``\\:`` unescaped), as pgpool splits
    it: the first unescaped ``:``. Lines without one are ignored."""
    out: dict[str, str] = {}
    for line in text.split("\n"):  # pgpool's lines end at \n only (not at U+2028 & co.)
        fields: list[str] = []
        cur: list[str] = []
        chars = iter(line)
        for ch in chars:
            if ch == "\\":
                cur.append(next(chars, ""))
            elif ch == ":" and not fields:
                fields.append("".join(cur))
                cur = []
            else:
                cur.append(ch)
        if fields and fields[0]:
            out[fields[0]] = "".join(cur)
    return out


def pcp_line(user: str, password: str) -> str:
    """pcp.conf: ``user:md5_hex(password)``."""
    digest = hashlib.md5(password.encode(), usedforsecurity=False).hexdigest()
    return f"{user}:{digest}"


_B64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")
_HEX32 = re.compile(r"^[0-9a-f]{32}$")


def is_entry(value: str) -> bool:
    """A pool_passwd entry pgpool can use as it is: md5 + 32 hex, AES + base64, TEXT + text
    (PGPOOL_SKIP_PASSWORD_ENCRYPTION=true in pgpool2_on_k8s)."""
    if value.startswith(MD5_PREFIX):
        return bool(_HEX32.match(value[len(MD5_PREFIX) :]))
    if value.startswith(AES_PREFIX):
        body = value[len(AES_PREFIX) :]
        return bool(_B64.match(body)) and len(body) % 4 == 0
    return value.startswith(TEXT_PREFIX) and len(value) > len(TEXT_PREFIX)


def is_md5_hex(value: str) -> bool:
    """What pcp.conf holds: md5 of the password, 32 lowercase hex digits."""
    return bool(_HEX32.match(value))


def pcp_verbatim_line(user: str, digest: str) -> str:
    return f"{user}:{digest}"


def looks_hashed(value: str) -> bool:
    """True for values that are already a PostgreSQL/pgpool hash rather than a password."""
    if value.startswith(SCRAM_PREFIX):
        return True
    if value.startswith(MD5_PREFIX) and len(value) == 35:
        return all(c in "0123456789abcdef" for c in value[3:])
    return False
