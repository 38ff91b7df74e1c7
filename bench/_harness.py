"""Shared pieces of the real-path benchmarks: servers, clients, CPU accounting, results.

Everything listens on 127.0.0.1 only and lives in a temporary folder the caller
owns. The helpers the tests have too (a free port, waiting for a listener, an
OpenSSH key pair) come from ``tests/conftest.py``: ``make bench`` runs from a
checkout, with the test extra installed.

* :class:`Sshd`: OpenSSH's ``sshd`` with ``internal-sftp`` (started in ``upload_dir``),
  key login for the user running the bench.
* :class:`Rostergate`: the real ``rostergate serve`` daemon of this checkout
  (``src/`` first on ``PYTHONPATH``; ``BENCH_SRC=/other/checkout/src`` measures another
  one, e.g. main before a change), with one key-login account.
* :func:`sftp_put`: the OpenSSH ``sftp`` client uploading one file, timed.
* :func:`process_cpu` / :func:`thread_cpu`: CPU seconds from ``/proc/<pid>/stat``.
* :func:`sized`: a default, or the smaller one ``BENCH_QUICK=1`` asks for (a smoke run).
* :func:`record`: merges one benchmark's section into ``bench/results/latest.json``
  and rewrites ``latest.md`` from it.
* :func:`forwarder`: the one place that names the product's forwarding function, so
  a move of that module is one edit here.
"""

from __future__ import annotations

import getpass
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SRC = Path(os.environ.get("BENCH_SRC") or ROOT / "src")  # another checkout's src/ to measure it instead
sys.path.insert(0, str(SRC))  # every benchmark measures this checkout (or BENCH_SRC), whatever venv runs it
sys.path.insert(1, str(ROOT))  # tests/, for the helpers shared with the test suite

from tests.conftest import free_port, make_keypair, wait_for_port  # noqa: E402, F401  (re-exported: h.free_port ...)

QUICK = bool(os.environ.get("BENCH_QUICK"))  # BENCH_QUICK=1: small sizes, one round (a smoke run of the bench)
RESULTS = BENCH / "results"
SSH_OPTS = ("-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "-o", "ConnectTimeout=10", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes")
CLK_TCK = os.sysconf("SC_CLK_TCK")
MiB = 1024 * 1024


# -- files ---------------------------------------------------------------------------
def random_file(path: Path, size: int) -> Path:
    """``size`` bytes that do not compress (written in 8 MiB blocks)."""
    with open(path, "wb") as handle:
        left = size
        while left:
            block = os.urandom(min(left, 8 * MiB))
            handle.write(block)
            left -= len(block)
    return path


# -- CPU and load ---------------------------------------------------------------------
def _stat_fields(path: str) -> list[str]:
    with open(path) as handle:
        text = handle.read()
    return text[text.rindex(")") + 2:].split()  # the command name may hold spaces


def process_cpu(pid: int, children: bool = False) -> float:
    """CPU seconds (user + system) of process ``pid``, all its threads; with ``children``, plus
    those of the children it has reaped (how a forking server's finished connections count)."""
    fields = _stat_fields(f"/proc/{pid}/stat")
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat(5))
    if children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / CLK_TCK


def thread_cpu(pid: int, tid: int | None = None) -> float:
    """CPU seconds of one thread (the main thread, which runs asyncio's loop, by default)."""
    fields = _stat_fields(f"/proc/{pid}/task/{tid or pid}/stat")
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def child_pids(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if int(_stat_fields(f"/proc/{entry}/stat")[1]) == pid:
                    found.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return found


def wait_children_reaped(pid: int, timeout: float = 10.0) -> None:
    """Wait (bounded) until ``pid`` has no child process left, so their CPU is in its cutime."""
    deadline = time.monotonic() + timeout
    while child_pids(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def sized(full: Any, quick: Any) -> Any:
    """``full`` (a benchmark's default size or round count), or ``quick`` under ``BENCH_QUICK=1``."""
    return quick if QUICK else full


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


# -- servers --------------------------------------------------------------------------
class Sshd:
    """OpenSSH ``sshd`` with ``internal-sftp`` on 127.0.0.1; sessions start in ``upload_dir``.

    ``ChrootDirectory`` would need every folder up to the temp dir owned by root and not
    writable by others (``/tmp`` is world-writable), so ``internal-sftp -d`` gives the start
    folder instead; what it costs per byte is the same.
    """

    def __init__(self, root: Path, client_key: Path, extra_config: str = ""):
        self.root = root
        self.port = free_port()
        self.user = getpass.getuser()
        self.upload_dir = root / "upload"
        self.upload_dir.mkdir(parents=True, mode=0o700)
        self.host_key = root / "ssh_host_ed25519_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.host_key)], check=True)
        authorized = root / "authorized_keys"
        shutil.copyfile(f"{client_key}.pub", authorized)
        authorized.chmod(0o600)
        self.config = root / "sshd_config"
        self.config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {self.host_key}\n"
            f"AuthorizedKeysFile {authorized}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n"
            f"PidFile {root / 'sshd.pid'}\nSubsystem sftp internal-sftp -d {self.upload_dir}\nLogLevel ERROR\n"
            + extra_config  # more sshd_config lines (e.g. MaxStartups for a burst of logins)
        )
        self.process: subprocess.Popen | None = None

    @property
    def host_key_line(self) -> str:
        return " ".join(Path(f"{self.host_key}.pub").read_text().split()[:2])

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> Sshd:
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation folder
        sshd = shutil.which("sshd") or "/usr/sbin/sshd"
        with open(self.root / "sshd.log", "ab") as log:
            self.process = subprocess.Popen([sshd, "-D", "-e", "-f", str(self.config)],
                                            stdout=subprocess.DEVNULL, stderr=log)
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        _stop(self.process)


class Rostergate:
    """``rostergate serve`` of this checkout (or of the ``src`` folder given), with one account that
    logs in with ``client_key``."""

    def __init__(self, root: Path, client_key: Path, account: str = "bench", server_toml: str = "",
                 flows_toml: str = "", src: Path | None = None):
        self.root = root
        self.port = free_port()
        self.account = account
        self.client_key = client_key
        self.data_dir = root / "var"
        self.config = root / "rostergate.toml"
        self.config.write_text(
            f'[server]\nlisten = "127.0.0.1:{self.port}"\ndata_dir = "{self.data_dir}"\n'
            f'host_key = "{self.data_dir / "ssh_host_ed25519_key"}"\n{server_toml}\n{flows_toml}\n'
        )
        self.env = {**os.environ,
                    "PYTHONPATH": os.pathsep.join(filter(None, [str(src or SRC), os.environ.get("PYTHONPATH")]))}
        self.process: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def home(self) -> Path:
        return self.data_dir / "homes" / self.account

    def cli(self, *args: str) -> str:
        result = subprocess.run([sys.executable, "-m", "rostergate", "--config", str(self.config), *args],
                                capture_output=True, text=True, env=self.env, cwd=self.root, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"rostergate {' '.join(args)} failed: {result.stdout}{result.stderr}")
        return result.stdout

    def start(self) -> Rostergate:
        with open(self.root / "daemon.log", "ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "rostergate", "--config", str(self.config), "serve"],
                                            stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.root)
        wait_for_port(self.port)
        self.cli("accounts", "create", self.account, "--no-password", "--public-key", f"{self.client_key}.pub")
        return self

    def stop(self) -> None:
        _stop(self.process)


def _stop(process: subprocess.Popen | None) -> None:
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


# -- the OpenSSH client -----------------------------------------------------------------
def sftp_put(port: int, user: str, key: Path, local: Path, remote: str, options: Sequence[str] = (),
             timeout: float = 600) -> float:
    """Upload ``local`` as ``remote`` with OpenSSH ``sftp -b``; returns the wall seconds
    (login included, the same for every server). Raises when the client fails."""
    args = ["sftp", "-q", "-P", str(port), "-i", str(key), *SSH_OPTS, *options, "-b", "-", f"{user}@127.0.0.1"]
    started = time.perf_counter()
    result = subprocess.run(args, input=f"put {local} {remote}\n", capture_output=True, text=True, timeout=timeout)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"sftp put to port {port} failed ({result.returncode}): {result.stderr.strip()}")
    return elapsed


# -- the product's forwarder ---------------------------------------------------------------
@dataclass(frozen=True)
class Forwarder:
    deliver: Callable[..., Any]  # deliver(zip_path, downstream, remote_name) -> receipt (verified)
    login: Callable[..., Any]  # login(downstream) -> paramiko.SSHClient
    downstream: Callable[..., Any]  # the Downstream config type


def forwarder() -> Forwarder:
    """The product's forwarding entry points (the only place the bench names their module)."""
    from rostergate.config import Downstream
    from rostergate.forward import forwarder_for, login

    def deliver(zip_path: Path, downstream: Downstream, remote_name: str) -> Any:
        return forwarder_for(downstream).deliver(zip_path, remote_name)

    return Forwarder(deliver=deliver, login=login, downstream=Downstream)


# -- results ---------------------------------------------------------------------------
def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in ("rostergate", "asyncssh", "paramiko", "cryptography", "pandas", "pyarrow"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    ssh = subprocess.run(["ssh", "-V"], capture_output=True, text=True)
    found["openssh"] = (ssh.stderr or ssh.stdout).strip().split(",")[0]
    return found


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "loadavg": loadavg(), "platform": platform.platform(),
            "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}


def record(name: str, section: dict[str, Any], markdown: str) -> Path:
    """Store one benchmark's results under ``name`` in ``latest.json`` (other benchmarks' sections
    are kept) and rewrite ``latest.md`` from every section's markdown (``quick.*`` under ``BENCH_QUICK``)."""
    RESULTS.mkdir(exist_ok=True)
    stem = "quick" if QUICK else "latest"  # a smoke run never overwrites the figures
    path = RESULTS / f"{stem}.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    data.setdefault("sections", {})[name] = {**section, "machine": machine(), "versions": versions(),
                                             "quick": QUICK, "markdown": markdown}
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    parts = ["# Benchmark results (real path)\n", "Written by `make bench` (bench/README.md says how to read them).\n"]
    for key in sorted(data["sections"]):
        one = data["sections"][key]
        m, v = one["machine"], one["versions"]
        parts.append(f"## {key}\n\n{one['markdown'].rstrip()}\n\n"
                     + ("_BENCH_QUICK (smoke sizes): not figures._ " if one.get("quick") else "")
                     + f"_{m['when']}; {m['cpus']} CPUs; load average at the end {m['loadavg']}; "
                     + ", ".join(f"{k} {val}" for k, val in sorted(v.items())) + "_\n")
    (RESULTS / f"{stem}.md").write_text("\n".join(parts))
    return path
