"""Read OpenSSH ed25519 keys with the standard library only.

The interoperability scripts use this instead of lithos code, so a bug in the Rust key
parser cannot hide itself by appearing on both sides.
"""

import base64
import struct


def _read_string(data, offset):
    (length,) = struct.unpack(">I", data[offset : offset + 4])
    start = offset + 4
    return data[start : start + length], start + length


def read_public_key(path):
    """Return the 32 bytes of the ed25519 key in an OpenSSH `.pub` file."""
    with open(path) as file:
        fields = file.read().split()
    if fields[0] != "ssh-ed25519":
        raise ValueError(f"{path}: not an ssh-ed25519 public key")
    blob = base64.b64decode(fields[1])
    algorithm, offset = _read_string(blob, 0)
    key, _ = _read_string(blob, offset)
    if algorithm != b"ssh-ed25519" or len(key) != 32:
        raise ValueError(f"{path}: malformed ssh-ed25519 public key")
    return key


def read_private_keys(path):
    """Return the 64-byte libsodium secret keys (seed then public key) in a key file.

    The file may contain several concatenated unencrypted OpenSSH private keys.
    """
    with open(path) as file:
        text = file.read()
    keys = []
    for block in text.split("-----END OPENSSH PRIVATE KEY-----")[:-1]:
        body = block.split("-----BEGIN OPENSSH PRIVATE KEY-----")[1]
        keys.append(_parse_private_blob(base64.b64decode("".join(body.split()))))
    return keys


def _parse_private_blob(blob):
    magic = b"openssh-key-v1\0"
    if not blob.startswith(magic):
        raise ValueError("not an openssh-key-v1 private key")
    offset = len(magic)
    cipher, offset = _read_string(blob, offset)
    _kdf, offset = _read_string(blob, offset)
    _kdf_options, offset = _read_string(blob, offset)
    if cipher != b"none":
        raise ValueError("the private key is protected by a passphrase")
    (count,) = struct.unpack(">I", blob[offset : offset + 4])
    offset += 4
    if count != 1:
        raise ValueError("expected one key per PEM block")
    _public_blob, offset = _read_string(blob, offset)
    private, _ = _read_string(blob, offset)
    # Two equal check integers, then the key type, public key and secret key.
    check1, check2 = struct.unpack(">II", private[:8])
    if check1 != check2:
        raise ValueError("check integers differ")
    algorithm, inner = _read_string(private, 8)
    _public, inner = _read_string(private, inner)
    secret, _ = _read_string(private, inner)
    if algorithm != b"ssh-ed25519" or len(secret) != 64:
        raise ValueError("not an ssh-ed25519 private key")
    return secret
