"""50 accounts upload a 5.5 MB ZIP at once: OpenSSH ``sshd`` against the daemon with 1 and N SFTP processes.

    python bench/bench_sftp_processes.py                      # 50 clients x 5.5 MB, N = the cores, 3 rounds
    python bench/bench_sftp_processes.py --clients 20 --processes 4 --rounds 5
    BENCH_QUICK=1 python bench/bench_sftp_processes.py        # 5 clients x 0.5 MB, one round (a smoke run)

Each round runs, in a rotated order, three servers on 127.0.0.1:

* **OpenSSH** ``sshd`` with ``internal-sftp`` (the harness's, ``MaxStartups 200`` so that it does
  not drop the burst of unauthenticated connections, as its default ``10:30:100`` would, and the
  key exchange rostergate negotiates with the same client, ``curve25519-sha256``): one
  system user with key login, so its 50 clients are 50 concurrent sessions of that one user (the
  bench does not create 50 system accounts on the machine);
* ``rostergate serve`` with ``[server] sftp_processes = 1`` and ``= N``: 50 key-login accounts,
  one client each.

The same ZIP (one stored member of random bytes) is uploaded by ``--clients`` OpenSSH ``sftp``
clients started at the same moment. Each client is fed its batch on a pipe: first ``pwd``, and
**login latency** is the time from starting the client until ``pwd``'s answer is printed (TCP
connect, key exchange, public-key authentication, the SFTP session and one request, measured the
same way for every server); then ``put``. **All uploaded**: from the start until the last client
returned. While the uploads run, ``--probes`` more logins are timed one after the other (a
district logging in while the others upload). rostergate records a run per upload (no flow is
configured for the accounts, so each run fails at once: the runs' CPU work is bench_parallel's).

Reported: per configuration the medians over rounds of the time until all uploaded, of each
round's login p50 / p99 (of the clients' logins and of the probes'), and of the server's CPU
seconds for the burst (``sshd`` with the per-connection processes it reaped; the daemon with its
child processes), and the medians of the per-round ratios OpenSSH / rostergate (>= 1: rostergate
is as fast). Issue 14's target: login p99 <= 1 s and <= OpenSSH's in the same run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h  # noqa: E402  (first: puts this checkout's src/ on sys.path)

SERVER = """sftp_processes = {processes}
[server.limits]
max_sessions_per_account = 1000
[server.defender]
max_connections_per_source = 1000
"""
# MaxStartups: the default 10:30:100 drops part of a burst of 50 unauthenticated connections. KexAlgorithms:
# the key exchange rostergate negotiates with this client (the client's first choice, sntrup761x25519, is one
# rostergate does not offer; mlkem768x25519, rostergate's first, needs OpenSSH 9.9), so both do the same work.
SSHD_EXTRA = "MaxStartups 200\nMaxSessions 200\nKexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org\n"
ANSWER = "Remote working directory"
OPENSSH = "openssh"


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) with linear interpolation between order statistics."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def upload_zip(path: Path, size: int) -> Path:
    """A ZIP of about ``size`` bytes: one stored member of random bytes (what the tenant sends does not
    matter to the SFTP server; stored keeps its size)."""
    member = h.random_file(path.with_suffix(".bin"), size)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.write(member, "users.csv")
    member.unlink()
    return path


class Client:
    """One OpenSSH ``sftp`` client fed on a pipe: ``pwd`` (timed: the login), then the commands."""

    def __init__(self, port: int, user: str, key: Path):
        self.args = ["sftp", "-q", "-P", str(port), "-i", str(key), *h.SSH_OPTS, "-b", "-", f"{user}@127.0.0.1"]

    def run(self, commands: str, timeout: float = 600) -> float:
        """Run; returns the login latency. Raises when the client fails or no answer comes."""
        started = time.perf_counter()
        process = subprocess.Popen(self.args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, bufsize=1)
        assert process.stdin is not None and process.stdout is not None
        try:
            process.stdin.write("pwd\n")
            process.stdin.flush()
            login = None
            for line in process.stdout:  # sftp line-buffers its output; ends when the client does
                if line.startswith(ANSWER):
                    login = time.perf_counter() - started
                    break
            process.stdin.write(commands)
            process.stdin.close()
            process.stdin = None  # closed: communicate() only reads what is left
            _, err = process.communicate(timeout=timeout)
        except BaseException:
            process.kill()
            process.wait()
            raise
        if process.returncode != 0 or login is None:
            raise RuntimeError(f"sftp to {self.args[3]} failed ({process.returncode}): {err.strip()}")
        return login


def server_cpu(pid: int, forking: bool) -> float:
    """CPU seconds of a server: ``sshd`` and the per-connection processes it reaped (``forking``), or the
    daemon and its live child processes (the SFTP server processes, the workers)."""
    if forking:
        h.wait_children_reaped(pid)
        return h.process_cpu(pid, children=True)
    total = h.process_cpu(pid)
    for child in h.child_pids(pid):
        try:
            total += h.process_cpu(child)
        except OSError:  # ended meanwhile
            pass
    return total


def burst(port: int, users: list[str], key: Path, local: Path, probe_user: str, probes: int,
          cpu: Callable[[], float]) -> dict:
    """``len(users)`` clients upload ``local`` at once; ``probes`` logins one after the other meanwhile."""
    cpu_before = cpu()
    start = threading.Barrier(len(users) + 1)
    returned: list[float] = []
    t0 = 0.0

    def upload(index: int) -> float:
        start.wait()
        login = Client(port, users[index], key).run(f"put {local} upload-{index}.zip\n")
        returned.append(time.perf_counter() - t0)
        return login

    with ThreadPoolExecutor(len(users)) as pool:
        futures = [pool.submit(upload, i) for i in range(len(users))]
        t0 = time.perf_counter()
        start.wait()
        probe_logins = []
        for _ in range(probes):
            if all(f.done() for f in futures):
                break
            probe_logins.append(Client(port, probe_user, key).run(""))
        logins = [f.result() for f in futures]
    all_uploaded = max(returned)
    time.sleep(0.5)  # the last sessions end (and sshd reaps them)
    return {"all_uploaded_s": all_uploaded, "server_cpu_s": cpu() - cpu_before, "logins": logins,
            "probes": probe_logins,
            "login_p50_s": percentile(logins, 0.5), "login_p99_s": percentile(logins, 0.99),
            "probe_p50_s": percentile(probe_logins, 0.5) if probe_logins else None,
            "probe_p99_s": percentile(probe_logins, 0.99) if probe_logins else None}


def start_rostergate(root: Path, key: Path, processes: int, accounts: list[str]) -> h.Rostergate:
    daemon = h.Rostergate(root, key, server_toml=SERVER.format(processes=processes)).start()
    from rostergate import store
    from rostergate.accounts import AccountStore

    conn = store.connect(daemon.data_dir)  # straight into the store: 50 CLI processes take a minute
    public = Path(f"{key}.pub").read_text()
    for name in accounts:
        AccountStore(conn, daemon.data_dir).create(name, public, with_password=False)
    conn.close()
    deadline = time.monotonic() + 60
    log = root / "daemon.log"
    while "daemon_started" not in log.read_text():
        if time.monotonic() > deadline:
            raise TimeoutError("the daemon did not start its SFTP processes within 60 s")
        time.sleep(0.1)
    return daemon


def one_round(folder: Path, sshd: h.Sshd, key: Path, local: Path, config: str, clients: int, probes: int) -> dict:
    if config == OPENSSH:
        users = [sshd.user] * clients
        Client(sshd.port, sshd.user, key).run("")  # warm-up (page cache), as for rostergate
        try:
            return burst(sshd.port, users, key, local, sshd.user, probes, lambda: server_cpu(sshd.pid, True))
        finally:
            for path in sshd.upload_dir.iterdir():
                path.unlink()
    processes = int(config)
    root = folder / f"rg-{processes}-{time.monotonic_ns()}"
    root.mkdir()
    users = [f"district-{i:03d}" for i in range(clients)]
    daemon = start_rostergate(root, key, processes, users)
    try:
        for _ in range(2 * processes):  # warm-up: every server process's first login (imports, caches)
            Client(daemon.port, "bench", key).run("")
        return burst(daemon.port, users, key, local, "bench", probes, lambda: server_cpu(daemon.pid, False))
    finally:
        daemon.stop()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=h.sized(50, 5))
    parser.add_argument("--size-mb", type=float, default=h.sized(5.5, 0.5))
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 2, help="N (default: the cores)")
    parser.add_argument("--probes", type=int, default=h.sized(10, 2))
    parser.add_argument("--rounds", type=int, default=h.sized(3, 1))
    args = parser.parse_args(argv)
    configs = [OPENSSH, "1"] + ([str(args.processes)] if args.processes != 1 else [])
    rounds: list[dict[str, dict]] = []
    load_before = h.loadavg()
    with tempfile.TemporaryDirectory(prefix="rg-bench-sftp-processes-") as tmp:
        folder = Path(tmp)
        key = h.make_keypair(folder, "client")
        local = upload_zip(folder / "upload.zip", int(args.size_mb * 1_000_000))
        (folder / "sshd").mkdir()
        sshd = h.Sshd(folder / "sshd", key, extra_config=SSHD_EXTRA).start()
        try:
            for index in range(args.rounds):
                order = configs[index % len(configs):] + configs[:index % len(configs)]
                one: dict[str, dict] = {}
                for config in order:
                    one[config] = one_round(folder, sshd, key, local, config, args.clients, args.probes)
                    r = one[config]
                    print(f"round {index + 1} {config:>7}: all uploaded {r['all_uploaded_s']:.2f} s, login p50 "
                          f"{r['login_p50_s']:.3f} s p99 {r['login_p99_s']:.3f} s, load {h.loadavg()[0]:.2f}",
                          flush=True)
                one["load"] = {"loadavg": h.loadavg()}
                rounds.append(one)
        finally:
            sshd.stop()
    result = summarise(args, configs, rounds, load_before)
    h.record("sftp_processes", result, result.pop("markdown"))
    return result


def summarise(args: argparse.Namespace, configs: list[str], rounds: list[dict[str, dict]],
              load_before: list[float]) -> dict:
    med = h.median
    keys = ("all_uploaded_s", "login_p50_s", "login_p99_s", "probe_p50_s", "probe_p99_s", "server_cpu_s")
    medians = {c: {k: med([r[c][k] for r in rounds if r[c][k] is not None] or [float("nan")]) for k in keys}
               for c in configs}
    ratios: dict[str, dict[str, list[float]]] = {}
    for c in configs[1:]:
        ratios[c] = {k: [r[OPENSSH][k] / r[c][k] for r in rounds if r[c][k]] for k in keys}
    load_after = h.loadavg()
    name = {OPENSSH: "OpenSSH internal-sftp"} | {c: f"rostergate, sftp_processes = {c}" for c in configs[1:]}

    def ratio(c: str, k: str) -> str:
        values = ratios[c][k]
        return f"{med(values):.2f}x ({min(values):.2f}-{max(values):.2f})" if values else "-"

    rows = []
    for c in configs:
        m = medians[c]
        target = ("" if c == OPENSSH else
                  " (met)" if m["login_p99_s"] <= 1.0 and m["login_p99_s"] <= medians[OPENSSH]["login_p99_s"]
                  else " (NOT met)")
        rows.append(f"| {name[c]} | {m['all_uploaded_s']:.2f} s | {m['login_p50_s']:.3f} s | "
                    f"**{m['login_p99_s']:.3f} s**{target} | {m['probe_p50_s']:.3f} / {m['probe_p99_s']:.3f} s | "
                    f"{m['server_cpu_s']:.2f} s | "
                    + (" | |" if c == OPENSSH else f"{ratio(c, 'all_uploaded_s')} | {ratio(c, 'login_p99_s')} |"))
    markdown = (
        f"{args.clients} clients upload a {args.size_mb} MB ZIP at once with OpenSSH `sftp` (login = start of "
        f"the client until its first command, `pwd`, is answered), {args.rounds} rotated rounds "
        f"(`python bench/bench_sftp_processes.py --clients {args.clients} --size-mb {args.size_mb} "
        f"--processes {args.processes} --rounds {args.rounds}`); OpenSSH: one user, {args.clients} sessions; "
        f"rostergate: {args.clients} accounts. Load average {load_before[0]:.2f} before, {load_after[0]:.2f} "
        "after. Medians over rounds; ratios: medians of per-round OpenSSH / rostergate (>= 1: as fast). "
        "Target: login p99 <= 1 s and <= OpenSSH's.\n\n"
        "| Server | All uploaded | Login p50 | Login p99 | Probe login p50 / p99 | Server CPU | Ratio all uploaded | "
        "Ratio login p99 |\n|---|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n")
    print(markdown)
    return {"clients": args.clients, "size_mb": args.size_mb, "processes": args.processes, "rounds": rounds,
            "medians": medians, "round_ratios": ratios, "load_before": load_before, "load_after": load_after,
            "targets": {"login_p99_s": "<= 1.0 and <= OpenSSH's"}, "markdown": markdown}


if __name__ == "__main__":
    main()
