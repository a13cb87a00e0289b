#!/usr/bin/env python3
"""Open a lithos v2 secret with PyNaCl, independently of the Rust code.

Usage: nacl_open.py PRIVATE_KEY_FILE V2STRING

Prints `NAMESPACE:SECRET` on stdout. Exits 1 with a message when the value does not open
or a hash does not match.
"""

import base64
import hashlib
import sys

import nacl.bindings
import nacl.public

from sshkeys import read_private_keys


def short_hash(data):
    return base64.b64encode(hashlib.blake2b(data, digest_size=6).digest()).decode()


def open_value(keys, value):
    version, key_hash, ns_hash, secret_hash, payload = value.strip().split(":")
    if version != "v2":
        raise ValueError(f"unsupported version {version}")
    for secret_key in keys:
        public = secret_key[32:]
        if short_hash(public) != key_hash:
            continue
        curve_secret = nacl.bindings.crypto_sign_ed25519_sk_to_curve25519(secret_key)
        sealed_box = nacl.public.SealedBox(nacl.public.PrivateKey(curve_secret))
        plaintext = sealed_box.decrypt(base64.b64decode(payload))
        namespace, secret = plaintext.split(b":", 1)
        if short_hash(namespace) != ns_hash:
            raise ValueError("namespace hash mismatch")
        if short_hash(secret) != secret_hash:
            raise ValueError("secret hash mismatch")
        return plaintext
    raise ValueError("no key matches the key hash")


def main():
    key_file, value = sys.argv[1:]
    try:
        plaintext = open_value(read_private_keys(key_file), value)
    except Exception as err:  # noqa: BLE001 - the test reads the message
        print(f"nacl_open: {err}", file=sys.stderr)
        sys.exit(1)
    sys.stdout.buffer.write(plaintext)


if __name__ == "__main__":
    main()
