"""Many districts upload at once: ``[server] sftp_processes`` 1 against N, on the real daemon.

    python bench/bench_sftp_processes.py                      # 50 clients x 5.5 MB, N = 2, 3 rounds
    python bench/bench_sftp_processes.py --clients 20 --processes 4

Each round starts ``rostergate serve`` with 1 SFTP process and with N (alternating which goes
first), then starts ``--clients`` OpenSSH ``sftp -b`` uploads at the same moment (public-key
logins, one account, a name that is no ``*.zip`` so no run starts) and, while they run, logs
in ``--probes`` times one after the other (``sftp -b`` with ``pwd``: login and one request).
Reported: the time until every upload is in, and the probes' login times (median and the
slowest, as p99 of so few), medians over rounds, with the load average.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h  # noqa: E402

SERVER = """sftp_processes = {processes}
[server.limits]
max_sessions_per_account = 1000
[server.defender]
max_connections_per_source = 1000
"""


def probe(port: int, key: Path) -> float:
    args = ["sftp", "-q", "-P", str(port), "-i", str(key), *h.SSH_OPTS, "-b", "-", "bench@127.0.0.1"]
    started = time.perf_counter()
    subprocess.run(args, input="pwd\n", capture_output=True, text=True, timeout=120, check=True)
    return time.perf_counter() - started


def one_round(root: Path, key: Path, local: Path, processes: int, clients: int, probes: int) -> dict:
    daemon = h.Rostergate(root, key, server_toml=SERVER.format(processes=processes)).start()
    try:
        time.sleep(1.0)  # the server processes' start is not part of the figure
        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            uploads = [pool.submit(h.sftp_put, daemon.port, "bench", key, local, f"up-{i}.bin")
                       for i in range(clients)]
            logins = [probe(daemon.port, key) for _ in range(probes)]
            for upload in uploads:
                upload.result()
        return {"all_uploaded_s": time.perf_counter() - started, "login_median_s": h.median(logins),
                "login_max_s": max(logins)}
    finally:
        daemon.stop()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--size-mb", type=float, default=5.5)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--probes", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    results: dict[int, list[dict]] = {1: [], args.processes: []}
    load_before = h.loadavg()
    with tempfile.TemporaryDirectory(prefix="bench-sftp-processes-") as tmp:
        folder = Path(tmp)
        key = h.make_keypair(folder, "client")
        local = h.random_file(folder / "upload.bin", int(args.size_mb * 1_000_000))
        for round_ in range(args.rounds):
            order = [1, args.processes] if round_ % 2 == 0 else [args.processes, 1]
            for n in order:
                root = folder / f"r{round_}-{n}"
                root.mkdir()
                results[n].append(one_round(root, key, local, n, args.clients, args.probes))
                print(n, results[n][-1], flush=True)
    summary = {n: {k: round(h.median([r[k] for r in rs]), 3) for k in rs[0]} for n, rs in results.items()}
    out = {"clients": args.clients, "size_mb": args.size_mb, "rounds": args.rounds, "by_processes": summary,
           "load_before": load_before, "load_after": h.loadavg(), **h.machine()}
    print(out)
    return out


if __name__ == "__main__":
    main()
