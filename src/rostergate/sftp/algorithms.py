"""The SSH algorithm policy: explicit allow-lists, nothing left to asyncssh's defaults.

* no SHA-1 anywhere (key exchange, MAC, signature), no CBC, 3DES, arcfour or MD5;
* post-quantum hybrid key exchange first when the installation offers it
  (``mlkem768x25519-sha256`` through PyCA cryptography, ``sntrup761x25519-sha512``
  only with liboqs);
* strict key exchange (Terrapin, CVE-2023-48795) is always on in asyncssh >= 2.14.2;
  :data:`MIN_ASYNCSSH` is checked at start;
* an ed25519 host key by default; an RSA host key (signatures rsa-sha2-256/512 only)
  can be added for old clients.

``diffie-hellman-group-exchange-sha256`` is left out: asyncssh serves the
1024-bit groups a client asks for (ssh-audit: fail). Non-ETM ``hmac-sha2-*`` MACs stay in the list
(after the ETM ones) because
libssh2 1.10 (curl on Debian 12) knows no ETM MAC and no AES-GCM; see
docs/operators.md for each remaining ssh-audit warning.

The lists themselves, and ``[server.algorithms]``' settings, are plain data in
:mod:`.algorithm_names` (the configuration reads them without importing asyncssh); this
module turns them into what this asyncssh installation offers.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncssh
from asyncssh.encryption import get_encryption_algs
from asyncssh.kex import get_kex_algs
from asyncssh.mac import get_mac_algs

from rostergate.sftp.algorithm_names import (
    CLIENT_SIGNATURES,
    COMPRESSION,
    DEFAULT_CIPHERS,
    DEFAULT_KEX,
    DEFAULT_MACS,
    HOST_KEY_ED25519,
    HOST_KEY_RSA,
    MIN_ASYNCSSH,
    AlgorithmSettings,
)


def available_kex() -> set[str]:
    return {name.decode() for name in get_kex_algs()}


def _available(names: tuple[str, ...], offered: set[str]) -> list[str]:
    return [name for name in names if name in offered]


@dataclass(frozen=True)
class Policy:
    """Keyword arguments for ``asyncssh.listen`` that pin every algorithm."""

    kex: list[str]
    ciphers: list[str]
    macs: list[str]
    host_key_algs: list[str]

    def listen_options(self) -> dict[str, list[str]]:
        return {
            "kex_algs": self.kex,
            "encryption_algs": self.ciphers,
            "mac_algs": self.macs,
            "compression_algs": list(COMPRESSION),
            "signature_algs": list(CLIENT_SIGNATURES),
        }

    def host_keypairs(self, keys: list[asyncssh.SSHKey]) -> list[asyncssh.SSHKeyPair]:
        """Key pairs that offer only the policy's host key algorithms (no ``ssh-rsa`` with SHA-1)."""
        allowed = [alg.encode() for alg in self.host_key_algs]
        pairs: list[asyncssh.SSHKeyPair] = []
        for pair in asyncssh.load_keypairs(keys):
            pair.host_key_algorithms = [a for a in pair.host_key_algorithms if a in allowed]
            pair.sig_algorithms = [a for a in pair.sig_algorithms if a in allowed]
            if pair.host_key_algorithms:
                pairs.append(pair)
        return pairs


def policy(settings: AlgorithmSettings) -> Policy:
    """The algorithm lists for ``settings``, keeping only what this asyncssh offers."""
    check_asyncssh_version()
    kex = _available(settings.kex or DEFAULT_KEX, available_kex())
    ciphers = _available(settings.ciphers or DEFAULT_CIPHERS, {n.decode() for n in get_encryption_algs()})
    macs = _available(settings.macs or DEFAULT_MACS, {n.decode() for n in get_mac_algs()})
    host = list(HOST_KEY_ED25519) + (list(HOST_KEY_RSA) if settings.rsa_host_key else [])
    return Policy(kex=kex, ciphers=ciphers, macs=macs, host_key_algs=host)


def check_asyncssh_version() -> None:
    parts = tuple(int(p) for p in asyncssh.__version__.split(".")[:3] if p.isdigit())
    if parts < MIN_ASYNCSSH:
        raise RuntimeError(
            f"asyncssh {asyncssh.__version__} lacks strict key exchange (Terrapin); "
            f"install asyncssh >= {'.'.join(map(str, MIN_ASYNCSSH))}"
        )
