"""Downstream delivery: paramiko SFTP with a pinned host key, or a local folder.

The one place that maps paramiko's and the OS's errors into our own
:class:`RetryableError` (try again later) and :class:`FinalError` (retrying
cannot help: a host key mismatch, a refused login, a missing folder). Uploads
go straight to the final name with no stat or setstat afterwards, because
Apple's drop box hides a file as soon as it is written (asm.md §2.4).
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import socket
from pathlib import Path

import paramiko

from rostergate.config import Downstream


class DeliveryError(Exception):
    """Delivery failed; the message says why without any secret."""


class RetryableError(DeliveryError):
    pass


class FinalError(DeliveryError):
    pass


def deliver(zip_path: Path, downstream: Downstream, remote_name: str) -> str:
    """Deliver ``zip_path`` as ``remote_name``; returns where it went. Blocking."""
    if downstream.scheme == "file":
        return _deliver_to_folder(zip_path, Path(downstream.path), remote_name)
    return _deliver_sftp(zip_path, downstream, remote_name)


def _deliver_to_folder(zip_path: Path, folder: Path, remote_name: str) -> str:
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = folder / f".{remote_name}.partial"
        shutil.copyfile(zip_path, partial)
        partial.chmod(0o600)
        os.replace(partial, folder / remote_name)
    except OSError as exc:
        raise RetryableError(f"cannot write to {folder}: {exc.strerror}") from None
    return str(folder / remote_name)


class _PinnedHostKey(paramiko.MissingHostKeyPolicy):
    """Accept only the configured key; paramiko calls this for any key not in its store."""

    def missing_host_key(self, client, hostname, key):  # noqa: ANN001 - paramiko's signature
        raise FinalError(
            f"host key mismatch for {hostname}: the server offered {key.get_name()} "
            f"SHA256:{_fingerprint(key)}, which is not the pinned key; check the server and "
            "update flows.downstream.host_key if it really changed"
        )


def _fingerprint(key: paramiko.PKey) -> str:
    return base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


def parse_host_key(line: str) -> paramiko.PKey:
    """Parse a pinned ``"ssh-ed25519 AAAA..."`` line; raises ValueError when it is not a key."""
    try:
        key_type, key_data = line.split()[:2]
        return paramiko.PKey.from_type_string(key_type, base64.b64decode(key_data, validate=True))
    except (ValueError, paramiko.SSHException, base64.binascii.Error) as exc:
        raise ValueError(f"not a usable OpenSSH public key ({exc})") from None


def _client(downstream: Downstream) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    host_entry = downstream.host if downstream.port == 22 else f"[{downstream.host}]:{downstream.port}"
    if downstream.known_hosts:
        client.load_host_keys(str(downstream.known_hosts))
    if downstream.host_key:
        key = parse_host_key(downstream.host_key)
        client.get_host_keys().add(host_entry, key.get_name(), key)
    client.set_missing_host_key_policy(_PinnedHostKey())
    return client


def _deliver_sftp(zip_path: Path, downstream: Downstream, remote_name: str) -> str:
    client = _client(downstream)
    remote = f"{downstream.path.rstrip('/')}/{remote_name}"
    password = None
    if downstream.password_file:
        password = downstream.password_file.read_text(encoding="utf-8").rstrip("\r\n")
    try:
        client.connect(
            downstream.host, port=downstream.port, username=downstream.username, password=password,
            key_filename=str(downstream.key_file) if downstream.key_file else None,
            timeout=downstream.connect_timeout, banner_timeout=downstream.connect_timeout,
            auth_timeout=downstream.connect_timeout, allow_agent=False, look_for_keys=False,
        )
        with client.open_sftp() as sftp:
            sftp.get_channel().settimeout(max(downstream.connect_timeout, 60.0))
            with open(zip_path, "rb") as handle:
                sftp.putfo(handle, remote, confirm=False)
    except FinalError:
        raise
    except paramiko.AuthenticationException:
        raise FinalError(
            f"the downstream server refused the login of {downstream.username!r}; "
            "check flows.downstream.password_file / key_file"
        ) from None
    except paramiko.BadHostKeyException as exc:
        raise FinalError(
            f"host key mismatch for {downstream.host}: the server offered SHA256:{_fingerprint(exc.key)}, "
            "which is not the pinned key"
        ) from None
    except PermissionError:
        raise FinalError(f"the downstream server refused to write {remote} (permission denied)") from None
    except FileNotFoundError:
        raise FinalError(f"the downstream folder {downstream.path} does not exist") from None
    except (OSError, socket.timeout, paramiko.SSHException, EOFError) as exc:
        raise RetryableError(f"cannot reach {downstream.host}:{downstream.port}: {exc}") from None
    finally:
        client.close()
    return f"sftp://{downstream.host}:{downstream.port}{remote}"
