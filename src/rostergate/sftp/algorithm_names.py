"""The SSH algorithm policy as names: the allow-lists and defaults of :mod:`.algorithms`, and its settings.

Plain data, no asyncssh: the configuration (:mod:`.settings`) checks ``[server.algorithms]``
against these lists, and loading the configuration must not import asyncssh (every CLI
command loads it). What this asyncssh installation offers of them is
:mod:`.algorithms`' business, at the server's start (and ``check-config``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class AlgorithmSettings:
    """``[server.algorithms]``: what the policy below is built from (parsed in :mod:`.settings`)."""

    rsa_host_key: bool = False
    rsa_host_key_path: Path | None = None  # default: beside the ed25519 host key
    kex: tuple[str, ...] | None = None  # None: this module's defaults
    ciphers: tuple[str, ...] | None = None
    macs: tuple[str, ...] | None = None


MIN_ASYNCSSH = (2, 14, 2)  # strict kex; 2.23.1 fixed SCP traversal (SCP stays off anyway)

DEFAULT_KEX: tuple[str, ...] = (
    "mlkem768x25519-sha256",
    "sntrup761x25519-sha512",
    "sntrup761x25519-sha512@openssh.com",
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
    "diffie-hellman-group18-sha512",
    "diffie-hellman-group16-sha512",
    "diffie-hellman-group14-sha256",
)
#: what ``[server.algorithms] kex`` may name: the defaults, and the NIST curves on request
SAFE_KEX: tuple[str, ...] = DEFAULT_KEX + (
    "ecdh-sha2-nistp521",
    "ecdh-sha2-nistp384",
    "ecdh-sha2-nistp256",
)
SAFE_CIPHERS: tuple[str, ...] = (
    "chacha20-poly1305@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-gcm@openssh.com",
    "aes256-ctr",
    "aes192-ctr",
    "aes128-ctr",
)
DEFAULT_CIPHERS = SAFE_CIPHERS
SAFE_MACS: tuple[str, ...] = (
    "hmac-sha2-256-etm@openssh.com",
    "hmac-sha2-512-etm@openssh.com",
    "umac-128-etm@openssh.com",
    "hmac-sha2-256",
    "hmac-sha2-512",
    "umac-128@openssh.com",
)
DEFAULT_MACS: tuple[str, ...] = (
    "hmac-sha2-256-etm@openssh.com",
    "hmac-sha2-512-etm@openssh.com",
    "umac-128-etm@openssh.com",
    "hmac-sha2-256",
    "hmac-sha2-512",
)
# Signatures accepted from clients proving their key (public-key login).
CLIENT_SIGNATURES: tuple[str, ...] = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "rsa-sha2-512",
    "rsa-sha2-256",
)
HOST_KEY_ED25519 = ("ssh-ed25519",)
HOST_KEY_RSA = ("rsa-sha2-512", "rsa-sha2-256")
COMPRESSION = ("none",)
