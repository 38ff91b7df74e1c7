"""The SSH listener: host keys, algorithm policy, authentication with a defender, SFTP sessions.

Accounts are read from the shared store at every login, so an account created
or changed with the CLI while the daemon runs works at once. Passwords are
checked on a small dedicated pool, most trusted source first
(:mod:`rostergate.sftp.hashing`), so a spray cannot slow other districts' logins.
Only the ``sftp`` subsystem is offered: no shell, exec, SCP or forwarding.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import structlog

from rostergate import metrics, store
from rostergate.accounts import HASH_LANES, AccountStore
from rostergate.errors import HostKeyError
from rostergate.sftp.algorithms import policy
from rostergate.sftp.defender import Defender
from rostergate.sftp.files import ServerState, UploadCallback
from rostergate.sftp.hashing import PasswordChecks
from rostergate.sftp.session import TenantSession
from rostergate.sftp.settings import SftpSettings
from rostergate.sftp.slots import SessionSlots
from rostergate.sftp.tuning import install as install_tuning
from rostergate.sftp.tuning import tune_connection

log = structlog.get_logger("rostergate.sftp")

SERVER_VERSION = "rostergate"  # the SSH banner shows no library version


def read_host_key(path: Path) -> asyncssh.SSHKey:
    """The private host key at ``path``; :class:`HostKeyError` saying what to do when it is unreadable or corrupt."""
    try:
        return asyncssh.read_private_key(str(path))
    except OSError as exc:
        raise HostKeyError(f"server.host_key: cannot read {path}: {exc.strerror or exc}") from None
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise HostKeyError(
            f"server.host_key: {path} is not a valid private key ({exc}); restore it from a backup, or remove "
            "it to generate a new one (every district must then pin the new fingerprint)"
        ) from None


def load_or_create_host_key(path: Path, algorithm: str = "ssh-ed25519", announce: bool = True) -> asyncssh.SSHKey:
    """Read the host key at ``path``; generate it (owner-only) on first start."""
    path = Path(path)
    if path.exists():
        return read_host_key(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = (asyncssh.generate_private_key("ssh-rsa", key_size=3072) if algorithm == "ssh-rsa"
           else asyncssh.generate_private_key(algorithm))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.export_private_key())
    fd = os.open(path.with_name(path.name + ".pub"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.export_public_key())
    if announce:
        log.info("host_key_generated", path=str(path), fingerprint=key.get_fingerprint())
    return key


def rsa_host_key_path(host_key_path: Path, settings: SftpSettings) -> Path:
    configured = settings.algorithms.rsa_host_key_path
    if configured is None:
        return Path(host_key_path).with_name("ssh_host_rsa_key")
    return configured if configured.is_absolute() else Path(host_key_path).parent / configured


class TenantSSHServer(asyncssh.SSHServer):
    """One per connection: authenticates file accounts by password (argon2id) or public key."""

    def __init__(self, accounts: AccountStore, state: ServerState, defender: Defender, checks: PasswordChecks):
        self._accounts = accounts
        self._state = state
        self._defender = defender
        self._checks = checks
        self._conn: asyncssh.SSHServerConnection | None = None
        self._host = ""
        self._remote = ""
        self._admission: asyncio.Future[str | None] | None = None  # the connection counted across processes
        self._failures = 0
        self._username = ""
        self._last_activity = time.monotonic()
        self._watchdog: asyncio.Task[None] | None = None
        self._keys: tuple[str, asyncio.Future[asyncssh.SSHAuthorizedKeys | None]] | None = None  # prefetched

    # -- connection ----------------------------------------------------------------
    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        tune_connection(conn)
        self._conn = conn
        peer = conn.get_extra_info("peername") or ("", 0)
        self._host, self._remote = str(peer[0]), f"{peer[0]}:{peer[1]}"
        banned = self._defender.ban_refusal(self._host)  # a read: a banned source is cut off before any key exchange
        if banned:
            self._refuse(banned)
            return
        # Counting the connection is a write to the store (all server processes count): off the loop,
        # beside the key exchange; authentication waits for it (begin_auth).
        self._admission = asyncio.ensure_future(self._defender.write(self._defender.count_connection, self._host))
        self._admission.add_done_callback(self._admitted)

    def _admitted(self, admission: asyncio.Future[str | None]) -> None:
        if admission.cancelled():
            return
        error = admission.exception()
        if error is not None:  # the store failed: the source is not banned (checked above), so let it in
            log.error("connection_count_failed", remote=self._remote, error=type(error).__name__)
        elif (refusal := admission.result()) is not None:
            self._refuse(refusal)

    def _refuse(self, reason: str) -> None:
        log.warning("connection_refused", remote=self._remote, reason=reason)
        if self._conn is not None:
            self._conn.disconnect(asyncssh.DISC_NO_MORE_AUTH_METHODS_AVAILABLE, reason)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._admission is not None:
            self._defender.spawn(self._release(self._admission))
            self._admission = None
        if self._watchdog is not None:
            self._watchdog.cancel()

    async def _release(self, admission: asyncio.Future[str | None]) -> None:
        """Give back the connection's count once it was taken (the admission may still be under way)."""
        try:
            refusal = await admission
        except Exception:  # noqa: BLE001 - the count was not taken (logged where it failed)
            return
        if refusal is None:
            await self._defender.write(self._defender.connection_closed, self._host)

    # -- authentication ------------------------------------------------------------
    async def begin_auth(self, username: str) -> bool:
        self._username = username
        # The account's keys are read while the client sends its first request (OpenSSH's "none" first):
        # a public-key login then finds them read, without waiting for the thread pool on a busy loop.
        keys = asyncio.ensure_future(self._state.off_loop(self._accounts.authorized_keys, username))
        keys.add_done_callback(lambda done: done.cancelled() or done.exception())  # a failure is raised where used
        self._keys = (username, keys)
        if self._admission is not None and not self._admission.done():  # done already: no turn of a busy loop
            await asyncio.wait({self._admission})  # when refused, the connection is closing meanwhile
        return True  # always authenticate; unknown users fail like wrong passwords

    def password_auth_supported(self) -> bool:
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    async def validate_password(self, username: str, password: str) -> bool:
        priority = self._defender.auth_priority(self._host, username)
        ok = await self._checks.run(priority, lambda: self._accounts.verify_password(username, password),
                                    key=(self._host, username))
        if ok and not self._defender.account_locked(username):
            return True
        await self._failed(username, "password")
        await asyncio.sleep(self._defender.settings.failed_password_delay_seconds)
        return False

    async def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        prefetched = self._keys
        if prefetched is not None and prefetched[0] == username:
            keys = prefetched[1].result() if prefetched[1].done() else await prefetched[1]
        else:
            keys = await self._state.off_loop(self._accounts.authorized_keys, username)
        if keys and keys.validate(key, self._host, self._host, None) is not None:
            return True
        await self._failed(username, "publickey")
        return False

    async def _failed(self, username: str, method: str) -> None:
        self._failures += 1
        metrics.LOGIN_FAILURES.labels(method).inc()
        known = await self._state.off_loop(self._accounts.get, username) is not None
        await self._defender.write(self._defender.login_failed, self._host, username, known)
        if self._checks.waiting():
            self._checks.reorder(self._defender.auth_priority)  # what this failure taught moves others back
        log.warning("login_failed", account=username, remote=self._remote, method=method,
                    attempt=self._failures, unknown_account=not known)
        conn = self._conn
        if conn is None:
            return
        limit = self._defender.settings.max_auth_attempts
        if self._failures >= limit:
            await self._defender.write(self._defender.limit_exceeded, self._host)
            log.warning("login_attempts_exhausted", account=username, remote=self._remote, limit=limit)
            conn.disconnect(asyncssh.DISC_NO_MORE_AUTH_METHODS_AVAILABLE,
                            f"too many authentication failures (at most {limit} per connection)")
        elif self._defender.ban_left(self._host) > 0:
            conn.disconnect(asyncssh.DISC_NO_MORE_AUTH_METHODS_AVAILABLE,
                            "too many failed logins from your address: try again later")

    def auth_completed(self) -> None:
        if self._conn is not None:  # the name that authenticated, whatever was tried before
            self._username = self._conn.get_extra_info("username") or self._username
        log.info("login", account=self._username, remote=self._remote)
        metrics.LOGINS.inc()
        self._defender.login_succeeded(self._host, self._username)
        self._touch()
        self._watchdog = asyncio.ensure_future(self._idle_watchdog())

    # -- sessions ------------------------------------------------------------------
    def session_requested(self) -> TenantSession:
        return TenantSession(self._state, self._username, self._remote, self._touch)

    def _touch(self) -> None:
        self._last_activity = time.monotonic()

    async def _idle_watchdog(self) -> None:
        idle = self._state.settings.idle_timeout_seconds
        while True:
            left = self._last_activity + idle - time.monotonic()
            if left <= 0:
                break
            await asyncio.sleep(min(left + 0.05, 30.0))
        log.info("idle_timeout", account=self._username, remote=self._remote, seconds=idle)
        if self._conn is not None:
            self._conn.disconnect(asyncssh.DISC_BY_APPLICATION,
                                  f"idle for {idle:g} s: connection closed by the server")


@dataclass(frozen=True)
class Listener:
    """The SFTP server once it listens: asyncssh's acceptor (``close()`` stops new connections) and
    the registries its sessions share (open writers, uploads on their way to a run)."""

    acceptor: asyncssh.SSHAcceptor
    state: ServerState


async def start_server(
    host: str,
    port: int,
    host_key_path: Path,
    accounts: AccountStore,
    on_upload: UploadCallback,
    settings: SftpSettings | None = None,
    reuse_port: bool = False,
    recover: bool = True,
) -> Listener:
    """Listen for SFTP on ``host:port``; finished uploads go to ``on_upload(account, path)``.

    ``reuse_port`` shares the port with other server processes (``SO_REUSEPORT``,
    :mod:`rostergate.sftp.fleet`); ``recover`` finishes uploads a crash left staged (only the
    first server of a data directory may: a second would hand the same uploads over again)."""
    settings = settings or SftpSettings()
    host_keys = [load_or_create_host_key(host_key_path)]
    if settings.algorithms.rsa_host_key:
        host_keys.append(load_or_create_host_key(rsa_host_key_path(host_key_path, settings), "ssh-rsa"))
    accounts.homes.mkdir(parents=True, exist_ok=True, mode=0o700)
    accounts.homes.chmod(0o700)
    data_dir = accounts.homes.parent
    # The defender and the session slots share the state store with every server process
    # (rostergate.sftp.slots): connections of their own, apart from the accounts' one.
    slots = SessionSlots(store.connect(data_dir, durable=False))  # a commit per session start and end: no fsync
    slots.forget_process(os.getpid())  # a pid reused from a process that is gone
    state = ServerState(settings, data_dir, accounts.homes, on_upload, slots)
    if recover:
        state.recover()
    defender = Defender(settings.defender, data_dir=data_dir)
    checks = PasswordChecks(lanes=HASH_LANES)
    install_tuning()
    algorithms = policy(settings.algorithms)
    log.info("sftp_policy", kex=algorithms.kex, ciphers=algorithms.ciphers, macs=algorithms.macs,
             host_keys=[k.get_algorithm() for k in host_keys])
    acceptor = await asyncssh.listen(
        host,
        port,
        server_host_keys=algorithms.host_keypairs(host_keys),
        server_factory=lambda: TenantSSHServer(accounts, state, defender, checks),
        allow_scp=False,
        server_version=SERVER_VERSION,
        login_timeout=settings.login_grace_seconds,
        agent_forwarding=False,
        x11_forwarding=False,
        allow_pty=False,
        kbdint_auth=False,
        reuse_port=reuse_port,
        gss_host=None,  # no GSS-API; asyncssh's default looks the host name up (getfqdn) at every login
        **algorithms.listen_options(),
    )
    return Listener(acceptor, state)


def host_key_fingerprint(path: Path, create: bool = True) -> str | None:
    """``SHA256:...`` of the ed25519 host key at ``path``.

    The key is generated when missing (``create``), so credentials handed to a
    district always carry the fingerprint to pin, even before the first
    ``serve``. The CLI runs as the service user anyway (the state store is owner-only).
    """
    path = Path(path)
    if not path.exists():
        if not create:
            return None
        try:
            return load_or_create_host_key(path, announce=False).get_fingerprint()  # stdout may be JSON
        except FileExistsError:  # serve created it meanwhile
            pass
        except OSError:
            return None
    return read_host_key(path).get_fingerprint()
