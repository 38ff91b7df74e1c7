"""The tenant's view of the file system: a chrooted SFTP server that spots finished uploads.

Each session is confined to the account's home. ``reports/`` is read-only to the
tenant. An upload counts as finished when (sftp.md §3.3):

* the client closes a handle it opened for writing on a ``*.zip`` name, and the
  close was the client's own ``SSH_FXP_CLOSE`` (asyncssh also calls ``close()``
  for every open handle when a connection drops: those never count), or
* a file is renamed to a ``*.zip`` name (WinSCP ``.filepart``, rclone
  ``.partial``, lftp temp names);

and in both cases the file is a complete ZIP archive. Finished uploads are
handed to the ``on_upload`` callback, which takes them out of the home.
"""

from __future__ import annotations

import asyncio
import os
import posixpath
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncssh
from asyncssh import FXF_APPEND, FXF_CREAT, FXF_TRUNC, FXF_WRITE

from rostergate.accounts import REPORTS_DIR

UploadCallback = Callable[[str, Path], Awaitable[None]]
_WRITE_FLAGS = FXF_WRITE | FXF_APPEND | FXF_CREAT | FXF_TRUNC


def is_upload_name(relative: str) -> bool:
    """True for a ``*.zip`` path outside ``reports/`` (the names that start runs)."""
    parts = relative.strip("/").split("/")
    return relative.lower().endswith(".zip") and parts[0] != REPORTS_DIR


class TenantSFTPServer(asyncssh.SFTPServer):
    """An SFTP session confined to one account's home."""

    def __init__(self, chan: asyncssh.SSHServerChannel, home: Path, account: str, on_upload: UploadCallback):
        super().__init__(chan, chroot=str(home).encode())
        self._home = home.resolve()
        self._account = account
        self._on_upload = on_upload
        self._writing: dict[int, str] = {}  # id(file object) -> path relative to home
        self._exited = False

    # -- path policy ---------------------------------------------------------------
    def _relative(self, path: bytes) -> str:
        """The client's ``path`` relative to the home (asyncssh hands us unmapped client paths)."""
        return posixpath.relpath(os.fsdecode(self.map_path(path)), str(self._home))

    def _refuse_reports_write(self, path: bytes) -> None:
        relative = self._relative(path)
        if relative == REPORTS_DIR or relative.startswith(REPORTS_DIR + "/"):
            raise asyncssh.SFTPPermissionDenied("reports/ is read-only: upload your ZIP to / instead")

    # -- operations ----------------------------------------------------------------
    def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> object:
        if pflags & _WRITE_FLAGS:
            self._refuse_reports_write(path)
        file_obj = super().open(path, pflags, attrs)
        if pflags & FXF_WRITE:
            self._writing[id(file_obj)] = self._relative(path)
        return file_obj

    def close(self, file_obj: object) -> None:
        # Deliberately synchronous: on a dropped connection asyncssh calls close()
        # for each open handle and then exit() with no await in between, so by
        # the time the scheduled check runs, ``_exited`` tells the two apart.
        super().close(file_obj)
        relative = self._writing.pop(id(file_obj), None)
        if relative is not None and is_upload_name(relative):
            asyncio.get_running_loop().call_soon(self._closed_after_write, relative)

    def _closed_after_write(self, relative: str) -> None:
        if self._exited:
            return  # connection dropped mid-upload: keep the partial file for a resume
        asyncio.ensure_future(self._on_upload(self._account, self._home / relative))

    def exit(self) -> None:
        self._exited = True
        super().exit()

    def rename(self, oldpath: bytes, newpath: bytes) -> None:
        self._refuse_reports_write(oldpath)
        self._refuse_reports_write(newpath)
        super().rename(oldpath, newpath)
        self._renamed(newpath)

    def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
        self._refuse_reports_write(oldpath)
        self._refuse_reports_write(newpath)
        super().posix_rename(oldpath, newpath)
        self._renamed(newpath)

    def _renamed(self, newpath: bytes) -> None:
        relative = self._relative(newpath)
        if is_upload_name(relative):
            asyncio.ensure_future(self._on_upload(self._account, self._home / relative))

    def remove(self, path: bytes) -> None:
        self._refuse_reports_write(path)
        super().remove(path)

    def mkdir(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        self._refuse_reports_write(path)
        super().mkdir(path, attrs)

    def rmdir(self, path: bytes) -> None:
        self._refuse_reports_write(path)
        if self._relative(path) in (".", REPORTS_DIR):
            raise asyncssh.SFTPPermissionDenied("this folder cannot be removed")
        super().rmdir(path)

    def setstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        self._refuse_reports_write(path)
        super().setstat(path, attrs)

    def symlink(self, oldpath: bytes, newpath: bytes) -> None:
        raise asyncssh.SFTPOpUnsupported("links are not supported on this server")

    def link(self, oldpath: bytes, newpath: bytes) -> None:
        raise asyncssh.SFTPOpUnsupported("links are not supported on this server")
