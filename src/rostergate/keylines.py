"""The shape of an OpenSSH public-key line, checked in plain Python (a leaf: no crypto library).

The configuration checks a pinned ``host_key`` with :func:`check_key_line` when it is
loaded, which every CLI command does: ``runs list`` must not pay for paramiko.
``check-config``, ``serve`` and the forwarder parse the line into a key
(:func:`rostergate.sshkeys.parse_host_key`).
"""

from __future__ import annotations

import base64
import binascii

# The point sizes of the NIST curves paramiko's ECDSAKey knows (uncompressed: 0x04 || x || y).
_ECDSA_POINT_BYTES = {"nistp256": 65, "nistp384": 97, "nistp521": 133}


def check_key_line(line: str) -> None:
    """Raise ValueError unless ``line`` is ``TYPE BASE64 [comment]`` of an ed25519, ECDSA or RSA public key.

    Checks the key's wire format (RFC 4253 §6.6, RFC 5656 §3.1, RFC 8709 §4): the type
    named inside the blob is the line's, and the fields are whole, of the right sizes
    and nothing follows them. The key types are the ones
    :func:`rostergate.sshkeys.parse_host_key` takes.
    """
    try:
        key_type, key_data = line.split()[:2]
        blob = base64.b64decode(key_data, validate=True)
    except (ValueError, binascii.Error):
        raise ValueError("not an OpenSSH public key line 'TYPE BASE64'") from None
    fields = _Fields(blob)
    if fields.string() != key_type.encode():
        raise ValueError(f"the key inside is not of the type {key_type!r} the line names")
    if key_type == "ssh-ed25519":
        if len(fields.string()) != 32:
            raise ValueError("an ed25519 public key has 32 bytes")
    elif key_type.startswith("ecdsa-sha2-"):
        curve = key_type.removeprefix("ecdsa-sha2-")
        point = fields.string() if fields.string() == curve.encode() else b""
        if len(point) != _ECDSA_POINT_BYTES.get(curve, -1) or point[:1] != b"\x04":
            raise ValueError(f"not a usable {key_type} public key")
    elif key_type == "ssh-rsa":
        exponent, modulus = fields.string(), fields.string()
        if not exponent or not modulus:
            raise ValueError("not a usable ssh-rsa public key")
    else:
        raise ValueError(f"unsupported key type {key_type!r} (ssh-ed25519, ecdsa-sha2-nistp256/384/521, ssh-rsa)")
    if not fields.at_end():
        raise ValueError("the key has bytes after its last field")


class _Fields:
    """Reads SSH ``string`` fields (uint32 length, then the bytes) off a key blob."""

    def __init__(self, blob: bytes):
        self.blob, self.at = blob, 0

    def string(self) -> bytes:
        if self.at + 4 > len(self.blob):
            raise ValueError("the key is cut short")
        size = int.from_bytes(self.blob[self.at:self.at + 4], "big")
        start, self.at = self.at + 4, self.at + 4 + size
        if self.at > len(self.blob):
            raise ValueError("the key is cut short")
        return self.blob[start:self.at]

    def at_end(self) -> bool:
        return self.at == len(self.blob)
