#!/usr/bin/env python3
"""Produce a kms_rails `<attr>_enc` value the way the gem does (independently of kms-fields):
GenerateDataKey (AES_256) on the KMS with a one-pair encryption context, AES-256-CBC with
PKCS#7 under the plaintext data key and a random 16-byte IV, then the MessagePack map
{"key": blob, "iv": iv, "blob": ciphertext} with binary values. Prints it as hex.

usage: kms_rails_value.py ENDPOINT KEY_ID CONTEXT_KEY CONTEXT_VALUE PLAINTEXT
"""
import os
import struct
import sys

import boto3
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


def mp_str(s):
    b = s.encode()
    return bytes([0xA0 | len(b)]) + b


def mp_bin(b):
    if len(b) < 256:
        return b"\xc4" + bytes([len(b)]) + b
    return b"\xc5" + struct.pack(">H", len(b)) + b


def main():
    endpoint, key_id, ck, cv, plaintext = sys.argv[1:6]
    kms = boto3.client("kms", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
    dk = kms.generate_data_key(KeyId=key_id, KeySpec="AES_256", EncryptionContext={ck: cv})
    iv = os.urandom(16)
    padder = padding.PKCS7(128).padder()
    data = padder.update(plaintext.encode()) + padder.finalize()
    enc = Cipher(algorithms.AES(dk["Plaintext"]), modes.CBC(iv)).encryptor()
    blob = enc.update(data) + enc.finalize()
    packed = b"\x83" + mp_str("key") + mp_bin(dk["CiphertextBlob"]) + mp_str("iv") + mp_bin(iv) + mp_str("blob") + mp_bin(blob)
    print(packed.hex())


if __name__ == "__main__":
    main()
