"""OpenSSH public-key lines as paramiko keys, and their fingerprints (a leaf: imports only paramiko).

Used where a downstream's host key is pinned: ``check-config``, ``serve`` and the
forwarder parse the line (the configuration checks its shape at load without
paramiko: :mod:`rostergate.keylines`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib

import paramiko


def parse_host_key(line: str) -> paramiko.PKey:
    """Parse a pinned ``"ssh-ed25519 AAAA..."`` line; raises ValueError when it is not a usable key."""
    try:
        key_type, key_data = line.split()[:2]
        return paramiko.PKey.from_type_string(key_type, base64.b64decode(key_data, validate=True))
    except (ValueError, paramiko.SSHException, binascii.Error) as exc:
        raise ValueError(f"not a usable OpenSSH public key ({exc})") from None


def fingerprint(key: paramiko.PKey) -> str:
    """The key's SHA-256 fingerprint as OpenSSH prints it, without the ``SHA256:`` prefix."""
    return base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
