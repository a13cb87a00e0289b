#!/usr/bin/env python3
"""Build a lithos v2 secret with PyNaCl, independently of the Rust code.

Usage: nacl_seal.py PUBLIC_KEY_FILE NAMESPACE SECRET

Prints the `v2:` string on stdout.
"""

import base64
import hashlib
import sys

import nacl.bindings
import nacl.public

from sshkeys import read_public_key


def short_hash(data):
    return base64.b64encode(hashlib.blake2b(data, digest_size=6).digest()).decode()


def seal(ed25519_public, namespace, secret):
    curve_public = nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(ed25519_public)
    sealed_box = nacl.public.SealedBox(nacl.public.PublicKey(curve_public))
    payload = sealed_box.encrypt(namespace + b":" + secret)
    fields = [
        "v2",
        short_hash(ed25519_public),
        short_hash(namespace),
        short_hash(secret),
        base64.b64encode(payload).decode(),
    ]
    return ":".join(fields)


def main():
    key_file, namespace, secret = sys.argv[1:]
    print(seal(read_public_key(key_file), namespace.encode(), secret.encode()))


if __name__ == "__main__":
    main()
