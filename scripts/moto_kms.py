#!/usr/bin/env python3
"""Start moto's server (AWS KMS + S3 on one port) with the Ruby-peer fixture key installed.

The AWS vectors in shared/vectors/kms_encrypted_lockbox.json were written by kms_encrypted
against a moto key whose id and key material are recorded under "moto_key". moto cannot import
key material over its API, so this launcher runs moto's server in-process and installs a key
with exactly that id, ARN, alias and material in the running backend. A watcher re-installs it
after a `POST /moto-api/reset`.

Usage: moto_kms.py --port 5005 [--host 127.0.0.1] [--vectors PATH]
"""
import argparse
import json
import os
import signal
import sys
import threading
import time

from moto.kms.models import kms_backends
from moto.server import ThreadedMotoServer

# the in-repo copy of ../shared/vectors/kms_encrypted_lockbox.json
DEFAULT_VECTORS = os.path.join(os.path.dirname(__file__), "..", "kms-fields", "tests", "data", "kms_encrypted_lockbox.json")


def install_fixture(moto_key):
    backend = kms_backends[moto_key["account_id"]][moto_key["region"]]
    key_id = moto_key["key_id"]
    if key_id in backend.keys:
        return False
    key = backend.create_key(None, "ENCRYPT_DECRYPT", "SYMMETRIC_DEFAULT", "kms-fields ruby peer fixture", None)
    del backend.keys[key.id]
    key.id = key_id
    key.arn = moto_key["arn"]
    key.key_material = bytes.fromhex(moto_key["key_material_hex"])
    backend.keys[key_id] = key
    if not backend.alias_exists(moto_key["alias"]):
        backend.create_alias(key_id, moto_key["alias"])
    return True


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5005)
    p.add_argument("--vectors", default=os.environ.get("KMS_FIELDS_VECTORS", DEFAULT_VECTORS))
    args = p.parse_args()

    with open(args.vectors) as f:
        moto_key = json.load(f)["moto_key"]

    server = ThreadedMotoServer(ip_address=args.host, port=args.port, verbose=False)
    server.start()
    install_fixture(moto_key)
    print(f"moto ready on http://{args.host}:{args.port} with fixture key {moto_key['key_id']}", flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.is_set():
        try:
            install_fixture(moto_key)
        except Exception as e:  # keep serving; report
            print(f"fixture re-install failed: {e}", file=sys.stderr, flush=True)
        stop.wait(0.2)
    server.stop()


if __name__ == "__main__":
    main()
