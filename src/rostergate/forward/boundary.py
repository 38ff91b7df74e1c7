"""The one place where the errors of delivery's foreign libraries become ours.

Everything a delivery does runs inside one of two context managers, one per
foreign library: :func:`os_errors` (the OS: a ``file://`` folder, the prepared
ZIP) and :func:`paramiko_errors` (paramiko, and the OS and socket errors it lets
through: credential files, client set-up, connect, the SFTP transfer). Each
raises :class:`~rostergate.errors.RetryableError` (try again later) or
:class:`~rostergate.errors.FinalError` (retrying cannot help) ``from`` the
original error, and lets our own :class:`~rostergate.errors.DeliveryError`
through. What the delivery was doing when it failed is an :class:`Attempt`,
which the forwarder keeps up to date; messages name the phase and the file,
never a secret.

An error of the destination's storage is classified by its ``errno`` through
one table, whether it came from the local folder or as the status of an SFTP
request (paramiko turns SFTP's "permission denied" into ``EACCES`` and "no
such file" into ``ENOENT``; a plain "failure" carries no errno):

=====================================  =========  ===========================================
errno                                  class      because
=====================================  =========  ===========================================
``EACCES``, ``EPERM``, ``EROFS``       final      the destination refuses: a person must act
``ENOENT`` when opening the file       final      the destination folder does not exist
``ENOENT`` later                       retryable  the file vanished under us
``ENOSPC``, ``EDQUOT``                 retryable  the disk is full or a quota is reached
a refused SFTP WRITE with no errno     retryable  the server's disk or quota, most likely
anything else                          retryable
=====================================  =========  ===========================================

Reading a credential file that is missing or unreadable is retryable (restore
it and the next attempt works), a credential file that is no UTF-8 text or that
paramiko cannot use is final; a refused login and a host key that is not the
pinned one are final; anything on the way to the server (DNS, refused or timed
out connections, a broken SSH handshake) is retryable.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import paramiko
from paramiko.sftp import SFTPError

from rostergate.errors import DeliveryError, FinalError, RetryableError
from rostergate.sshkeys import fingerprint

# Phases the messages (and the table above) treat apart; the others are verbs: "open", "write", ...
READ_PREPARED = "read the prepared file"
READ_CREDENTIALS = "read credentials"
SET_UP = "set up the client"
CONNECT = "connect"
OPEN = "open"

REFUSED = {errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
           errno.EROFS: "read-only file system"}
FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


@dataclass
class Attempt:
    """What a delivery is doing, for the boundary's messages; the forwarder updates ``phase`` and ``target``.

    ``who`` is what may refuse ("the downstream server", "the file system"),
    ``server`` where the delivery goes (``host:port`` or the folder), ``folder``
    the destination folder, ``target`` the file the phase is about.
    """

    who: str
    server: str
    folder: str
    username: str = ""
    phase: str = READ_PREPARED
    target: str = ""


class WriteRefused(Exception):
    """An SFTP server answered a WRITE with an error status (``cause``) for the bytes at ``offset``."""

    def __init__(self, offset: int, cause: BaseException):
        super().__init__(f"at byte {offset}: {cause}")
        self.offset, self.cause = offset, cause


@contextmanager
def os_errors(at: Attempt) -> Iterator[None]:
    """Map the OS's errors raised inside into our delivery errors (``raise ... from``)."""
    try:
        yield
    except DeliveryError:
        raise
    except OSError as exc:
        raise os_error(exc, at) from exc


@contextmanager
def paramiko_errors(at: Attempt) -> Iterator[None]:
    """Map paramiko's errors, and the OS and socket errors raised with them, into our delivery errors."""
    try:
        yield
    except DeliveryError:
        raise
    except paramiko.AuthenticationException as exc:
        raise FinalError(f"the downstream server refused the login of {at.username!r}; "
                         "check flows.downstream.password_file / key_file") from exc
    except paramiko.BadHostKeyException as exc:
        raise FinalError(f"host key mismatch for {at.server}: the server offered SHA256:{fingerprint(exc.key)}, "
                         "which is not the pinned key") from exc
    except WriteRefused as exc:
        cause = exc.cause if isinstance(exc.cause, OSError) else OSError(str(exc.cause))
        raise os_error(cause, at, exc.offset) from exc
    except OSError as exc:
        raise os_error(exc, at) from exc
    except UnicodeDecodeError as exc:  # its text would quote bytes of what was decoded: never repeated
        if at.phase == READ_CREDENTIALS:
            raise FinalError(f"{at.target} is not UTF-8 text") from exc
        raise _failed(at, "text that is not UTF-8") from exc
    except (EOFError, paramiko.SSHException, SFTPError) as exc:
        raise _failed(at, str(exc) or type(exc).__name__) from exc
    except ValueError as exc:  # a credential or pinned key paramiko cannot use
        raise FinalError(f"the downstream credentials cannot be used: {exc}") from exc


def os_error(exc: OSError, at: Attempt, offset: int | None = None) -> DeliveryError:
    """The delivery error for ``exc`` raised while ``at`` was under way (the table in this module's docstring)."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    if at.phase == READ_CREDENTIALS:
        return RetryableError(f"cannot read {at.target}: {reason}; restore it (the delivery is retried; "
                              "'rostergate runs retry RUN_ID' after a give-up)")
    if at.phase == READ_PREPARED:
        if exc.errno == errno.ENOENT:
            return FinalError(f"the prepared file {at.target} is missing; 'rostergate runs retry RUN_ID' prepares "
                              "it again")
        return RetryableError(f"cannot read the prepared file {at.target}: {reason}")
    if at.phase in (SET_UP, CONNECT):
        return _failed(at, reason)
    where = at.target if offset is None else f"{at.target} at byte {offset}"
    if exc.errno in REFUSED:
        return FinalError(f"{at.who} refused to {at.phase} {where} ({REFUSED[exc.errno]})")
    if exc.errno == errno.ENOENT:
        if at.phase == OPEN:
            return FinalError(f"the downstream folder {at.folder} does not exist")
        return RetryableError(f"{at.who} lost {at.target} during the {at.phase}; nothing was delivered")
    if exc.errno in FULL or offset is not None:
        full = "is full" if exc.errno in FULL else "may be full"
        return RetryableError(f"{at.who} refused to {at.phase} {where} ({reason}): its disk {full} or a quota "
                              "is reached; nothing was delivered")
    return _failed(at, reason)


def _failed(at: Attempt, reason: str) -> RetryableError:
    if at.phase == CONNECT:
        return RetryableError(f"cannot reach {at.server}: {reason}")
    return RetryableError(f"delivery to {at.server} failed during the {at.phase}: {reason}; nothing was delivered")
