#!/usr/bin/env python3
"""Independent decoder of rows written in Lockbox mode with the test key.

Written from the documented formats (kms_encrypted 1.x + Lockbox 2.x), not from kms-fields'
code: key column "v1:" + strict base64 of the test-key ciphertext
(8a7b1e72eadef9d6ad6be0 ":" strict_b64(data key) ":" mime_b64(context json)), attributes
strict base64 of nonce(12) || AES-256-GCM ciphertext || tag(16) with no associated data.

usage: lockbox_check.py SQLITE_FILE EXPECTED_JSON   (EXPECTED_JSON: {"<id>": {"email": .., "phone": ..}})
"""
import base64
import binascii
import json
import re
import sqlite3
import sys

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = bytes.fromhex("8a7b1e72eadef9d6ad6be0")
STRICT_B64 = re.compile(r"\A(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?\Z")


def strict_b64(s, what):
    if not STRICT_B64.match(s):
        raise SystemExit(f"{what}: not strict base64: {s[:20]!r}")
    return base64.b64decode(s, validate=True)


def mime_b64(data):
    s = base64.b64encode(data).decode()
    return "".join(s[i:i + 60] + "\n" for i in range(0, len(s), 60))


def data_key(column, model_id, what):
    if not column.startswith("v1:"):
        raise SystemExit(f"{what}: key column does not start with v1:")
    raw = strict_b64(column[3:], what)
    parts = raw.split(b":")
    if len(parts) != 3 or parts[0] != PREFIX:
        raise SystemExit(f"{what}: not a test-key ciphertext with a context")
    ctx = json.dumps({"model_id": str(model_id), "model_name": "User"}, separators=(",", ":"), sort_keys=True)
    if parts[2].decode() != mime_b64(ctx.encode()):
        raise SystemExit(f"{what}: context is not {ctx}")
    key = strict_b64(parts[1].decode(), what)
    if len(key) != 32:
        raise SystemExit(f"{what}: data key is {len(key)} bytes")
    return key


def attribute(ciphertext, key, what):
    if ciphertext is None or ciphertext == "":
        return ciphertext
    raw = strict_b64(ciphertext, what)
    if len(raw) < 12 + 16:
        raise SystemExit(f"{what}: too short for nonce + tag")
    nonce, body = raw[:12], raw[12:]
    return AESGCM(key).decrypt(nonce, body, None).decode("utf-8")


def main():
    db, expected = sys.argv[1], json.loads(sys.argv[2])
    conn = sqlite3.connect(db)
    rows = conn.execute(
        "SELECT id, email_ciphertext, phone_ciphertext, encrypted_kms_key, encrypted_kms_key_phone FROM lockbox_users ORDER BY id"
    ).fetchall()
    if len(rows) != len(expected):
        raise SystemExit(f"expected {len(expected)} rows, found {len(rows)}")
    for (rid, email, phone, key, key_phone) in rows:
        want = expected[str(rid)]
        got_email = attribute(email, data_key(key, rid, f"row {rid} key") if email else None, f"row {rid} email")
        got_phone = attribute(phone, data_key(key_phone, rid, f"row {rid} phone key") if phone else None, f"row {rid} phone")
        if got_email != want["email"] or got_phone != want["phone"]:
            raise SystemExit(f"row {rid}: got {got_email!r}/{got_phone!r}, want {want}")
    print(f"ok: {len(rows)} rows decoded independently")


if __name__ == "__main__":
    try:
        main()
    except (binascii.Error, ValueError) as e:
        raise SystemExit(f"decode error: {e}")
