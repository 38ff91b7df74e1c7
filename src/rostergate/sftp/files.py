"""The tenant's view of the file system: a confined SFTP server that spots finished uploads.

**Confinement.** Every client path goes through :meth:`TenantSFTPServer.resolve`:
the path is normalised lexically (``..`` and absolute paths stay inside ``/``),
then the real path of its folder is computed with ``os.path.realpath`` (so an
existing symlink anywhere on the way is followed *and checked*), and the result
must lie inside the account's home; the last component is followed only for
operations that follow links (open, stat, setstat, listing), and checked again.
Files are opened with ``O_NOFOLLOW`` and the opened descriptor's real path is
checked once more (``/proc/self/fd``), so a link swapped in between is caught.
Hard-linked files (link count > 1) are never served. Clients cannot create
symlinks or hard links. ``reports/`` is read-only to the tenant.

**Completion** (reference/sftp.md §3.3). An upload is finished when

* the client's own ``SSH_FXP_CLOSE`` closes a handle it wrote on a ``*.zip``
  name (the session handler tells it apart from the closes asyncssh does for
  every open handle when a connection drops: those never count), and no other
  handle still writes that file, or
* a file is renamed to a ``*.zip`` name (WinSCP ``.filepart``, rclone
  ``.partial``, lftp temp names),

the name does not start with ``.`` (lftp's ``.in.*`` temp files), and the file
ends in a ZIP end-of-central-directory record. The file is then moved at once,
before the client hears back, into ``<data_dir>/incoming/<account>/<token>/``
(so a new upload with the same name is a new file and its own run) and handed
to ``on_upload``, which checks every CRC and moves it into the spool. A file
that turns out incomplete or corrupt is moved back, so ``reput``/``put -c``
can resume it. For two minutes afterwards ``stat``/``setstat`` on the old name
answer from a remembered copy of its attributes, because paramiko (``put``
confirms the size), rclone and WinSCP (set the modification time) look at the
file right after uploading it.
"""

from __future__ import annotations

import asyncio
import os
import posixpath
import stat as statmod
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh
import structlog
from asyncssh import FXF_APPEND, FXF_CREAT, FXF_EXCL, FXF_READ, FXF_TRUNC, FXF_WRITE

from rostergate.accounts import REPORTS_DIR
from rostergate.sftp.settings import SftpSettings

log = structlog.get_logger("rostergate.sftp")

UploadCallback = Callable[[str, Path], Awaitable[object]]
_WRITE_FLAGS = FXF_WRITE | FXF_APPEND | FXF_CREAT | FXF_TRUNC
GHOST_SECONDS = 120.0
INCOMING_DIR = "incoming"
_ORIGIN = ".origin"
_EOCD = b"PK\x05\x06"


def is_upload_name(relative: str) -> bool:
    """True for a ``*.zip`` path outside ``reports/`` whose name does not start with a dot."""
    parts = relative.strip("/").split("/")
    return relative.lower().endswith(".zip") and parts[0] != REPORTS_DIR and not parts[-1].startswith(".")


def looks_finished(path: bytes) -> bool:
    """Cheap first check: the file ends with a ZIP end-of-central-directory record."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size < 22:
                return False
            handle.seek(max(0, size - 65_557))
            return _EOCD in handle.read()
    except OSError:
        return False


class LimitExceeded(asyncssh.SFTPFailure):
    """A limit refused the request; the message says which and how to proceed."""


@dataclass
class OpenFile:
    """One open file handle of a session."""

    file: object  # a raw file object (buffering=0)
    local: bytes
    relative: str
    writing: bool
    append: bool
    opened_at: float = field(default_factory=time.monotonic)
    bytes_written: int = 0
    bytes_read: int = 0

    def fileno(self) -> int:
        return self.file.fileno()  # type: ignore[attr-defined]


class ServerState:
    """What all sessions of one listener share: settings, registries, background tasks."""

    def __init__(self, settings: SftpSettings, data_dir: Path, homes: Path, on_upload: UploadCallback):
        self.settings = settings
        self.homes = homes
        self.incoming = Path(data_dir) / INCOMING_DIR
        self.incoming.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.incoming.chmod(0o700)
        self.on_upload = on_upload
        self.writers: dict[bytes, int] = {}  # local path -> open write handles (all sessions)
        self.ghosts: dict[bytes, tuple[asyncssh.SFTPAttrs, float]] = {}  # local path -> (attrs, expiry)
        self.sessions: dict[str, int] = {}  # account -> open SFTP sessions
        self.tasks: set[asyncio.Task] = set()

    def spawn(self, coro: Awaitable[object]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # -- ghosts: attributes of uploads that just left the home ---------------------
    def ghost(self, local: bytes) -> asyncssh.SFTPAttrs | None:
        entry = self.ghosts.get(local)
        if entry is None:
            return None
        if entry[1] < time.monotonic():
            del self.ghosts[local]
            return None
        return entry[0]

    def remember(self, local: bytes, attrs: os.stat_result) -> None:
        now = time.monotonic()
        for key in [k for k, (_, expiry) in self.ghosts.items() if expiry < now]:
            del self.ghosts[key]
        self.ghosts[local] = (asyncssh.SFTPAttrs.from_local(attrs), now + GHOST_SECONDS)

    def touch_ghost(self, local: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        entry = self.ghosts.get(local)
        if entry is None or attrs.mtime is None:
            return
        ghost = entry[0]
        ghost.mtime, ghost.mtime_ns = attrs.mtime, attrs.mtime_ns
        if attrs.atime is not None:
            ghost.atime, ghost.atime_ns = attrs.atime, attrs.atime_ns

    # -- finishing uploads ---------------------------------------------------------
    def stage(self, account: str, local: bytes, relative: str) -> Path | None:
        """Move a finished-looking upload out of the home; returns its staged path."""
        folder = self.incoming / account
        folder.mkdir(exist_ok=True, mode=0o700)
        token = folder / uuid.uuid4().hex
        token.mkdir(mode=0o700)
        staged = token / os.fsdecode(posixpath.basename(local))
        try:
            attrs = os.stat(local)
            os.rename(local, staged)
        except OSError:
            token.rmdir()
            return None
        (token / _ORIGIN).write_text(relative)
        self.remember(local, attrs)
        return staged

    async def finish(self, account: str, staged: Path, local: bytes) -> None:
        """Hand a staged upload to the intake; move it back when it is not a complete ZIP."""
        try:
            await self.on_upload(account, staged)
        except Exception:  # the intake failed: keep the upload for the tenant to retry
            log.exception("intake_failed", account=account, upload=staged.name)
        if staged.exists():
            try:
                os.link(staged, local)  # never replaces a newer upload of the same name
                log.info("upload_kept_for_resume", account=account, upload=staged.name)
            except FileExistsError:
                log.info("upload_superseded", account=account, upload=staged.name)
            except OSError as exc:
                log.warning("upload_restore_failed", account=account, upload=staged.name, error=str(exc))
            staged.unlink(missing_ok=True)
            self.ghosts.pop(local, None)
        (staged.parent / _ORIGIN).unlink(missing_ok=True)
        try:
            staged.parent.rmdir()
        except OSError:
            pass

    def recover(self) -> None:
        """Finish uploads staged before a crash (called once at start)."""
        for account_dir in sorted(p for p in self.incoming.iterdir() if p.is_dir()):
            for token in sorted(p for p in account_dir.iterdir() if p.is_dir()):
                files = [p for p in token.iterdir() if p.name != _ORIGIN]
                origin = token / _ORIGIN
                if not files or not origin.exists():
                    for path in token.iterdir():
                        path.unlink()
                    token.rmdir()
                    continue
                relative = origin.read_text().strip("/")
                local = os.fsencode(str((self.homes / account_dir.name).resolve() / relative))
                self.spawn(self.finish(account_dir.name, files[0], local))


class TenantSFTPServer(asyncssh.SFTPServer):
    """An SFTP session confined to one account's home."""

    def __init__(self, chan: asyncssh.SSHServerChannel, state: ServerState, account: str, remote: str):
        home = state.homes / account
        super().__init__(chan, chroot=os.fsencode(str(home)))
        self._state = state
        self._home = self._chroot  # real path, bytes
        self._account = account
        self._remote = remote
        self._limit = state.settings.upload_limit(account)
        self._max_read = state.settings.max_packet_bytes - 1024

    def refusal(self, message: str) -> LimitExceeded:
        """A limit's refusal: the SFTP status carries ``message``; it is also written to the
        channel's stderr, which OpenSSH ``sftp`` prints (it shows only "Failure" for a status)."""
        log.warning("limit_refused", account=self._account, remote=self._remote, reason=message)
        try:
            self.channel.write_stderr((message + "\n").encode())
        except Exception:  # the channel may be closing; the status still says it
            pass
        return LimitExceeded(message)

    # -- path policy ---------------------------------------------------------------
    def _inside(self, local: bytes) -> bool:
        return local == self._home or local.startswith(self._home + b"/")

    def resolve(self, path: bytes, follow: bool = True) -> bytes:
        """The local path for client ``path``, never outside the home (see module doc)."""
        if b"\0" in path:
            raise asyncssh.SFTPNoSuchFile("No such file")
        client = posixpath.normpath(posixpath.join(b"/", path))
        parent, name = posixpath.split(client)
        local_parent = os.path.realpath(self._home + parent.rstrip(b"/"))
        if not self._inside(local_parent):
            raise asyncssh.SFTPNoSuchFile("No such file")
        if not name:
            return local_parent
        local = posixpath.join(local_parent, name)
        if follow and os.path.islink(local):
            local = os.path.realpath(local)
            if not self._inside(local):
                raise asyncssh.SFTPNoSuchFile("No such file")
        return local

    def map_path(self, path: bytes) -> bytes:
        return self.resolve(path, follow=True)

    def _relative(self, local: bytes) -> str:
        return "/" + os.fsdecode(local[len(self._home):]).strip("/")

    def _refuse_reports_write(self, local: bytes) -> None:
        relative = self._relative(local)
        if relative == "/" + REPORTS_DIR or relative.startswith("/" + REPORTS_DIR + "/"):
            raise asyncssh.SFTPPermissionDenied("reports/ is read-only: upload your ZIP to / instead")

    # -- files ---------------------------------------------------------------------
    def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> OpenFile:
        local = self.resolve(path, follow=True)
        writing = bool(pflags & _WRITE_FLAGS)
        if writing:
            self._refuse_reports_write(local)
            if local == self._home:
                raise asyncssh.SFTPPermissionDenied("cannot write to a folder")
        if pflags & FXF_READ and writing:
            flags, mode = os.O_RDWR, "r+b"
        elif writing:
            flags, mode = os.O_WRONLY, "wb"
        else:
            flags, mode = os.O_RDONLY, "rb"
        append = bool(pflags & FXF_APPEND)
        flags |= (os.O_APPEND if append else 0) | (os.O_CREAT if pflags & FXF_CREAT else 0)
        flags |= (os.O_TRUNC if pflags & FXF_TRUNC else 0) | (os.O_EXCL if pflags & FXF_EXCL else 0)
        flags |= os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        try:
            before = os.lstat(local)
        except FileNotFoundError:
            before = None
        if before is not None and statmod.S_ISREG(before.st_mode) and before.st_nlink > 1:
            raise asyncssh.SFTPPermissionDenied("hard-linked files are not served")
        fd = os.open(local, flags, 0o600)
        try:
            info = os.fstat(fd)
            real = os.fsencode(os.path.realpath(f"/proc/self/fd/{fd}"))
            if not self._inside(real):
                raise asyncssh.SFTPNoSuchFile("No such file")
            if not statmod.S_ISREG(info.st_mode):
                raise asyncssh.SFTPPermissionDenied("only regular files can be opened")
            if info.st_nlink > 1:
                raise asyncssh.SFTPPermissionDenied("hard-linked files are not served")
            os.set_blocking(fd, True)
            file_obj = os.fdopen(fd, mode, buffering=0)
        except BaseException:
            os.close(fd)
            raise
        handle = OpenFile(file_obj, local, self._relative(local), writing, append)
        if writing:
            self._state.writers[local] = self._state.writers.get(local, 0) + 1
            self._state.ghosts.pop(local, None)
        return handle

    def read(self, file_obj: OpenFile, offset: int, size: int) -> bytes:
        file = file_obj.file
        file.seek(offset)  # type: ignore[attr-defined]
        data = file.read(min(size, self._max_read))  # type: ignore[attr-defined]
        file_obj.bytes_read += len(data)
        return data

    def write(self, file_obj: OpenFile, offset: int, data: bytes) -> int:
        if not file_obj.writing:
            raise asyncssh.SFTPPermissionDenied("this handle was not opened for writing")
        file = file_obj.file
        end = (os.fstat(file_obj.fileno()).st_size if file_obj.append else offset) + len(data)
        if end > self._limit:
            raise self.refusal(
                f"upload refused: the file would exceed this account's limit of {self._limit} bytes "
                "(ask the operator to raise server.limits.max_upload_bytes)"
            )
        file.seek(offset)  # type: ignore[attr-defined]
        written = file.write(data)  # type: ignore[attr-defined]
        file_obj.bytes_written += len(data)
        return written

    def fstat(self, file_obj: OpenFile) -> os.stat_result:
        return os.fstat(file_obj.fileno())

    def fsetstat(self, file_obj: OpenFile, attrs: asyncssh.SFTPAttrs) -> None:
        self._setattrs(file_obj.fileno(), attrs)

    def fsync(self, file_obj: OpenFile) -> None:
        os.fsync(file_obj.fileno())

    def fstatvfs(self, file_obj: OpenFile) -> os.statvfs_result:
        return os.statvfs(file_obj.fileno())

    def close(self, file_obj: OpenFile) -> None:
        """A handle left open when the session ended (connection dropped): never a completion."""
        self._release(file_obj, "aborted")

    def client_close(self, file_obj: OpenFile) -> None:
        """The client's own ``SSH_FXP_CLOSE`` (called by the session handler)."""
        self._release(file_obj, "closed")
        local = file_obj.local
        if file_obj.writing and is_upload_name(file_obj.relative) and not self._state.writers.get(local):
            self._completed(local, file_obj.relative)

    def _release(self, file_obj: OpenFile, outcome: str) -> None:
        file_obj.file.close()  # type: ignore[attr-defined]
        if file_obj.writing:
            left = self._state.writers.get(file_obj.local, 1) - 1
            if left > 0:
                self._state.writers[file_obj.local] = left
            else:
                self._state.writers.pop(file_obj.local, None)
        if file_obj.writing or file_obj.bytes_read:
            log.info(
                "transfer", account=self._account, remote=self._remote,
                direction="upload" if file_obj.writing else "download", path=file_obj.relative,
                bytes=file_obj.bytes_written if file_obj.writing else file_obj.bytes_read,
                elapsed_ms=round((time.monotonic() - file_obj.opened_at) * 1000), outcome=outcome,
            )

    def _completed(self, local: bytes, relative: str) -> None:
        if not looks_finished(local):
            log.info("upload_incomplete", account=self._account, path=relative)
            return
        staged = self._state.stage(self._account, local, relative)
        if staged is not None:
            log.info("upload_finished", account=self._account, remote=self._remote, path=relative)
            self._state.spawn(self._state.finish(self._account, staged, local))

    # -- attributes ----------------------------------------------------------------
    def stat(self, path: bytes) -> os.stat_result | asyncssh.SFTPAttrs:
        local = self.resolve(path, follow=True)
        try:
            return os.stat(local)
        except FileNotFoundError:
            ghost = self._state.ghost(local)
            if ghost is None:
                raise
            return ghost

    def lstat(self, path: bytes) -> os.stat_result | asyncssh.SFTPAttrs:
        local = self.resolve(path, follow=False)
        try:
            return os.lstat(local)
        except FileNotFoundError:
            ghost = self._state.ghost(local)
            if ghost is None:
                raise
            return ghost

    def setstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        local = self.resolve(path, follow=True)
        self._refuse_reports_write(local)
        if not os.path.lexists(local) and self._state.ghost(local) is not None:
            self._state.touch_ghost(local, attrs)
            return
        self._setattrs(local, attrs)

    def lsetstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        local = self.resolve(path, follow=False)
        if os.path.islink(local):
            raise asyncssh.SFTPPermissionDenied("links cannot be changed on this server")
        self.setstat(path, attrs)

    def _setattrs(self, target: bytes | int, attrs: asyncssh.SFTPAttrs) -> None:
        """Size and times only; ownership and permissions stay owner-only."""
        if attrs.size is not None:
            if attrs.size > self._limit:
                raise self.refusal(f"size refused: larger than this account's limit of {self._limit} bytes")
            os.truncate(target, attrs.size)
        if attrs.atime is not None and attrs.mtime is not None:
            os.utime(target, (attrs.atime, attrs.mtime))

    # -- names ---------------------------------------------------------------------
    def realpath(self, path: bytes) -> bytes:
        return self.reverse_map_path(self.resolve(path, follow=True))

    def readlink(self, path: bytes) -> bytes:
        local = self.resolve(path, follow=False)
        os.readlink(local)  # raises when it is not a link
        target = os.fsencode(os.path.realpath(local))
        if not self._inside(target):
            raise asyncssh.SFTPNoSuchFile("No such file")
        return self.reverse_map_path(target)

    def remove(self, path: bytes) -> None:
        local = self.resolve(path, follow=False)
        self._refuse_reports_write(local)
        try:
            os.remove(local)
        except FileNotFoundError:
            if self._state.ghosts.pop(local, None) is None:
                raise

    def mkdir(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        local = self.resolve(path, follow=False)
        self._refuse_reports_write(local)
        os.mkdir(local, 0o700)

    def rmdir(self, path: bytes) -> None:
        local = self.resolve(path, follow=False)
        self._refuse_reports_write(local)
        if local == self._home:
            raise asyncssh.SFTPPermissionDenied("this folder cannot be removed")
        os.rmdir(local)

    def rename(self, oldpath: bytes, newpath: bytes) -> None:
        old, new = self._rename_paths(oldpath, newpath)
        if os.path.lexists(new):
            raise asyncssh.SFTPFileAlreadyExists("File already exists")
        os.rename(old, new)
        self._renamed(new)

    def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
        old, new = self._rename_paths(oldpath, newpath)
        os.rename(old, new)
        self._renamed(new)

    def _rename_paths(self, oldpath: bytes, newpath: bytes) -> tuple[bytes, bytes]:
        old = self.resolve(oldpath, follow=False)
        new = self.resolve(newpath, follow=False)
        for local in (old, new):
            self._refuse_reports_write(local)
            if local == self._home:
                raise asyncssh.SFTPPermissionDenied("the home folder cannot be renamed")
        return old, new

    def _renamed(self, new: bytes) -> None:
        self._state.ghosts.pop(new, None)
        relative = self._relative(new)
        if is_upload_name(relative) and os.path.isfile(new) and not self._state.writers.get(new):
            self._completed(new, relative)

    def symlink(self, oldpath: bytes, newpath: bytes) -> None:
        raise asyncssh.SFTPPermissionDenied("links are not supported on this server")

    def link(self, oldpath: bytes, newpath: bytes) -> None:
        raise asyncssh.SFTPPermissionDenied("links are not supported on this server")
