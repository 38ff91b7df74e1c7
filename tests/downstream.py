"""Real downstream SFTP servers on loopback for forwarding tests.

:class:`OpenSSHDownstream` starts OpenSSH's ``sshd`` (internal-sftp) on a free
127.0.0.1 port, logging in as the user running the tests with a key made by
``ssh-keygen``. Every wait is bounded.
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
from pathlib import Path

from tests.conftest import free_port, make_keypair, wait_for_port


class OpenSSHDownstream:
    def __init__(self, root: Path):
        self.root = root
        self.port = free_port()
        self.user = getpass.getuser()
        self.dropbox = root / "dropbox"
        self.dropbox.mkdir(parents=True)
        self.process: subprocess.Popen | None = None
        self.client_key = make_keypair(root, "client_key")
        self.host_key = root / "ssh_host_ed25519_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.host_key)], check=True)
        self.authorized_keys = root / "authorized_keys"
        shutil.copyfile(root / "client_key.pub", self.authorized_keys)
        self.authorized_keys.chmod(0o600)
        self.config = root / "sshd_config"
        self.config.write_text(
            f"Port {self.port}\n"
            "ListenAddress 127.0.0.1\n"
            f"HostKey {self.host_key}\n"
            f"AuthorizedKeysFile {self.authorized_keys}\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "PubkeyAuthentication yes\n"
            "PermitRootLogin prohibit-password\n"
            "StrictModes no\n"
            "UsePAM no\n"
            f"PidFile {root / 'sshd.pid'}\n"
            "Subsystem sftp internal-sftp\n"
            "LogLevel ERROR\n"
        )

    @property
    def host_key_line(self) -> str:
        """The server's public host key as an OpenSSH line, for pinning."""
        return " ".join(Path(f"{self.host_key}.pub").read_text().split()[:2])

    def start(self) -> "OpenSSHDownstream":
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
        sshd = shutil.which("sshd") or "/usr/sbin/sshd"
        self.process = subprocess.Popen(
            [sshd, "-D", "-e", "-f", str(self.config)],
            stdout=subprocess.DEVNULL, stderr=open(self.root / "sshd.log", "ab"),
        )
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def flow_toml(self, account: str, host_key: str | None = None, profile: str = "strict",
                  extra: str = "") -> str:
        return (
            "[[flows]]\n"
            f'account = "{account}"\n'
            f'profile = "{profile}"\n'
            "[flows.downstream]\n"
            f'url = "sftp://{self.user}@127.0.0.1:{self.port}{self.dropbox}"\n'
            f'key_file = "{self.client_key}"\n'
            f'host_key = "{host_key or self.host_key_line}"\n'
            f"{extra}"
        )


class AsyncsshDownstream:
    """An asyncssh SFTP server with password login, in a background thread (loopback only)."""

    def __init__(self, root: Path, username: str = "apple", password: str = "drop-box-pass"):
        import asyncssh

        self.root = root
        self.username, self.password = username, password
        self.port = free_port()
        self.dropbox = root / "dropbox"
        self.dropbox.mkdir(parents=True)
        self.key = asyncssh.generate_private_key("ssh-ed25519")
        self.password_file = root / "downstream.pass"
        self.password_file.write_text(password + "\n")
        self._loop = None
        self._thread = None
        self._server = None

    @property
    def host_key_line(self) -> str:
        return self.key.export_public_key().decode().split(" ", 2)[0] + " " + \
            self.key.export_public_key().decode().split()[1]

    def start(self) -> "AsyncsshDownstream":
        import asyncio
        import threading

        import asyncssh

        outer = self

        class Server(asyncssh.SSHServer):
            def begin_auth(self, username):
                return True

            def password_auth_supported(self):
                return True

            def validate_password(self, username, password):
                return username == outer.username and password == outer.password

        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)

            async def listen():
                self._server = await asyncssh.listen(
                    "127.0.0.1", self.port, server_host_keys=[self.key], server_factory=Server,
                    sftp_factory=lambda chan: asyncssh.SFTPServer(chan, chroot=str(self.root).encode()),
                )
                ready.set()

            self._loop.run_until_complete(listen())
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("asyncssh downstream did not start")
        return self

    def stop(self) -> None:
        if self._loop:
            self._loop.call_soon_threadsafe(self._server.close)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
