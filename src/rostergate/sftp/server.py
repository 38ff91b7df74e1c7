"""The SSH listener: host key, per-account authentication, one SFTP session per channel.

Accounts are read from the shared store at every login, so an account created
or changed with the CLI while the daemon runs works at once.
"""

from __future__ import annotations

import os
from pathlib import Path

import asyncssh
import structlog

from rostergate.accounts import AccountStore
from rostergate.sftp.settings import SftpSettings
from rostergate.sftp.files import TenantSFTPServer, UploadCallback

log = structlog.get_logger("rostergate.sftp")


def load_or_create_host_key(path: Path) -> asyncssh.SSHKey:
    """Read the ed25519 host key at ``path``; generate it (owner-only) on first start."""
    path = Path(path)
    if path.exists():
        return asyncssh.read_private_key(str(path))
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = asyncssh.generate_private_key("ssh-ed25519")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.export_private_key())
    path.with_name(path.name + ".pub").write_bytes(key.export_public_key())
    log.info("host_key_generated", path=str(path), fingerprint=key.get_fingerprint())
    return key


class TenantSSHServer(asyncssh.SSHServer):
    """Authenticates file accounts by password (argon2id) or public key."""

    def __init__(self, accounts: AccountStore):
        self._accounts = accounts
        self._peer = ""

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        peer = conn.get_extra_info("peername") or ("", 0)
        self._peer = f"{peer[0]}:{peer[1]}"

    def begin_auth(self, username: str) -> bool:
        return True  # always authenticate; unknown users fail like wrong passwords

    def password_auth_supported(self) -> bool:
        return True

    async def validate_password(self, username: str, password: str) -> bool:
        import asyncio

        ok = await asyncio.to_thread(self._accounts.verify_password, username, password)
        if not ok:
            log.warning("login_failed", method="password", account=username, remote=self._peer)
        return ok

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        keys = self._accounts.authorized_keys(username)
        return bool(keys and keys.validate(key, "", "", None) is not None)


async def start_server(
    host: str,
    port: int,
    host_key_path: Path,
    accounts: AccountStore,
    on_upload: UploadCallback,
    settings: SftpSettings | None = None,
) -> asyncssh.SSHAcceptor:
    """Listen for SFTP on ``host:port``; finished uploads go to ``on_upload(account, path)``."""
    host_key = load_or_create_host_key(host_key_path)

    def sftp_factory(chan: asyncssh.SSHServerChannel) -> TenantSFTPServer:
        account = chan.get_extra_info("username")
        return TenantSFTPServer(chan, accounts.home(account), account, on_upload)

    return await asyncssh.listen(
        host,
        port,
        server_host_keys=[host_key],
        server_factory=lambda: TenantSSHServer(accounts),
        sftp_factory=sftp_factory,
        allow_scp=False,
    )


def host_key_fingerprint(path: Path) -> str | None:
    """``SHA256:...`` of the host key at ``path``, or None before the first start."""
    path = Path(path)
    if not path.exists():
        return None
    return asyncssh.read_private_key(str(path)).get_fingerprint()
