"""A faulty downstream SFTP server on loopback for forwarding tests (OpenSSH's sshd is
``tests.conftest.OpenSSHDownstream``, started by the ``sshd`` and ``sshd_factory`` fixtures).

:class:`AsyncsshDownstream` is an asyncssh SFTP server in a
thread of the test process, with password login and switchable :class:`Faults`
(a write quota, bytes acknowledged but lost, an error on CLOSE, refused
permissions or FSTAT, a slow write, a drop box that hides what is written)
that a test may turn on and off while a daemon delivers to it. Every wait is
bounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.conftest import free_port


@dataclass
class Faults:
    """What a faulty :class:`AsyncsshDownstream` does; read at each request, so a test may switch them live.

    ``quota_bytes``: a file may hold at most this many bytes; a WRITE past it stores what fits
    and is answered FAILURE "Disk quota exceeded" (what OpenSSH answers for ENOSPC / EDQUOT).
    ``lose_after``: bytes past this offset are answered OK but never stored (a lying server).
    ``close_error``: CLOSE closes the file, then is answered FAILURE (a deferred write error).
    ``deny``: the operations ("open", "write") answered PERMISSION_DENIED.
    ``refuse_fstat``: FSTAT is answered OP_UNSUPPORTED.
    ``hide_on_close``: a file written is moved out of the drop box when it is closed, as Apple's
    drop box hides a file as soon as it is written (asm.md §2.4): a STAT of it then fails.
    ``write_delay``: seconds each WRITE waits before it is done (a slow server); read again while
    it waits, so setting it to 0 releases the WRITEs held.
    """

    quota_bytes: int | None = None
    lose_after: int | None = None
    close_error: bool = False
    deny: frozenset[str] = frozenset()
    refuse_fstat: bool = False
    hide_on_close: bool = False
    write_delay: float = 0.0


class AsyncsshDownstream:
    """An asyncssh SFTP server with password login, in a background thread (loopback only).

    The client sees ``/`` as ``root`` (so the drop box is ``/dropbox``). :attr:`faults` switches
    failures on and off while it runs; :attr:`requests` lists ``(operation, path)`` of the
    file requests it served (``open``, ``stat``, ``fstat``, ``close``, ``remove``, ``rename``,
    ``posix_rename``), paths as the client named them; :attr:`write_sizes` the size of every
    WRITE. ``posix_rename=False`` leaves ``posix-rename@openssh.com`` out of the extensions the
    server offers, ``limits=False`` ``limits@openssh.com`` (this patches asyncssh's handler class
    while the server runs: one such server at a time in a process).
    """

    def __init__(self, root: Path, username: str = "apple", password: str = "drop-box-pass",
                 faults: Faults | None = None, posix_rename: bool = True, limits: bool = True):
        import asyncssh

        self.root = root
        self.username, self.password = username, password
        self.port = free_port()
        self.dropbox = root / "dropbox"
        self.dropbox.mkdir(parents=True)
        self.hidden = root / "received"  # where hide_on_close moves files
        self.key = asyncssh.generate_private_key("ssh-ed25519")
        self.password_file = root / "downstream.pass"
        self.password_file.write_text(password + "\n")
        self.faults = faults or Faults()
        self.posix_rename = posix_rename
        self.limits = limits
        self.requests: list[tuple[str, str]] = []
        self.write_sizes: list[int] = []
        self.held = 0  # WRITEs waiting out faults.write_delay right now
        self._saved_extensions = None
        self._loop = None
        self._thread = None
        self._server = None
        self._connections: list = []  # closed by stop(): closing the listener leaves them open

    @property
    def host_key_line(self) -> str:
        return self.key.export_public_key().decode().split(" ", 2)[0] + " " + \
            self.key.export_public_key().decode().split()[1]

    def operations(self) -> list[str]:
        """The operations served so far, in order."""
        return [operation for operation, _ in self.requests]

    def flow_toml(self, account: str, profile: str = "strict", extra: str = "") -> str:
        """A [[flows]] entry delivering to this server's drop box with its password."""
        return (
            "[[flows]]\n"
            f'account = "{account}"\n'
            f'profile = "{profile}"\n'
            "[flows.downstream]\n"
            f'url = "sftp://{self.username}@127.0.0.1:{self.port}/dropbox"\n'
            f'password_file = "{self.password_file}"\n'
            f'host_key = "{self.host_key_line}"\n'
            f"{extra}"
        )

    def start(self) -> AsyncsshDownstream:
        import asyncio
        import threading

        import asyncssh

        outer = self

        class Server(asyncssh.SSHServer):
            def connection_made(self, conn):
                outer._connections.append(conn)

            def begin_auth(self, username):
                return True

            def password_auth_supported(self):
                return True

            def validate_password(self, username, password):
                return username == outer.username and password == outer.password

        class FaultySFTP(asyncssh.SFTPServer):
            """The stock local-folder server with :class:`Faults` applied."""

            def __init__(self, chan):
                super().__init__(chan, chroot=str(outer.root).encode())
                self.names: dict[int, bytes] = {}  # id(open file) -> the path it was opened as

            def _note(self, operation: str, path: bytes) -> None:
                outer.requests.append((operation, path.decode(errors="replace")))

            def open(self, path, pflags, attrs):
                self._note("open", path)
                if "open" in outer.faults.deny:
                    raise asyncssh.SFTPPermissionDenied("Permission denied")
                handle = super().open(path, pflags, attrs)
                self.names[id(handle)] = path
                return handle

            async def write(self, file_obj, offset, data):
                outer.write_sizes.append(len(data))
                started = asyncio.get_running_loop().time()
                outer.held += 1
                try:
                    while asyncio.get_running_loop().time() - started < outer.faults.write_delay:
                        await asyncio.sleep(0.05)  # re-reads the delay: lowering it releases a held WRITE
                finally:
                    outer.held -= 1
                faults = outer.faults
                if "write" in faults.deny:
                    raise asyncssh.SFTPPermissionDenied("Permission denied")
                if faults.quota_bytes is not None and offset + len(data) > faults.quota_bytes:
                    super().write(file_obj, offset, data[: max(0, faults.quota_bytes - offset)])
                    raise asyncssh.SFTPFailure("Disk quota exceeded")
                if faults.lose_after is not None and offset + len(data) > faults.lose_after:
                    super().write(file_obj, offset, data[: max(0, faults.lose_after - offset)])
                    return len(data)
                return super().write(file_obj, offset, data)

            def fstat(self, file_obj):
                self._note("fstat", self.names.get(id(file_obj), b"?"))
                if outer.faults.refuse_fstat:
                    raise asyncssh.SFTPOpUnsupported("FSTAT not supported")
                return super().fstat(file_obj)

            def close(self, file_obj):
                path = self.names.pop(id(file_obj), None)
                self._note("close", path or b"?")
                super().close(file_obj)
                if path is not None and outer.faults.hide_on_close and path.startswith(b"/dropbox/"):
                    outer.hidden.mkdir(exist_ok=True)
                    local = Path(self.map_path(path).decode())
                    if local.exists():
                        local.rename(outer.hidden / local.name)
                if outer.faults.close_error:
                    raise asyncssh.SFTPFailure("Input/output error")

            def stat(self, path):
                self._note("stat", path)
                return super().stat(path)

            def remove(self, path):
                self._note("remove", path)
                return super().remove(path)

            def rename(self, oldpath, newpath):
                self._note("rename", newpath)
                return super().rename(oldpath, newpath)

            def posix_rename(self, oldpath, newpath):
                self._note("posix_rename", newpath)
                if not outer.posix_rename:
                    raise asyncssh.SFTPOpUnsupported("posix-rename@openssh.com is not offered")
                return super().posix_rename(oldpath, newpath)

        left_out = {b"posix-rename@openssh.com"} if not self.posix_rename else set()
        left_out |= {b"limits@openssh.com"} if not self.limits else set()
        if left_out:
            from asyncssh.sftp import SFTPServerHandler

            self._saved_extensions = SFTPServerHandler._extensions
            SFTPServerHandler._extensions = [
                (name, data) for name, data in self._saved_extensions if name not in left_out
            ]

        ready = threading.Event()

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)

            async def listen():
                self._server = await asyncssh.listen(
                    "127.0.0.1", self.port, server_host_keys=[self.key], server_factory=Server,
                    sftp_factory=FaultySFTP,
                )
                ready.set()

            try:
                loop.run_until_complete(listen())
                loop.run_forever()
            finally:  # nothing of the loop outlives the server (sockets, its self-pipe)
                tasks = asyncio.all_tasks(loop)
                for task in tasks:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("asyncssh downstream did not start")
        return self

    def stop(self) -> None:
        """Close the listener and its connections (bounded), then end the thread."""
        import asyncio

        if self._loop:
            async def close() -> None:
                self._server.close()
                for conn in self._connections:
                    conn.close()
                await asyncio.wait_for(asyncio.gather(self._server.wait_closed(),
                                                      *(conn.wait_closed() for conn in self._connections)), 5)

            try:
                asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=6)
            except (OSError, TimeoutError):  # asyncio's and concurrent.futures' timeouts are TimeoutError
                pass
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            self._loop = None
        if self._saved_extensions is not None:
            from asyncssh.sftp import SFTPServerHandler

            SFTPServerHandler._extensions = self._saved_extensions
            self._saved_extensions = None
