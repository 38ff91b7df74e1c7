"""What ``check-config`` checks once the configuration parses: everything ``serve`` or a delivery would fail on.

Each check returns problems as ``key: reason`` lines, like :class:`~rostergate.errors.ConfigError`,
naming the key to change and saying what to do. Nothing here writes: the state
directory and the host key are only looked at, the store is opened read-only,
the listen address is bound for a moment and released, and ``connect`` logs in
downstream and looks at the folder without creating anything.

The running daemon uses the same checks (without the listen address, which it
holds) before it accepts a reloaded configuration.
"""

from __future__ import annotations

import errno
import os
import socket
import sqlite3
import stat
from pathlib import Path

import paramiko

from rostergate import forward
from rostergate.accountrecords import AccountRecords
from rostergate.config import Downstream, Flow, Settings, credential_out_of_reach
from rostergate.errors import DeliveryError, HostKeyError, StoreError
from rostergate.sftp.algorithms import available_kex
from rostergate.sftp.server import SERVER_VERSION, read_host_key
from rostergate.sftp.settings import SftpSettings
from rostergate.sshkeys import parse_host_key
from rostergate.store import DB_NAME, user_name


def run(settings: Settings, listen: bool = True, connect: bool = False) -> list[str]:
    """Every problem of ``settings``; ``listen``: also bind the listen addresses; ``connect``: log in downstream."""
    server = settings.server
    state = state_directory(server.data_dir)
    problems = [*state, *host_key(server.host_key), *sftp_algorithms(server.sftp)]
    if listen:
        problems += listen_address("server.listen", server.listen_host, server.listen_port)
        if server.metrics_listen:
            host, _, port = server.metrics_listen.rpartition(":")
            problems += listen_address("server.metrics_listen", host.strip("[]"), int(port))
    if not state:  # the accounts are in the state directory: unusable, it says nothing about them
        problems += flow_accounts(settings)
    for index, flow in enumerate(settings.flows):
        problems += flow_problems(flow, f"flows[{index}]", connect)
    problems += alert_files(settings)
    return problems


def alert_files(settings: Settings) -> list[str]:
    """The alert secrets (webhook secret, SMTP password) are owner-only and not empty; the CA file readable.

    A file the server default and its flows share is checked once, under ``alerts``.
    """
    problems: list[str] = []
    seen: set[Path] = set()
    tables = [("alerts", settings.alerts), *((f"flows[{i}].alerts", f.alerts) for i, f in enumerate(settings.flows))]
    for prefix, alerts in tables:
        for name in ("webhook_secret_file", "smtp_password_file", "smtp_ca_file"):
            path = getattr(alerts, name)
            if path is None or path in seen:
                continue
            seen.add(path)
            if name == "smtp_ca_file":
                if not os.access(path, os.R_OK):
                    problems.append(f"{prefix}.{name}: {path} is not readable by {user_name()}")
                continue
            problems += secret_file(f"{prefix}.{name}", path)
    return problems


# -- the state directory and the host key ---------------------------------------------
def state_directory(data_dir: Path) -> list[str]:
    """The state directory (and the store in it) can be written by this user, or created."""
    key = "server.data_dir"
    if not data_dir.exists():
        return _creatable(key, data_dir)
    if not data_dir.is_dir():
        return [f"{key}: {data_dir} is not a folder"]
    if not os.access(data_dir, os.R_OK | os.W_OK | os.X_OK):
        owner = data_dir.stat().st_uid
        fix = (f"make it so: chmod 700 {data_dir}" if owner == os.geteuid()
               else f"run as its owner ({user_name(owner)}) or fix its owner")
        return [f"{key}: {data_dir} is not writable by {user_name()}; {fix}"]
    problems = []
    for name in (DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm"):
        path = data_dir / name
        if path.exists() and not os.access(path, os.R_OK | os.W_OK):
            problems.append(f"{key}: {path} is not writable by {user_name()} (created by another user? "
                            f"chown it to {user_name(data_dir.stat().st_uid)})")
    return problems


def _creatable(key: str, path: Path) -> list[str]:
    """``path`` does not exist: its nearest existing parent must be a folder this user may write in."""
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return [f"{key}: {path} cannot be created: {parent} is not a folder"]
    if not os.access(parent, os.W_OK | os.X_OK):
        return [f"{key}: {path} does not exist and cannot be created: {parent} is not writable by {user_name()}"]
    return []


def host_key(path: Path) -> list[str]:
    """The host key is a readable, valid private key, or can be generated."""
    if not path.exists():
        return _creatable("server.host_key", path)
    try:
        read_host_key(path)
    except HostKeyError as exc:
        return [str(exc)]
    return []


# -- the listen address ---------------------------------------------------------------
def sftp_algorithms(settings: SftpSettings) -> list[str]:
    """``[server.algorithms]`` lists that this asyncssh installation cannot serve (the configuration
    checked the names; the post-quantum key exchanges depend on the installation)."""
    kex = settings.algorithms.kex
    if kex is not None and not set(kex) & available_kex():
        return ["server.algorithms.kex: none of these key exchanges is available in this installation"]
    return []


def listen_address(key: str, host: str, port: int) -> list[str]:
    """``host:port`` can be listened on now (bound for a moment, with the options asyncio uses).

    An address a running rostergate holds is no problem: it is the running service's own (the
    usual case: an operator checks the configuration of the service before reloading it). Were it
    another rostergate's, ``serve`` says so when it starts.
    """
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return [f"{key}: cannot resolve {host!r}: {exc.strerror}"]
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE and held_by_rostergate(key, host, port):
                    return []
                return [cannot_listen(key, host, port, exc)]
    return []


PROBE_SECONDS = 1.0
_WILDCARDS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


def held_by_rostergate(key: str, host: str, port: int) -> bool:
    """A rostergate answers on ``host:port``: its SSH banner (``server.listen``) or its metrics."""
    try:
        with socket.create_connection((_WILDCARDS.get(host, host), port), timeout=PROBE_SECONDS) as sock:
            if key == "server.listen":
                return sock.recv(64).startswith(f"SSH-2.0-{SERVER_VERSION}".encode())
            sock.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            answer = b""
            while len(answer) < 1 << 20 and (chunk := sock.recv(65536)):
                answer += chunk
            return b"# TYPE rostergate_runs_received_total" in answer
    except OSError:
        return False


def cannot_listen(key: str, host: str, port: int, exc: OSError) -> str:
    """``key: cannot listen on host:port: why, and what to do`` for a failed bind."""
    if exc.errno == errno.EADDRINUSE:
        why = "the address is already in use (another rostergate, or an sshd?); choose another port or stop it"
    elif exc.errno == errno.EACCES and port < 1024:
        why = ("ports below 1024 need CAP_NET_BIND_SERVICE (see 'Listening on port 22' in docs/install.md), "
               "or use a port of 1024 or more")
    elif exc.errno == errno.EADDRNOTAVAIL:
        why = "no network interface of this machine has that address"
    else:
        why = exc.strerror or str(exc)
    return f"{key}: cannot listen on {host}:{port}: {why}"


# -- flows --------------------------------------------------------------------------
def flow_accounts(settings: Settings) -> list[str]:
    """Every flow's file account exists (uploads can reach a flow only through its account).

    The demo's account is created by ``serve`` itself.
    """
    if not settings.flows or settings.demo:
        return []
    try:
        names = _account_names(settings.data_dir)
    except StoreError as exc:
        return [str(exc)]
    return [(f"flows[{index}].account: account {flow.account!r} does not exist; create it with "
             f"'rostergate accounts create {flow.account}'")
            for index, flow in enumerate(settings.flows) if flow.account not in names]


def _account_names(data_dir: Path) -> set[str]:
    path = data_dir / DB_NAME
    if not path.exists():
        return set()
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StoreError(f"server.data_dir: cannot read the state store {path}: {exc}") from None
    try:
        conn.row_factory = sqlite3.Row
        return {account.name for account in AccountRecords(conn, data_dir).list()}
    except sqlite3.Error as exc:
        raise StoreError(f"server.data_dir: cannot read the state store {path}: {exc}") from None
    finally:
        conn.close()


def flow_problems(flow: Flow, prefix: str, connect: bool = False) -> list[str]:
    problems: list[str] = []
    if flow.watch is not None:
        problems += _folder(f"{prefix}.watch", flow.watch)
    downstream = flow.downstream
    key = f"{prefix}.downstream"
    if downstream.scheme == "file":
        return problems + _folder(f"{key}.url", Path(downstream.path))
    for name, path in (("password_file", downstream.password_file), ("key_file", downstream.key_file)):
        if path is not None:
            problems += secret_file(f"{key}.{name}", path)
    if downstream.host_key is not None:
        try:
            parse_host_key(downstream.host_key)
        except ValueError as exc:
            problems.append(f"{key}.host_key: {exc}")
    if downstream.known_hosts is not None:
        problems += known_hosts(f"{key}.known_hosts", downstream)
    if connect and not problems:
        problems += probe(key, downstream)
    return problems


def _folder(key: str, path: Path) -> list[str]:
    """A folder rostergate moves files into or out of: writable, or creatable."""
    if not path.exists():
        return _creatable(key, path)
    if not path.is_dir():
        return [f"{key}: {path} is not a folder"]
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        return [f"{key}: {path} is not writable by {user_name()}"]
    return []


def secret_file(key: str, path: Path) -> list[str]:
    """A secret (a downstream's, an alert's): readable by this user, not empty, and readable by nobody else.

    A service credential seen from outside the stopped service is not there to check: the
    service's own ``check-config`` checks it when it starts.
    """
    if credential_out_of_reach(path):
        return []
    try:
        info = path.stat()
        data = path.read_bytes()
    except FileNotFoundError:
        return [f"{key}: file not found: {path}"]
    except OSError as exc:
        return [f"{key}: {path} is not readable by {user_name()}: {exc.strerror}"]
    if not data.strip():
        return [f"{key}: {path} is empty"]
    if info.st_mode & 0o077:
        return [(f"{key}: {path} may be read by others (mode {stat.S_IMODE(info.st_mode):04o}); "
                 f"make it owner-only: chmod 600 {path}")]
    return []


def _host_entry(downstream: Downstream) -> str:
    return downstream.host if downstream.port == 22 else f"[{downstream.host}]:{downstream.port}"


def known_hosts(key: str, downstream: Downstream) -> list[str]:
    """The ``known_hosts`` file holds a key for the downstream host (and port)."""
    assert downstream.known_hosts is not None
    path = downstream.known_hosts
    try:
        keys = paramiko.HostKeys(str(path))
    except OSError as exc:
        return [f"{key}: {path} is not readable by {user_name()}: {exc.strerror}"]
    except paramiko.SSHException as exc:
        return [f"{key}: {path} is not a known_hosts file: {exc}"]
    entry = _host_entry(downstream)
    if keys.lookup(entry) is None:
        return [(f"{key}: {path} has no key for {entry}; add it (ssh-keyscan -p {downstream.port} "
                 f"{downstream.host}, checked out of band) or pin host_key instead")]
    return []


def probe(key: str, downstream: Downstream) -> list[str]:
    """Log in downstream as a delivery does and look at the folder (``check-config --connect``);
    nothing is written."""
    where = f"{downstream.username}@{downstream.host}:{downstream.port}"
    try:
        client = forward.login(downstream)
    except DeliveryError as exc:
        return [f"{key}: {exc}"]
    try:
        with client.open_sftp() as sftp:
            mode = sftp.stat(downstream.path).st_mode
        if mode is None or not stat.S_ISDIR(mode):
            return [f"{key}.url: {downstream.path} on {where} is not a folder"]
    except FileNotFoundError:
        return [f"{key}.url: the folder {downstream.path} does not exist on {where}"]
    except PermissionError:
        return [f"{key}.url: {where} does not let {downstream.username} see {downstream.path}"]
    except (OSError, EOFError) as exc:
        return [f"{key}: {where} closed the session: {exc or type(exc).__name__}"]
    finally:
        client.close()
    return []
