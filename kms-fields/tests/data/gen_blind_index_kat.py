#!/usr/bin/env python3
"""Known-answer vectors for kms_fields::blind_index, from an independent implementation.

Nothing here shares code with the Rust crate: Argon2id comes from argon2-cffi (the reference C
implementation, as the blind_index gem's argon2-kdf uses), PBKDF2 and HMAC from Python's
hashlib/hmac (OpenSSL), HKDF-SHA384 from `cryptography`. The key hierarchy follows the
blind_index gem's BlindIndex::KeyGenerator (ported from CipherSweet):

    root      = HKDF-SHA384(ikm = master key, salt = table, info = 0x7E*32 || bidx column, L = 32)
    index key = HMAC-SHA256(key = root, msg = pack([table, bidx column, bidx column]))
    pack      = LE u32 piece count, then per piece LE u64 byte length || bytes

Regenerate (output is deterministic):

    /path/to/venv/bin/pip install argon2-cffi cryptography
    python3 kms-fields/tests/data/gen_blind_index_kat.py > kms-fields/tests/data/blind_index_kat.json
"""

import base64
import hashlib
import hmac
import json
import struct
import sys

from argon2.low_level import Type, hash_secret_raw
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

ZERO_KEY = "0" * 64
SEQ_KEY = bytes(range(32)).hex()  # 000102...1f
# Upper-case hex: the gem (and kms-fields) accept either case.
OTHER_KEY = hashlib.sha256(b"kms-fields blind index test master key").hexdigest().upper()

PRESETS = {
    ("argon2id", "default"): {"t": 3, "m_kib": 4096},
    ("argon2id", "slow"): {"t": 4, "m_kib": 32768},
    ("pbkdf2_sha256", "default"): {"iterations": 10000},
    ("pbkdf2_sha256", "slow"): {"iterations": 100000},
}


def pack(pieces):
    out = struct.pack("<I", len(pieces))
    for p in pieces:
        out += struct.pack("<Q", len(p)) + p
    return out


def index_key(master_hex, table, column):
    master = bytes.fromhex(master_hex)
    assert len(master) == 32
    t, c = table.encode(), column.encode()
    root = HKDF(algorithm=hashes.SHA384(), length=32, salt=t, info=b"\x7e" * 32 + c).derive(master)
    return hmac.new(root, pack([t, c, c]), hashlib.sha256).digest()


def expression(name, value):
    if name is None:
        return value
    if name == "lowercase":
        return value.lower()
    if name == "trim_lowercase":
        # Ruby's strip: ASCII whitespace (incl. vertical tab) and NUL
        return value.strip(" \t\n\v\f\r\0").lower()
    raise ValueError(name)


def compute(case):
    key = index_key(case["master_key_hex"], case["table"], case["column"])
    value = expression(case["expression"], case["value"]).encode("utf-8")
    size = case["size"]
    if case["algorithm"] == "argon2id":
        out = hash_secret_raw(
            value, key, time_cost=case["t"], memory_cost=case["m_kib"], parallelism=1,
            hash_len=size, type=Type.ID, version=0x13,
        )
    else:
        out = hashlib.pbkdf2_hmac("sha256", value, key, case["iterations"], dklen=size)
    assert len(out) == size
    if case["encoding"] == "base64":
        case["output"] = base64.b64encode(out).decode("ascii")
    elif case["encoding"] == "legacy_base64":
        # Ruby [bytes].pack("m"): lines of 60 base64 characters, each ending in a newline
        b64 = base64.b64encode(out).decode("ascii")
        case["output"] = "".join(b64[i:i + 60] + "\n" for i in range(0, len(b64), 60))
    else:
        case["output_hex"] = out.hex()
    return case


def case(algorithm, cost, value, size=32, encoding="base64", expr=None,
         master=ZERO_KEY, table="users", column="email_bidx", params=None):
    c = {
        "master_key_hex": master, "table": table, "column": column,
        "algorithm": algorithm, "cost": cost,
    }
    c.update(params if cost == "custom" else PRESETS[(algorithm, cost)])
    c.update({"size": size, "encoding": encoding, "expression": expr, "value": value})
    return compute(c)


def main():
    pairs = [
        (ZERO_KEY, "users", "email_bidx"),
        (SEQ_KEY, "users", "email_ci_bidx"),
        (OTHER_KEY, "patients", "phone_bidx_v2"),
    ]
    index_keys = [
        {"master_key_hex": m, "table": t, "column": c, "index_key_hex": index_key(m, t, c).hex()}
        for m, t, c in pairs
    ]
    assert index_keys[0]["index_key_hex"] == (
        "289737bab72fa97b1f4b081cef00d7b7d75034bcf3183c363feaf3e6441777bc"
    ), "the blind_index gem's documented known answer"

    a, p = "argon2id", "pbkdf2_sha256"
    cases = [
        case(a, "default", "test@example.org"),
        case(a, "default", ""),
        case(a, "default", "Zoë Ünïcødé 名前 🙂@例え.jp"),
        case(a, "default", "test@example.org", size=16),
        case(a, "default", "test@example.org", size=4),
        case(a, "default", "test@example.org", encoding="raw"),
        case(a, "default", "test@example.org", size=16, encoding="raw"),
        case(a, "slow", "test@example.org"),
        case(a, "slow", "Zoë@Example.ORG", size=16, encoding="raw"),
        case(a, "custom", "test@example.org", params={"t": 2, "m_kib": 1024}),
        case(a, "custom", "test@example.org", params={"t": 5, "m_kib": 8}, size=20),
        case(a, "default", "Test@Example.ORG", expr="lowercase"),
        case(a, "default", "  ÉCOLE@Example.ORG\t\n", expr="trim_lowercase"),
        case(a, "default", "+1 555 0100", master=SEQ_KEY, column="email_ci_bidx"),
        case(a, "default", "+1 555 0100", master=OTHER_KEY, table="patients",
             column="phone_bidx_v2", size=8, encoding="raw"),
        case(p, "default", "test@example.org"),
        case(p, "default", "test@example.org", size=1),
        case(p, "default", "test@example.org", size=1, encoding="raw"),
        case(p, "default", "test@example.org", size=16),
        case(p, "default", "Zoë Ünïcødé 名前 🙂@例え.jp", encoding="raw"),
        case(p, "slow", "test@example.org"),
        case(p, "default", "test@example.org", encoding="legacy_base64"),
        case(p, "custom", "test@example.org", params={"iterations": 1}, size=32),
        case(p, "default", "Test@Example.ORG", expr="lowercase", master=SEQ_KEY,
             column="email_ci_bidx"),
    ]
    out = {
        "generator": "kms-fields/tests/data/gen_blind_index_kat.py (argon2-cffi, hashlib, cryptography)",
        "note": "raw outputs are hex in output_hex; base64 (strict) and legacy_base64 (Ruby pack(\"m\")) outputs are text in output",
        "index_keys": index_keys,
        "cases": cases,
    }
    json.dump(out, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
