#!/usr/bin/env python3
"""A STAND-IN for Vault / OpenBao's transit secrets engine — not Vault.

No Vault or OpenBao server can be installed on the machines this project is tested on (no
package in any reachable registry), so the Vault provider of kms-fields is tested, through the
real `vaultrs` client over HTTP, against this loopback server. It follows Vault's documented
transit API (request and response JSON, status codes, error strings) for what kms-fields uses,
and shares no code with the provider under test:

  POST /v1/sys/mounts/:path                  enable a transit mount   {"type": "transit"}
  POST /v1/sys/audit/:path                   enable an audit device   (creates its HMAC salt)
  POST /v1/sys/audit-hash/:path              {"input": s} -> {"hash": "hmac-sha256:<hex>"}
  POST /v1/:mount/keys/:name                 create ({"type": "aes256-gcm96", "derived": true})
  GET  /v1/:mount/keys/:name                 read
  POST /v1/:mount/keys/:name/config          min_decryption_version, deletion_allowed, ...
  POST /v1/:mount/keys/:name/rotate
  POST /v1/:mount/encrypt/:name              plaintext (b64), context (b64), key_version, batch_input
  POST /v1/:mount/decrypt/:name              ciphertext, context, batch_input
  POST /v1/:mount/rewrap/:name               ciphertext, context, key_version, batch_input
  GET  /v1/sys/health

Keys: AES-256-GCM per version; derived keys use HKDF-SHA256(version material, info=context).
Ciphertext: "vault:v<N>:" + base64(nonce(12) || ciphertext || tag). Tokens (X-Vault-Token):
"root" may do everything, "encrypt-only" may only encrypt; anything else is denied.

Test hooks (not Vault API): GET /_standin/requests (the request log), POST /_standin/fail
{"status": 503, "count": 1, "namespace": "ns"} (fail the next requests [of that X-Vault-Namespace]), POST /_standin/reset,
POST /_standin/shape {"audit_hash": SHAPE, "namespace": "ns"} (answer sys/audit-hash [for that
X-Vault-Namespace, else for all] in another response shape, as servers differ):
  "both"  {"hash": h, "data": {"hash": h}, ...}   the default
  "top"   {"hash": h}                             the sample response in Vault's and OpenBao's API docs
  "data"  {"data": {"hash": h}, ...}              the generic response envelope of every other endpoint
  "none"  {"data": {}, ...}                       no hash at all (a broken or unknown server)
"""
import argparse
import base64
import binascii
import hashlib
import hmac
import json
import os
import threading
import time
import uuid

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.exceptions import InvalidTag
from flask import Flask, Response, request

app = Flask("vault-transit-standin")
LOCK = threading.Lock()
STATE = {}

DENIED = "1 error occurred:\n\t* permission denied\n\n"


def reset():
    STATE.clear()
    STATE.update({"mounts": {}, "audit": {}, "requests": [], "fail": None, "shapes": {}})


reset()


def reply(data=None, status=200, sys_path=False, extra=None):
    if status == 204:
        return Response(status=204)
    body = {
        "request_id": str(uuid.uuid4()),
        "lease_id": "",
        "lease_duration": 0,
        "renewable": False,
        "data": data,
        "wrap_info": None,
        "warnings": None,
        "auth": None,
    }
    if extra:
        body.update(extra)
    return Response(json.dumps(body), status=status, mimetype="application/json")


def errors(status, *messages):
    return Response(json.dumps({"errors": list(messages)}), status=status, mimetype="application/json")


def allowed(path):
    token = request.headers.get("X-Vault-Token") or request.headers.get("Authorization", "").removeprefix("Bearer ")
    if token == "root":
        return True
    if token == "encrypt-only":
        return "/encrypt/" in path
    return False


def derive(key, version, context_b64):
    material = key["versions"][version]
    if not key["derived"]:
        return material
    context = base64.b64decode(context_b64, validate=False)
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=context).derive(material)


def need_context(key, item):
    if key["derived"] and not item.get("context"):
        raise ValueError(
            "missing 'context' for key derivation; the key was created using a derived key, which means additional, "
            "per-request information must be included in order to perform operations with the key"
        )


def encrypt_one(key, item):
    need_context(key, item)
    version = int(item.get("key_version") or key["latest"])
    if version not in key["versions"] or version < key["min_encryption_version"]:
        raise ValueError("invalid key version")
    try:
        plaintext = base64.b64decode(item.get("plaintext", ""), validate=False)
    except binascii.Error:
        raise ValueError("failed to base64-decode plaintext")
    nonce = os.urandom(12)
    ct = AESGCM(derive(key, version, item.get("context", ""))).encrypt(nonce, plaintext, None)
    return {"ciphertext": f"vault:v{version}:" + base64.b64encode(nonce + ct).decode(), "key_version": version}


def decrypt_one(key, item):
    need_context(key, item)
    ct = item.get("ciphertext", "")
    if not ct.startswith("vault:"):
        raise ValueError("invalid ciphertext: no prefix")
    parts = ct.split(":", 2)
    if len(parts) != 3 or not parts[1].startswith("v"):
        raise ValueError("invalid ciphertext: wrong number of fields")
    try:
        version = int(parts[1][1:])
    except ValueError:
        raise ValueError("invalid ciphertext: version number could not be decoded")
    if version > key["latest"]:
        raise ValueError("invalid ciphertext: version is too new")
    if version < key["min_decryption_version"]:
        raise ValueError("ciphertext or signature version is disallowed by policy (too old)")
    try:
        raw = base64.b64decode(parts[2], validate=True)
    except binascii.Error:
        raise ValueError("invalid ciphertext: could not decode base64")
    if len(raw) < 12 + 16:
        raise ValueError("invalid ciphertext length")
    try:
        pt = AESGCM(derive(key, version, item.get("context", ""))).decrypt(raw[:12], raw[12:], None)
    except InvalidTag:
        raise ValueError("cipher: message authentication failed")
    return {"plaintext": base64.b64encode(pt).decode()}, version


@app.before_request
def log_and_fault():
    body = request.get_data(as_text=True)
    with LOCK:
        STATE["requests"].append(
            {
                "method": request.method,
                "path": request.path,
                "namespace": request.headers.get("X-Vault-Namespace"),
                "body": json.loads(body) if body else None,
            }
        )
        fail = STATE["fail"]
        scoped = fail and fail.get("namespace") not in (None, request.headers.get("X-Vault-Namespace"))
        if fail and not scoped and not request.path.startswith("/_standin") and fail["count"] > 0:
            fail["count"] -= 1
            return errors(fail["status"], "injected failure")
    return None


@app.route("/_standin/requests")
def requests_log():
    with LOCK:
        return Response(json.dumps(STATE["requests"]), mimetype="application/json")


@app.route("/_standin/fail", methods=["POST"])
def inject():
    with LOCK:
        body = request.get_json(force=True, silent=True) or {}
        STATE["fail"] = {
            "status": int(body.get("status", 503)),
            "count": int(body.get("count", 1)),
            # only requests of this namespace fail, so tests running in parallel don't see it
            "namespace": body.get("namespace"),
        }
    return Response(status=204)


@app.route("/_standin/shape", methods=["POST"])
def shape():
    body = request.get_json(force=True, silent=True) or {}
    audit_hash = body.get("audit_hash", "both")
    if audit_hash not in ("both", "top", "data", "none"):
        return errors(400, f"unknown audit_hash shape {audit_hash!r}")
    with LOCK:
        STATE["shapes"][body.get("namespace")] = audit_hash
    return Response(status=204)


@app.route("/_standin/reset", methods=["POST"])
def reset_route():
    with LOCK:
        reset()
    return Response(status=204)


@app.route("/v1/sys/health")
def health():
    return Response(json.dumps({"initialized": True, "sealed": False, "standby": False, "version": "standin"}), mimetype="application/json")


@app.route("/v1/sys/mounts/<path:path>", methods=["POST"])
def mount(path):
    if not allowed(request.path):
        return errors(403, DENIED)
    if (request.get_json(force=True, silent=True) or {}).get("type") != "transit":
        return errors(400, "only transit mounts exist in this stand-in")
    with LOCK:
        if path in STATE["mounts"]:
            return errors(400, f"path is already in use at {path}/")
        STATE["mounts"][path] = {}
    return Response(status=204)


@app.route("/v1/sys/audit/<path:path>", methods=["POST"])
def audit_enable(path):
    if not allowed(request.path):
        return errors(403, DENIED)
    with LOCK:
        STATE["audit"][path] = str(uuid.uuid4())
    return Response(status=204)


@app.route("/v1/sys/audit-hash/<path:path>", methods=["POST"])
def audit_hash(path):
    if not allowed(request.path):
        return errors(403, DENIED)
    data = request.get_json(force=True, silent=True) or {}
    if not data.get("input"):
        return errors(400, 'the "input" parameter is empty')
    with LOCK:
        salt = STATE["audit"].get(path)
    if salt is None:
        return errors(400, f"unknown audit backend {path}")
    h = "hmac-sha256:" + hmac.new(salt.encode(), data["input"].encode(), hashlib.sha256).hexdigest()
    with LOCK:
        shapes = STATE["shapes"]
        shape = shapes.get(request.headers.get("X-Vault-Namespace"), shapes.get(None, "both"))
    if shape == "top":
        return Response(json.dumps({"hash": h}), mimetype="application/json")
    if shape == "data":
        return reply({"hash": h})
    if shape == "none":
        return reply({})
    return reply({"hash": h}, extra={"hash": h})


def find_mount(path):
    for m in sorted(STATE["mounts"], key=len, reverse=True):
        if path == m or path.startswith(m + "/"):
            return m, path[len(m) + 1 :]
    return None, None


def key_info(name, key):
    return {
        "name": name,
        "type": "aes256-gcm96",
        "derived": key["derived"],
        "deletion_allowed": key["deletion_allowed"],
        "exportable": False,
        "allow_plaintext_backup": False,
        "keys": {str(v): key["created"][v] for v in key["versions"]},
        "latest_version": key["latest"],
        "min_available_version": 0,
        "min_decryption_version": key["min_decryption_version"],
        "min_encryption_version": key["min_encryption_version"],
        "supports_encryption": True,
        "supports_decryption": True,
        "supports_derivation": True,
        "supports_signing": False,
        "imported": False,
    }


def new_key(derived):
    return {
        "derived": derived,
        "deletion_allowed": False,
        "versions": {1: os.urandom(32)},
        "created": {1: int(time.time())},
        "latest": 1,
        "min_decryption_version": 1,
        "min_encryption_version": 0,
    }


@app.route("/v1/<path:path>", methods=["GET", "POST", "PUT"])
def transit(path):
    if not allowed(request.path):
        return errors(403, DENIED)
    with LOCK:
        mount_name, rest = find_mount(path)
        if mount_name is None:
            return errors(404, f"no handler for route \"{path}\". route entry not found.")
        keys = STATE["mounts"][mount_name]
        parts = rest.split("/")
        body = request.get_json(force=True, silent=True) or {}
        if parts[0] == "keys" and len(parts) == 2:
            name = parts[1]
            if request.method == "GET":
                if name not in keys:
                    return errors(404)
                return reply(key_info(name, keys[name]))
            if body.get("type", "aes256-gcm96") != "aes256-gcm96":
                return errors(400, "this stand-in only has aes256-gcm96 keys")
            keys.setdefault(name, new_key(bool(body.get("derived"))))
            return reply(key_info(name, keys[name]))
        if parts[0] == "keys" and len(parts) == 3 and parts[2] in ("rotate", "config"):
            name = parts[1]
            if name not in keys:
                return errors(400, f"no existing key named {name} could be found")
            key = keys[name]
            if parts[2] == "rotate":
                key["latest"] += 1
                key["versions"][key["latest"]] = os.urandom(32)
                key["created"][key["latest"]] = int(time.time())
            else:
                if "min_decryption_version" in body:
                    v = int(body["min_decryption_version"])
                    if v > key["latest"]:
                        return errors(400, f"cannot set min decryption version of {v}, latest key version is {key['latest']}")
                    key["min_decryption_version"] = max(v, 1)
                if "min_encryption_version" in body:
                    key["min_encryption_version"] = int(body["min_encryption_version"])
                if "deletion_allowed" in body:
                    key["deletion_allowed"] = bool(body["deletion_allowed"])
            return reply(key_info(name, key))
        if parts[0] in ("encrypt", "decrypt", "rewrap") and len(parts) == 2:
            return crypto(keys, parts[0], parts[1], body)
    return errors(404, f"no handler for route \"{path}\". route entry not found.")


def crypto(keys, op, name, body):
    if name not in keys:
        if op == "encrypt":
            keys[name] = new_key(bool((body.get("batch_input") or [body])[0].get("context")))
        else:
            return errors(400, "encryption key not found")
    key = keys[name]

    def one(item):
        if op == "encrypt":
            return encrypt_one(key, item)
        if op == "decrypt":
            return decrypt_one(key, item)[0]
        plain, _ = decrypt_one(key, item)
        return encrypt_one(key, {"plaintext": plain["plaintext"], "context": item.get("context"), "key_version": item.get("key_version")})

    batch = body.get("batch_input")
    if batch is None:
        try:
            return reply(one(body))
        except ValueError as e:
            return errors(400, str(e))
    if batch and any(bool(i.get("context")) for i in batch) and not all(bool(i.get("context")) for i in batch):
        return errors(400, "context should be set either in all the request blocks or in none")
    results, failed = [], 0
    for item in batch:
        try:
            r = one(item)
        except ValueError as e:
            failed += 1
            r = {"error": str(e)}
            if op == "decrypt":
                r["plaintext"] = ""
        r["reference"] = item.get("reference", "")
        results.append(r)
    status = 200
    if failed and op != "rewrap":
        status = 400
        if failed < len(batch) and body.get("partial_failure_response_code"):
            status = int(body["partial_failure_response_code"])
    return reply({"batch_results": results}, status=status)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8200)
    args = p.parse_args()
    print(f"vault transit STAND-IN (not Vault) on http://{args.host}:{args.port}", flush=True)
    app.run(host=args.host, port=args.port, threaded=True)


if __name__ == "__main__":
    main()
