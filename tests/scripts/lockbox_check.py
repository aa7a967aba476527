#!/usr/bin/env python3
"""Independent decoder of rows written in Lockbox mode with the test key.

Written from the documented formats (kms_encrypted 1.x + Lockbox 2.x), not from kms-fields'
code: key column "v1:" + strict base64 of the test-key ciphertext
(8a7b1e72eadef9d6ad6be0 ":" strict_b64(data key) ":" mime_b64(context json)), attributes
strict base64 of nonce(12) || AES-256-GCM ciphertext || tag(16) with no associated data.

Typed attributes follow Lockbox's lib/lockbox/model.rb (generate_/decrypt_<attr>_ciphertext):
  integer   [v].pack("q>")                 8 bytes, signed, big-endian
  float     [v].pack("G")                  8 bytes, IEEE 754 double, big-endian
  boolean   "t" / "f"
  date      v.strftime("%Y-%m-%d")
  datetime  v.utc.iso8601(9)               2024-01-02T03:04:05.123456789Z
  time      v.utc.strftime("%H:%M:%S.%N")  03:04:05.123456789
  decimal   BigDecimal#to_s("F")           no exponent, no leading/trailing zeros: 12.5, 100.0
  json      ActiveSupport::JSON.encode     <, >, &, U+2028, U+2029 escaped as \\uXXXX
and padded strings Lockbox::Padding (ISO/IEC 7816-4: 0x80 then zeros to a multiple of the size).

usage: lockbox_check.py [--table lockbox_users|lockbox_profiles] [--schema S] SOURCE EXPECTED_JSON
       lockbox_check.py --write [--table ...] SQLITE_FILE ROWS_JSON
  SOURCE: a SQLite file, or a postgres:// URL (read with psql; --schema names the schema)
  --write: insert ROWS_JSON into the SQLite file as Lockbox would store them (fresh data keys,
    random nonces), for the reader under test — the same rules, the other way
  EXPECTED_JSON / ROWS_JSON: {"<id>": {"<attr>": value, ...}}, values as the test wrote them:
    integer → number, float → its decimal text ("1.5", "-0", "inf", "NaN"), boolean → bool,
    date → [y, m, d], datetime → [y, m, d, H, M, S, nanosecond] (UTC), time → [H, M, S, ns],
    decimal → the text given to the setter, json → the value, string → the string; null → NULL.
"""
import argparse
import base64
import binascii
import decimal
import json
import math
import re
import sqlite3
import struct
import subprocess
import sys

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = bytes.fromhex("8a7b1e72eadef9d6ad6be0")
STRICT_B64 = re.compile(r"\A(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?\Z")

# the Ruby models: attribute -> (Lockbox type, padding size or None), model name, key columns
TABLES = {
    "lockbox_users": {
        "model": "User",
        "attributes": {
            "email": ("string", None, "encrypted_kms_key"),
            "phone": ("string", None, "encrypted_kms_key_phone"),
        },
    },
    "lockbox_profiles": {
        "model": "Profile",
        "attributes": {
            "age": ("integer", None, "encrypted_kms_key"),
            "score": ("float", None, "encrypted_kms_key"),
            "active": ("boolean", None, "encrypted_kms_key"),
            "born_on": ("date", None, "encrypted_kms_key"),
            "signed_at": ("datetime", None, "encrypted_kms_key"),
            "opens_at": ("time", None, "encrypted_kms_key"),
            "balance": ("decimal", None, "encrypted_kms_key"),
            "data": ("json", None, "encrypted_kms_key"),
            "ssn": ("string", 16, "encrypted_kms_key"),
            "motto": ("string", 32, "encrypted_kms_key"),
        },
    },
}


class Mismatch(Exception):
    pass


def strict_b64(s, what):
    if not STRICT_B64.match(s):
        raise Mismatch(f"{what}: not strict base64: {s[:20]!r}")
    return base64.b64decode(s, validate=True)


def mime_b64(data):
    s = base64.b64encode(data).decode()
    return "".join(s[i:i + 60] + "\n" for i in range(0, len(s), 60))


def data_key(column, model, model_id, what):
    if column is None or not column.startswith("v1:"):
        raise Mismatch(f"{what}: key column does not start with v1:")
    raw = strict_b64(column[3:], what)
    parts = raw.split(b":")
    if len(parts) != 3 or parts[0] != PREFIX:
        raise Mismatch(f"{what}: not a test-key ciphertext with a context")
    ctx = json.dumps({"model_id": str(model_id), "model_name": model}, separators=(",", ":"), sort_keys=True)
    if parts[2].decode() != mime_b64(ctx.encode()):
        raise Mismatch(f"{what}: context is not {ctx}")
    key = strict_b64(parts[1].decode(), what)
    if len(key) != 32:
        raise Mismatch(f"{what}: data key is {len(key)} bytes")
    return key


def decrypt(ciphertext, key, what):
    raw = strict_b64(ciphertext, what)
    if len(raw) < 12 + 16:
        raise Mismatch(f"{what}: too short for nonce + tag")
    try:
        return AESGCM(key).decrypt(raw[:12], raw[12:], None)
    except InvalidTag:
        raise Mismatch(f"{what}: AES-GCM authentication failed (wrong key or associated data)")


def unpad(data, size, what):
    """Lockbox::Padding#unpad: up to `size` trailing zeros after one 0x80."""
    if len(data) % size != 0:
        raise Mismatch(f"{what}: padded length {len(data)} is not a multiple of {size}")
    for i in range(1, min(size, len(data)) + 1):
        b = data[-i]
        if b == 0x00:
            continue
        if b == 0x80:
            return data[:-i]
        break
    raise Mismatch(f"{what}: invalid padding")


def bigdecimal_to_s_f(text):
    """BigDecimal(text).to_s("F"), through Python's decimal module."""
    d = decimal.Decimal(text)
    if d.is_nan():
        return "NaN"
    if d.is_infinite():
        return "-Infinity" if d < 0 else "Infinity"
    sign = "-" if d.is_signed() else ""
    int_part, _, frac = format(abs(d), "f").partition(".")
    return f"{sign}{int_part.lstrip('0') or '0'}.{frac.rstrip('0') or '0'}"


def ruby_year(y):
    """Ruby's %Y: at least 4 digits, a "-" before year 1, no "+" after 9999."""
    return f"-{-y:04d}" if y < 0 else f"{y:04d}"


def check_typed(kind, plaintext, want, what):
    """Check the plaintext bytes against the expected value by Lockbox's rules."""
    if kind == "integer":
        if len(plaintext) != 8:
            raise Mismatch(f"{what}: integer is {len(plaintext)} bytes, not 8")
        got = int.from_bytes(plaintext, "big", signed=True)
        if got != want:
            raise Mismatch(f"{what}: integer {got}, want {want}")
    elif kind == "float":
        if len(plaintext) != 8:
            raise Mismatch(f"{what}: float is {len(plaintext)} bytes, not 8")
        (got,) = struct.unpack(">d", plaintext)
        expected = float(want)
        if math.isnan(expected):
            if not math.isnan(got):
                raise Mismatch(f"{what}: float {got}, want NaN")
        elif plaintext != struct.pack(">d", expected):
            raise Mismatch(f"{what}: float bytes {plaintext.hex()}, want {struct.pack('>d', expected).hex()}")
    elif kind == "boolean":
        expected = b"t" if want else b"f"
        if plaintext != expected:
            raise Mismatch(f"{what}: boolean {plaintext!r}, want {expected!r}")
    elif kind == "date":
        y, m, d = want
        expected = f"{ruby_year(y)}-{m:02d}-{d:02d}".encode()
        if plaintext != expected:
            raise Mismatch(f"{what}: date {plaintext!r}, want {expected!r}")
    elif kind == "datetime":
        y, mo, d, h, mi, s, ns = want
        expected = f"{ruby_year(y)}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}.{ns:09d}Z".encode()
        if plaintext != expected:
            raise Mismatch(f"{what}: datetime {plaintext!r}, want {expected!r}")
    elif kind == "time":
        h, mi, s, ns = want
        expected = f"{h:02d}:{mi:02d}:{s:02d}.{ns:09d}".encode()
        if plaintext != expected:
            raise Mismatch(f"{what}: time {plaintext!r}, want {expected!r}")
    elif kind == "decimal":
        expected = bigdecimal_to_s_f(want).encode()
        if plaintext != expected:
            raise Mismatch(f"{what}: decimal {plaintext!r}, want {expected!r}")
    elif kind == "json":
        for raw in (b"<", b">", b"&", "\u2028".encode(), "\u2029".encode()):
            if raw in plaintext:
                raise Mismatch(f"{what}: JSON has an unescaped {raw!r} (ActiveSupport escapes it)")
        got = json.loads(plaintext.decode("utf-8"))
        if got != want:
            raise Mismatch(f"{what}: JSON {got!r}, want {want!r}")
    elif kind == "string":
        got = plaintext.decode("utf-8")
        if got != want:
            raise Mismatch(f"{what}: {got!r}, want {want!r}")
    else:
        raise Mismatch(f"{what}: unknown type {kind}")


def active_support_json(value):
    """ActiveSupport::JSON.encode: compact, UTF-8, with <, >, &, U+2028/9 as \\uXXXX (they can
    only occur inside strings, so a plain replacement is exact)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for ch in "<>&\u2028\u2029":
        text = text.replace(ch, "\\u%04x" % ord(ch))
    return text.encode("utf-8")


def encode_typed(kind, value):
    """The plaintext bytes Lockbox encrypts for a value (the inverse of check_typed)."""
    if kind == "integer":
        return struct.pack(">q", value)
    if kind == "float":
        return struct.pack(">d", float(value))
    if kind == "boolean":
        return b"t" if value else b"f"
    if kind == "date":
        y, m, d = value
        return f"{ruby_year(y)}-{m:02d}-{d:02d}".encode()
    if kind == "datetime":
        y, mo, d, h, mi, s, ns = value
        return f"{ruby_year(y)}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}.{ns:09d}Z".encode()
    if kind == "time":
        h, mi, s, ns = value
        return f"{h:02d}:{mi:02d}:{s:02d}.{ns:09d}".encode()
    if kind == "decimal":
        return bigdecimal_to_s_f(value).encode()
    if kind == "json":
        return active_support_json(value)
    if kind == "string":
        return value.encode("utf-8")
    raise SystemExit(f"unknown type {kind}")


def pad(data, size):
    """Lockbox::Padding#pad: 0x80, then zeros up to a multiple of size (always adds a byte)."""
    data = data + b"\x80"
    return data + b"\x00" * (-len(data) % size)


def write_rows(db, table, rows):
    import os

    spec = TABLES[table]
    conn = sqlite3.connect(db)
    for rid, values in rows.items():
        keys, cells = {}, {"id": int(rid)}
        for attr, (kind, padding, key_column) in spec["attributes"].items():
            value = values.get(attr)
            if value is None:
                continue
            if key_column not in keys:
                keys[key_column] = os.urandom(32)
                ctx = json.dumps({"model_id": str(rid), "model_name": spec["model"]}, separators=(",", ":"), sort_keys=True)
                wrapped = PREFIX + b":" + base64.b64encode(keys[key_column]) + b":" + mime_b64(ctx.encode()).encode()
                cells[key_column] = "v1:" + base64.b64encode(wrapped).decode()
            plaintext = encode_typed(kind, value)
            if padding is None and kind == "string" and plaintext == b"":
                cells[f"{attr}_ciphertext"] = ""  # Lockbox stores "" unencrypted
                continue
            if padding is not None:
                plaintext = pad(plaintext, padding)
            nonce = os.urandom(12)
            sealed = nonce + AESGCM(keys[key_column]).encrypt(nonce, plaintext, None)
            cells[f"{attr}_ciphertext"] = base64.b64encode(sealed).decode()
        names = ", ".join(cells)
        marks = ", ".join("?" for _ in cells)
        conn.execute(f"INSERT INTO {table} ({names}) VALUES ({marks})", list(cells.values()))
    conn.commit()
    print(f"ok: wrote {len(rows)} rows")


def read_rows(source, table, columns, schema):
    if source.startswith(("postgres://", "postgresql://")):
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", schema or ""):
            raise SystemExit("--schema is required for Postgres (an identifier)")
        sql = (
            f"SELECT coalesce(json_agg(t ORDER BY t.id), '[]') FROM "
            f"(SELECT {', '.join(columns)} FROM {schema}.{table}) t"
        )
        out = subprocess.run(
            ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", source, "-c", sql],
            check=True, capture_output=True, text=True,
        ).stdout
        return [[r[c] for c in columns] for r in json.loads(out)]
    conn = sqlite3.connect(source)
    return conn.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY id").fetchall()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--table", default="lockbox_users", choices=sorted(TABLES))
    p.add_argument("--schema")
    p.add_argument("--write", action="store_true")
    p.add_argument("source")
    p.add_argument("expected")
    args = p.parse_args()
    spec = TABLES[args.table]
    expected = json.loads(args.expected)
    if args.write:
        return write_rows(args.source, args.table, expected)
    attributes = spec["attributes"]
    key_columns = sorted({k for (_, _, k) in attributes.values()})
    columns = ["id"] + [f"{a}_ciphertext" for a in attributes] + key_columns
    rows = read_rows(args.source, args.table, columns, args.schema)
    if len(rows) != len(expected):
        raise Mismatch(f"expected {len(expected)} rows, found {len(rows)}")
    values = 0
    for row in rows:
        rid, cells = row[0], dict(zip(columns, row))
        want = expected[str(rid)]
        keys = {}
        for attr, (kind, padding, key_column) in attributes.items():
            what = f"row {rid} {attr}"
            ciphertext = cells[f"{attr}_ciphertext"]
            if want.get(attr) is None:
                if ciphertext is not None:
                    raise Mismatch(f"{what}: want NULL, found a value")
                continue
            if ciphertext is None:
                raise Mismatch(f"{what}: NULL, want {want[attr]!r}")
            if ciphertext == "" and padding is None:
                # Lockbox stores an empty string unencrypted (strings only; with padding it encrypts)
                if kind != "string" or want[attr] != "":
                    raise Mismatch(f"{what}: empty ciphertext, want {want[attr]!r}")
                values += 1
                continue
            if key_column not in keys:
                keys[key_column] = data_key(cells[key_column], spec["model"], rid, f"row {rid} {key_column}")
            plaintext = decrypt(ciphertext, keys[key_column], what)
            if padding is not None:
                plaintext = unpad(plaintext, padding, what)
            check_typed(kind, plaintext, want[attr], what)
            values += 1
    print(f"ok: {len(rows)} rows decoded independently ({values} values)")


if __name__ == "__main__":
    try:
        main()
    except Mismatch as e:
        raise SystemExit(str(e))
    except (binascii.Error, ValueError, subprocess.CalledProcessError) as e:
        raise SystemExit(f"decode error: {e}")
