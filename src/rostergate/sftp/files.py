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

**Attributes** (``setstat``, ``lsetstat``, ``fsetstat``: truncate and times;
permissions and owners are never changed). By path: the target is checked with
``lstat`` (a regular file with one link, or, for times only, a folder of the
tenant's below the home; never ``reports/``), opened with ``O_NOFOLLOW``, and
the descriptor is checked again (same inode, real path inside the home) before
``ftruncate``/``futimens`` act on it, never on the path. By handle: only a
handle opened for writing may change its file (a report's times cannot be
changed through a read handle).

**What is validated is what is delivered.** Open write handles are counted per
inode ``(st_dev, st_ino)``, across all sessions, not per path. A file with an
open write handle cannot be renamed (rename and posix-rename answer "close the
file before renaming it"), replaced by a posix-rename or removed (its bytes
would leave the home and the quota while the handle could still grow them),
and an upload is staged (moved out of the home) only
when no handle writes its inode; staging and that check happen in one step of
the event loop, so no handle can be opened in between and none can write the
staged file afterwards. We refuse rather than let completion wait for the
close: a rename then means the same thing for every client (the file is
finished), and no client we support renames a file it still writes (WinSCP,
rclone, lftp and OpenSSH close first). A closed handle completes the file where
it is *now* (its folders may have been renamed), found from the descriptor.

**Limits on what a tenant stores** (``[server.limits]``, see
:mod:`rostergate.sftp.settings`): all bytes of the home outside ``reports/``
(``max_account_bytes``: files by their extent, so a write at offset 10 MiB or a
``setstat`` size of 10 MiB counts as 10 MiB, and 4 KiB per folder), files plus
folders (``max_account_entries``), folder depth (``max_folder_depth``) and name
length (``max_name_bytes``; control characters are never accepted in a new
name). The usage is kept in :class:`ServerState` per account, shared by its
sessions, measured with a bounded, iterative walk (:mod:`rostergate.fstree`)
when the account's first session starts, and kept up to date by every write,
truncate, create, remove, rename and staged upload.

**Completion** (reference/sftp.md §3.3). An upload is finished when

* the client's own ``SSH_FXP_CLOSE`` closes a handle it wrote on a ``*.zip``
  name (the session handler tells it apart from the closes asyncssh does for
  every open handle when a connection drops: those never count), and no other
  handle still writes that file, or
* a file is renamed to a ``*.zip`` name (WinSCP ``.filepart``, rclone
  ``.partial``, lftp temp names),

the name does not start with ``.`` (lftp's ``.in.*`` temp files), and the file
is not a ZIP still being uploaded (:func:`looks_finished`: one that starts like
a ZIP must end in an end-of-central-directory record). The file is then moved
at once, before the client hears back, into
``<data_dir>/incoming/<account>/<token>/`` (so a new upload with the same name
is a new file and its own run) and handed to ``on_upload``, which reads its
central directory (never decompressing it) and moves it into the spool: a
damaged or non-ZIP file becomes a run that is rejected with a report. A ZIP
that turns out to have no end record yet is moved back, so ``reput``/``put -c``
can resume it. For two minutes afterwards ``stat``/``setstat`` on the old name
answer from a remembered copy of its attributes, because paramiko (``put``
confirms the size), rclone and WinSCP (set the modification time) look at the
file right after uploading it.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import io
import os
import posixpath
import stat as statmod
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

import asyncssh
import structlog
from asyncssh import FXF_APPEND, FXF_CREAT, FXF_EXCL, FXF_READ, FXF_TRUNC, FXF_WRITE

from rostergate import fstree, metrics, store
from rostergate.accountrecords import REPORTS_DIR
from rostergate.sftp.settings import SftpSettings
from rostergate.sftp.slots import SessionSlots
from rostergate.sftp.writes import APPEND, MAX_PENDING_BYTES, WRITE_THREADS, Write, reason
from rostergate.uploadnames import is_upload_name

log = structlog.get_logger("rostergate.sftp")

UploadCallback = Callable[[str, Path], Awaitable[object]]
T = TypeVar("T")
_WRITE_FLAGS = FXF_WRITE | FXF_APPEND | FXF_CREAT | FXF_TRUNC
GHOST_SECONDS = 120.0
INCOMING_DIR = "incoming"
LOGIN_THREADS = 4
_ORIGIN = ".origin"
_EOCD = b"PK\x05\x06"
_LOCAL_HEADER = b"PK\x03\x04"
FOLDER_BYTES = 4096  # what a folder counts towards the account quota
_CONTROL = frozenset(range(0x20)) | {0x7F}
Inode = tuple[int, int]


def inode(info: os.stat_result) -> Inode:
    return info.st_dev, info.st_ino


def stored_bytes(info: os.stat_result) -> int:
    """What an entry counts towards the quota: a file its size (its extent), a folder 4 KiB."""
    if statmod.S_ISREG(info.st_mode):
        return info.st_size
    return FOLDER_BYTES if statmod.S_ISDIR(info.st_mode) else 0


@dataclass
class Usage:
    """What one account stores in its home (outside ``reports/``)."""

    bytes: int = 0
    entries: int = 0
    overflow: bool = False  # more entries than a walk counts: no growth until measured again

    def charge(self, size: int = 0, entries: int = 0) -> None:
        self.bytes = max(0, self.bytes + size)
        self.entries = max(0, self.entries + entries)


def measure_home(home: Path, max_entries: int) -> Usage:
    """Walk ``home`` (iteratively, at most ``max_entries`` entries) and add up its usage."""
    usage = Usage()
    try:
        for entry in fstree.walk(home, max_entries, exclude={REPORTS_DIR}):
            usage.charge(stored_bytes(entry.stat), 1)
    except fstree.TooManyEntries:
        usage.overflow = True
    except OSError as exc:
        log.warning("usage_walk_failed", home=home.name, error=exc.strerror or str(exc))
    return usage


def looks_finished(path: bytes) -> bool:
    """Cheap first check that a closed or renamed upload is finished (the intake judges it properly).

    A file that starts like a ZIP (a local header) is finished once it ends with
    an end-of-central-directory record; until then it is a ZIP still being
    uploaded, kept for ``reput``/``put -c``. A file that does not start like a ZIP
    is finished as it is: it becomes a run that is rejected with a report. Files
    shorter than 4 bytes are never finished. Reads at most the first 4 bytes and
    the last 64 KiB; never raises.
    """
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if handle.read(4) != _LOCAL_HEADER:
                return size >= 4
            handle.seek(max(0, size - 65_557))
            return _EOCD in handle.read()
    except OSError:
        return False


@dataclass
class Extent:
    """An inode with writes on their way to the disk (any session): how far they reach.

    ``extent`` starts at the file's size when its first pending write is accepted and grows with
    each accepted write's end; the quota is charged by that growth at once, and corrected by what
    the file really holds once the last pending write is done (a failed write stored less).
    """

    extent: int
    pending: int = 0
    waiters: list[asyncio.Future[None]] = field(default_factory=list)


class LimitExceeded(asyncssh.SFTPFailure):
    """A limit refused the request; the message says which and how to proceed."""


@dataclass
class OpenFile:
    """One open file handle of a session."""

    file: io.FileIO  # a raw file object (buffering=0)
    local: bytes
    relative: str
    writing: bool
    append: bool
    inode: Inode = (0, 0)
    opened_at: float = field(default_factory=time.monotonic)
    bytes_written: int = 0
    bytes_read: int = 0
    write_error: Exception | None = None  # the first write that failed: the close reports it, no completion

    def fileno(self) -> int:
        return self.file.fileno()


def opened(file_obj: object) -> OpenFile:
    """``file_obj`` as the :class:`OpenFile` it is: asyncssh hands back, typed ``object``, what
    :meth:`TenantSFTPServer.open` returned."""
    if not isinstance(file_obj, OpenFile):
        raise TypeError(f"not a file opened by this server: {type(file_obj).__name__}")
    return file_obj


class ServerState:
    """What all sessions of one listener share: settings, registries, background tasks."""

    def __init__(self, settings: SftpSettings, data_dir: Path, homes: Path, on_upload: UploadCallback,
                 slots: SessionSlots | None = None):
        self.settings = settings
        self.homes = homes
        self.incoming = Path(data_dir) / INCOMING_DIR
        self.incoming.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.incoming.chmod(0o700)
        self.on_upload = on_upload
        self.writers: dict[Inode, int] = {}  # inode -> open write handles (all sessions)
        self.ghosts: dict[bytes, tuple[asyncssh.SFTPAttrs, float]] = {}  # local path -> (attrs, expiry)
        self.sessions: dict[str, int] = {}  # account -> open SFTP sessions in this process
        self.slots = slots if slots is not None else SessionSlots(store.connect_memory())  # in all processes
        self.usage: dict[str, Usage] = {}  # account -> what its home stores
        self.extents: dict[Inode, Extent] = {}  # inodes with writes pending (rostergate.sftp.writes)
        self.write_pool = ThreadPoolExecutor(WRITE_THREADS, thread_name_prefix="sftp-write")
        # Logins' and sessions' store reads and slot writes: a pool of their own, so that they never
        # queue behind the intake's hashing of finished uploads in asyncio's default one.
        self.login_pool = ThreadPoolExecutor(LOGIN_THREADS, thread_name_prefix="sftp-login")
        self.write_buffer_bytes = MAX_PENDING_BYTES  # per session, waiting for the disk
        self._measuring: dict[str, asyncio.Task[None]] = {}
        self.tasks: set[asyncio.Future[object]] = set()

    def uploads_in_progress(self) -> int:
        """Write handles open in any session, and finished uploads still on their way to a run."""
        return sum(self.writers.values()) + len(self.tasks)

    async def off_loop(self, function: Callable[..., T], *args: object) -> T:
        """``function(*args)`` on the login pool (as ``asyncio.to_thread``, context included)."""
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(
            self.login_pool, functools.partial(context.run, function, *args))

    def spawn(self, coro: Awaitable[object]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # -- usage: what each account stores -----------------------------------------
    @property
    def walk_bound(self) -> int:
        """Entries a usage walk counts before it gives up (twice the entry limit)."""
        return 2 * self.settings.max_account_entries

    def usage_of(self, account: str) -> Usage:
        """The account's usage, measured now (blocking) if no session measured it yet."""
        usage = self.usage.get(account)
        if usage is None:
            usage = self.usage[account] = measure_home(self.homes / account, self.walk_bound)
        return usage

    async def open_usage(self, account: str) -> None:
        """Called as a session starts: the account's first session measures the home (in a
        thread); sessions that start meanwhile wait for that measure."""
        task = self._measuring.get(account)
        if task is None:
            if account in self.usage and self.sessions.get(account, 0) > 1:
                return
            task = self._measuring[account] = asyncio.ensure_future(self._measure(account))
        await asyncio.shield(task)

    async def _measure(self, account: str) -> None:
        try:
            self.usage[account] = await self.off_loop(measure_home, self.homes / account, self.walk_bound)
        finally:
            self._measuring.pop(account, None)

    def charge(self, account: str, size: int = 0, entries: int = 0) -> None:
        """Change a measured usage (an unmeasured one is measured when it is needed)."""
        usage = self.usage.get(account)
        if usage is not None:
            usage.charge(size, entries)

    async def settle(self, node: Inode) -> None:
        """Return once no write of any session is pending on ``node`` (so a size change by
        another session, or a truncating open, comes after them, as it would without the queue)."""
        while (pending := self.extents.get(node)) is not None:
            waiter = asyncio.get_running_loop().create_future()
            pending.waiters.append(waiter)
            await waiter

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
        """Move a finished-looking upload out of the home; returns its staged path.

        Refused (None) while any handle writes the file's inode: the check and the
        move happen without yielding to the event loop, so what leaves the home
        can no longer be written by anyone.
        """
        try:
            attrs = os.lstat(local)
        except OSError:
            return None
        if not statmod.S_ISREG(attrs.st_mode) or self.writers.get(inode(attrs)):
            log.info("upload_still_open", account=account, path=relative)
            return None
        folder = self.incoming / account
        folder.mkdir(exist_ok=True, mode=0o700)
        token = folder / f"{os.getpid()}-{uuid.uuid4().hex}"  # whose: see staged_by
        token.mkdir(mode=0o700)
        fd = os.open(token / _ORIGIN, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as origin:  # before the move: a staged file always knows where it came from
            origin.write(relative)
        staged = token / os.fsdecode(posixpath.basename(local))
        try:
            os.rename(local, staged)
        except OSError:
            (token / _ORIGIN).unlink()
            token.rmdir()
            return None
        self.remember(local, attrs)
        self.charge(account, -attrs.st_size, -1)
        return staged

    async def finish(self, account: str, staged: Path, local: bytes) -> None:
        """Hand a staged upload to the intake; move it back when the intake left it (a ZIP
        still missing its end record, which ``reput``/``put -c`` can resume, or an intake error)."""
        try:
            await self.on_upload(account, staged)
        except Exception:  # the intake failed: keep the upload for the tenant to retry
            log.exception("intake_failed", account=account, upload=staged.name)
        if staged.exists():
            try:
                os.link(staged, local)  # never replaces a newer upload of the same name
                self.charge(account, staged.stat().st_size, 1)
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

    def staged_by(self, pid: int) -> list[Path]:
        """The staging folders of process ``pid``'s uploads not yet finished (each upload is staged in
        ``incoming/<account>/<pid>-<token>/``)."""
        return sorted(p for p in self.incoming.glob(f"*/{pid}-*") if p.is_dir())

    def recover(self, tokens: list[Path] | None = None) -> int:
        """Finish uploads staged by a server that ended before it finished them: every one (at start,
        before any server serves), or those in ``tokens`` (a server process that died, by the daemon:
        :meth:`staged_by`). Returns how many uploads are handed to the intake again."""
        if tokens is None:
            tokens = sorted(p for p in self.incoming.glob("*/*") if p.is_dir())
        recovered = 0
        for token in tokens:
            if not token.is_dir():  # finished meanwhile
                continue
            account = token.parent.name
            files = [p for p in token.iterdir() if p.name != _ORIGIN]
            origin = token / _ORIGIN
            if not files or not origin.exists():  # handed over already, or never moved in
                for path in token.iterdir():
                    path.unlink()
                token.rmdir()
                continue
            relative = origin.read_text().strip("/")
            local = os.fsencode(str((self.homes / account).resolve() / relative))
            self.spawn(self.finish(account, files[0], local))
            recovered += 1
        return recovered


class TenantSFTPServer(asyncssh.SFTPServer):
    """An SFTP session confined to one account's home."""

    def __init__(self, chan: asyncssh.SSHServerChannel[bytes], state: ServerState, account: str, remote: str):
        home = state.homes / account
        super().__init__(chan, chroot=os.fsencode(str(home)))
        assert self._chroot is not None  # asyncssh sets it from the non-empty chroot given above
        self._state = state
        self._home: bytes = self._chroot  # real path, bytes
        self._account = account
        self._remote = remote
        self._limit = state.settings.upload_limit(account)
        self._quota = state.settings.account_bytes_limit(account)
        self._max_read = state.settings.max_packet_bytes - 1024

    def refusal(self, message: str) -> LimitExceeded:
        """A limit's refusal: the SFTP status carries ``message``; it is also written to the
        channel's stderr, which OpenSSH ``sftp`` prints (it shows only "Failure" for a status)."""
        log.warning("limit_refused", account=self._account, remote=self._remote, reason=message)
        self._tell(message)
        return LimitExceeded(message)

    def _tell(self, message: str) -> None:
        """Write ``message`` to the channel's stderr (shown by OpenSSH ``sftp``)."""
        try:
            self.channel.write_stderr((message + "\n").encode())
        except Exception:  # the channel may be closing; the status still says it
            pass

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

    # -- limits on what the tenant stores --------------------------------------------
    def _depth(self, local: bytes) -> int:
        """Levels below the home: ``/a`` is 1, ``/a/b`` is 2."""
        inner = local[len(self._home):].strip(b"/")
        return inner.count(b"/") + 1 if inner else 0

    def _check_new_name(self, local: bytes, folder: bool) -> None:
        """A name the tenant creates: length, control characters, depth."""
        settings = self._state.settings
        name = posixpath.basename(local)
        if len(name) > settings.max_name_bytes:
            raise self.refusal(f"name refused: names may be at most {settings.max_name_bytes} bytes long "
                               "(server.limits.max_name_bytes); use a shorter name")
        if any(byte in _CONTROL for byte in name):
            raise self.refusal("name refused: names may not contain control characters; rename the file")
        depth, most = self._depth(local), settings.max_folder_depth
        if depth > (most if folder else most + 1):
            raise self.refusal(f"{'folder' if folder else 'file'} refused: folders may be nested at most {most} "
                               "levels deep (server.limits.max_folder_depth); use a shallower folder")

    def _reserve(self, size: int = 0, entries: int = 0) -> Usage:
        """Refuse growth beyond the account's quota or entry limit; returns the usage to charge."""
        usage = self._state.usage_of(self._account)
        if size <= 0 and entries <= 0:
            return usage
        settings = self._state.settings
        if usage.overflow:
            raise self.refusal(f"refused: this account holds more than {self._state.walk_bound} files and folders; "
                               "remove files or folders you no longer need, then reconnect")
        if entries > 0 and usage.entries + entries > settings.max_account_entries:
            raise self.refusal(f"refused: this account may hold at most {settings.max_account_entries} files and "
                               "folders (server.limits.max_account_entries); remove some you no longer need")
        if size > 0 and usage.bytes + size > self._quota:
            raise self.refusal(
                f"quota exceeded: this account may store at most {self._quota} bytes in all (files, partial "
                f"uploads and folders; {usage.bytes} stored now); remove files you no longer need, or ask the "
                "operator to raise server.limits.max_account_bytes"
            )
        return usage

    # -- files ---------------------------------------------------------------------
    async def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> OpenFile:
        if pflags & FXF_TRUNC:  # truncating after another session's pending writes, as without the queue
            await self._settle(self.resolve(path, follow=True))
        return self._open(path, pflags)

    def _open(self, path: bytes, pflags: int) -> OpenFile:
        local = self.resolve(path, follow=True)
        writing = bool(pflags & _WRITE_FLAGS)
        if writing:
            self._refuse_reports_write(local)
            if local == self._home:
                raise asyncssh.SFTPPermissionDenied("cannot write to a folder")
        mode: Literal["r+b", "wb", "rb"]  # binary and unbuffered: os.fdopen gives an io.FileIO
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
        creating = writing and before is None and bool(pflags & FXF_CREAT)
        if creating:
            self._check_new_name(local, folder=False)
            self._reserve(entries=1)
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
        handle = OpenFile(file_obj, local, self._relative(local), writing, append, inode(info))
        if writing:
            writers = self._state.writers
            writers[handle.inode] = writers.get(handle.inode, 0) + 1
            self._state.ghosts.pop(local, None)
            if creating:
                self._state.charge(self._account, info.st_size, 1)
            elif before is not None and inode(before) == handle.inode:  # O_TRUNC gives bytes back
                self._state.charge(self._account, info.st_size - before.st_size)
        return handle

    def read(self, file_obj: object, offset: int, size: int) -> bytes:
        handle = opened(file_obj)
        file = handle.file
        file.seek(offset)
        data = file.read(min(size, self._max_read))
        handle.bytes_read += len(data)
        return data

    def accept_write(self, file_obj: OpenFile, offset: int, length: int) -> int:
        """Check a WRITE of ``length`` bytes at ``offset`` against the limits and charge its growth
        now; returns where it goes (:data:`~rostergate.sftp.writes.APPEND` on an append handle).
        The bytes are written later, off the loop (:mod:`rostergate.sftp.writes`), and
        :meth:`write_done` is called then."""
        if not file_obj.writing:
            raise asyncssh.SFTPPermissionDenied("this handle was not opened for writing")
        pending = self._state.extents.get(file_obj.inode)
        size = pending.extent if pending is not None else os.fstat(file_obj.fileno()).st_size
        end = (size if file_obj.append else offset) + length
        if end > self._limit:
            raise self.refusal(
                f"upload refused: the file would exceed this account's limit of {self._limit} bytes "
                "(ask the operator to raise server.limits.max_upload_bytes)"
            )
        growth = max(0, end - size)  # a write past the end stores everything up to it (sparse or not)
        self._reserve(size=growth).charge(growth)
        if pending is None:
            pending = self._state.extents[file_obj.inode] = Extent(size)
        pending.pending += 1
        pending.extent = max(pending.extent, end)
        return APPEND if file_obj.append else offset

    def write_done(self, write: Write) -> None:
        """A write accepted by :meth:`accept_write` is finished (``write.error`` when it failed)."""
        file_obj: OpenFile = write.file
        if write.error is None:
            file_obj.bytes_written += len(write.data)
        else:
            log.warning("write_failed", account=self._account, remote=self._remote, path=file_obj.relative,
                        error=reason(write.error))
            if file_obj.write_error is None:
                file_obj.write_error = write.error
                self._tell(f"upload of {file_obj.relative} failed on the server: {reason(write.error)}")
        pending = self._state.extents.get(file_obj.inode)
        if pending is None:
            return
        pending.pending -= 1
        if pending.pending > 0:
            return
        del self._state.extents[file_obj.inode]
        try:
            stored = os.fstat(file_obj.fileno()).st_size
        except OSError:
            stored = pending.extent
        if stored != pending.extent:  # a failed write stored less than was charged
            self._state.charge(self._account, stored - pending.extent)
        for waiter in pending.waiters:
            if not waiter.done():
                waiter.set_result(None)

    def fstat(self, file_obj: object) -> os.stat_result:
        return os.fstat(opened(file_obj).fileno())

    async def fsetstat(self, file_obj: object, attrs: asyncssh.SFTPAttrs) -> None:
        file_obj = opened(file_obj)
        if not file_obj.writing:
            raise asyncssh.SFTPPermissionDenied(
                "this file was opened for reading: its size and times cannot be changed through it")
        await self._state.settle(file_obj.inode)  # other sessions' writes to the file come first
        fd = file_obj.fileno()
        info = os.fstat(fd)
        if not statmod.S_ISREG(info.st_mode) or info.st_nlink > 1:
            raise asyncssh.SFTPPermissionDenied("hard-linked files cannot be changed")
        self._setattrs(fd, info, attrs)

    def fsync(self, file_obj: object) -> None:
        os.fsync(opened(file_obj).fileno())

    def fstatvfs(self, file_obj: object) -> os.statvfs_result:
        return os.statvfs(opened(file_obj).fileno())

    def close(self, file_obj: object) -> None:
        """A handle left open when the session ended (connection dropped): never a completion."""
        self._release(opened(file_obj), "aborted")

    def client_close(self, file_obj: OpenFile) -> None:
        """The client's own ``SSH_FXP_CLOSE`` (called by the session handler once the handle's
        writes are done): the file is finished, where it is now, once no handle writes it any
        more. After a failed write the handle is closed, the file stays where it is (a ``reput``
        can resume it) and the close answers with that write's error."""
        failed = file_obj.write_error
        if failed is not None:
            self._release(file_obj, "write_failed")
            raise asyncssh.SFTPFailure(f"upload incomplete: a write to this file failed ({reason(failed)}); "
                                       "the file was kept as it is: resume or upload it again")
        where = self._where(file_obj) if file_obj.writing else None
        self._release(file_obj, "closed")
        if where is not None and not self._state.writers.get(file_obj.inode):
            relative = self._relative(where)
            if is_upload_name(relative):
                self._completed(where, relative)

    def _where(self, file_obj: OpenFile) -> bytes | None:
        """The handle's file's path now (its folders may have been renamed), if still in the home."""
        try:
            local = os.fsencode(os.readlink(f"/proc/self/fd/{file_obj.fileno()}"))
            same = inode(os.lstat(local)) == file_obj.inode
        except OSError:  # removed, or a "(deleted)" path
            return None
        return local if same and self._inside(local) else None

    def _release(self, file_obj: OpenFile, outcome: str) -> None:
        file_obj.file.close()
        if file_obj.writing:
            writers = self._state.writers
            left = writers.get(file_obj.inode, 1) - 1
            if left > 0:
                writers[file_obj.inode] = left
            else:
                writers.pop(file_obj.inode, None)
        if file_obj.writing or file_obj.bytes_read:
            log.info(
                "transfer", account=self._account, remote=self._remote,
                direction="upload" if file_obj.writing else "download", path=file_obj.relative,
                bytes=file_obj.bytes_written if file_obj.writing else file_obj.bytes_read,
                elapsed_ms=round((time.monotonic() - file_obj.opened_at) * 1000), outcome=outcome,
            )
            metrics.SFTP_BYTES.labels("in" if file_obj.writing else "out").inc(
                file_obj.bytes_written if file_obj.writing else file_obj.bytes_read)

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

    async def _settle(self, local: bytes) -> None:
        """Wait for pending writes (any session) on the file at ``local``, if it exists."""
        try:
            info = os.stat(local)
        except OSError:
            return
        await self._state.settle(inode(info))

    async def setstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        await self._settle(self.resolve(path, follow=True))
        self._setstat(path, attrs)

    def _setstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        local = self.resolve(path, follow=True)
        self._refuse_reports_write(local)
        if not os.path.lexists(local) and self._state.ghost(local) is not None:
            self._state.touch_ghost(local, attrs)
            return
        before = os.lstat(local)
        if statmod.S_ISREG(before.st_mode):
            if before.st_nlink > 1:
                raise asyncssh.SFTPPermissionDenied("hard-linked files cannot be changed")
            flags = os.O_WRONLY if attrs.size is not None else os.O_RDONLY
        elif statmod.S_ISDIR(before.st_mode) and local != self._home and attrs.size is None:
            flags = os.O_RDONLY | os.O_DIRECTORY  # the tenant's own folders: times only
        else:
            raise asyncssh.SFTPPermissionDenied("only your own files (and your folders' times) can be changed")
        fd = os.open(local, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            info = os.fstat(fd)
            real = os.fsencode(os.path.realpath(f"/proc/self/fd/{fd}"))
            if inode(info) != inode(before) or info.st_nlink != before.st_nlink or not self._inside(real):
                raise asyncssh.SFTPPermissionDenied("the file changed while it was being changed; try again")
            self._refuse_reports_write(real)
            self._setattrs(fd, info, attrs)
        finally:
            os.close(fd)

    async def lsetstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        local = self.resolve(path, follow=False)
        if os.path.islink(local):
            raise asyncssh.SFTPPermissionDenied("links cannot be changed on this server")
        await self.setstat(path, attrs)

    def _setattrs(self, fd: int, info: os.stat_result, attrs: asyncssh.SFTPAttrs) -> None:
        """Size and times of the checked descriptor ``fd``; ownership and permissions stay owner-only."""
        if attrs.size is not None:
            if attrs.size > self._limit:
                raise self.refusal(f"size refused: larger than this account's limit of {self._limit} bytes")
            growth = attrs.size - info.st_size
            usage = self._reserve(size=growth)
            os.ftruncate(fd, attrs.size)
            usage.charge(growth)
        if attrs.atime is not None and attrs.mtime is not None:
            os.utime(fd, (attrs.atime, attrs.mtime))

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
            before = os.lstat(local)
            self._refuse_open_writers(before, "remove refused: close the file before removing it")
            os.remove(local)
        except FileNotFoundError:
            if self._state.ghosts.pop(local, None) is None:
                raise
            return
        self._state.charge(self._account, -stored_bytes(before), -1)

    def mkdir(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        local = self.resolve(path, follow=False)
        self._refuse_reports_write(local)
        if os.path.lexists(local):
            raise asyncssh.SFTPFileAlreadyExists("File already exists")
        self._check_new_name(local, folder=True)
        usage = self._reserve(size=FOLDER_BYTES, entries=1)
        os.mkdir(local, 0o700)
        usage.charge(FOLDER_BYTES, 1)

    def rmdir(self, path: bytes) -> None:
        local = self.resolve(path, follow=False)
        self._refuse_reports_write(local)
        if local == self._home:
            raise asyncssh.SFTPPermissionDenied("this folder cannot be removed")
        os.rmdir(local)
        self._state.charge(self._account, -FOLDER_BYTES, -1)

    def rename(self, oldpath: bytes, newpath: bytes) -> None:
        old, new = self._rename_paths(oldpath, newpath)
        if os.path.lexists(new):
            raise asyncssh.SFTPFileAlreadyExists("File already exists")
        self._rename(old, new)

    def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
        old, new = self._rename_paths(oldpath, newpath)
        self._rename(old, new)

    def _rename(self, old: bytes, new: bytes) -> None:
        """Rename after the checks: no open writer, a good new name, depth kept (see module doc)."""
        info = os.lstat(old)
        self._refuse_open_writers(info, "rename refused: close the file before renaming it")
        self._check_new_name(new, folder=statmod.S_ISDIR(info.st_mode))
        if statmod.S_ISDIR(info.st_mode) and self._depth(new) > self._depth(old):
            most = self._state.settings.max_folder_depth
            try:
                height = fstree.tree_height(old, self._state.walk_bound)
            except fstree.TooManyEntries:
                height = most + 1
            if self._depth(new) + height > most:
                raise self.refusal(f"rename refused: folders may be nested at most {most} levels deep "
                                   "(server.limits.max_folder_depth)")
        try:
            replaced: os.stat_result | None = os.lstat(new)
        except FileNotFoundError:
            replaced = None
        if replaced is not None and inode(replaced) != inode(info):
            self._refuse_open_writers(replaced, "rename refused: the file it would replace is still open for "
                                                "writing; close it first")
        os.rename(old, new)
        if replaced is not None and inode(replaced) != inode(info):
            self._state.charge(self._account, -stored_bytes(replaced), -1)
        self._renamed(new)

    def _refuse_open_writers(self, info: os.stat_result, message: str) -> None:
        """Refuse to rename, replace or remove a file some handle still writes: its bytes would
        leave the home (and the quota) while the handle could still change or grow them."""
        if statmod.S_ISREG(info.st_mode) and self._state.writers.get(inode(info)):
            raise self.refusal(f"{message} (it is still open for writing)")

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
        try:
            info = os.lstat(new)
        except OSError:
            return
        if is_upload_name(relative) and statmod.S_ISREG(info.st_mode) and not self._state.writers.get(inode(info)):
            self._completed(new, relative)

    def symlink(self, oldpath: bytes, newpath: bytes) -> None:
        raise asyncssh.SFTPPermissionDenied("links are not supported on this server")

    def link(self, oldpath: bytes, newpath: bytes) -> None:
        raise asyncssh.SFTPPermissionDenied("links are not supported on this server")
