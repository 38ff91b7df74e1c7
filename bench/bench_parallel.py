"""Many accounts upload at once: how long until the last run is delivered, with 1 and 2 workers.

    python bench/bench_parallel.py                          # 50 accounts, a ~5.5 MB ZIP each
    python bench/bench_parallel.py --accounts 20 --workers 1 --workers 2 --workers 4

For each ``[server.workers] processes`` value, a fresh ``rostergate serve`` (a subprocess)
delivers to OpenSSH's ``sshd`` on loopback; N key-only accounts each upload the same
district ZIP (``bench/gen_district.py``, OneRoster 1.1, deflated: ``--students`` sets its
size, 75,000 students make about 5.5 MB) with OpenSSH's ``sftp`` client, all N clients
started at once once the daemon's workers are up. Printed per configuration:

* **upload**: from the start until the last client returned;
* **last delivered**: from the start until the last run is seen ``delivered`` in the store;
* **own**: the sum of the runs' own processing times (first step started → delivered, from the
  steps' millisecond timestamps) ÷ the number of workers; issue 14's target is
  last delivered ≤ 1.3 × own + upload. The same sum from the 1-worker configuration
  (no contention between runs) is shown as a stricter reference.

Safeguards are off (every account uploads the same district; the first delivery has
nothing to compare with anyway). Not part of the test run.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import _harness as h  # noqa: E402  (first: puts this checkout's src/ on sys.path)
from bench_latency import district_zip  # noqa: E402

from rostergate import store  # noqa: E402
from rostergate.accounts import AccountStore  # noqa: E402
from tests import procs  # noqa: E402
from tests.conftest import Daemon, OpenSSHDownstream, make_keypair  # noqa: E402
from tests.sftp.helpers import sftp_batch  # noqa: E402

FINAL = ("delivered", "rejected", "failed", "held", "discarded", "superseded")


def _when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _runs(data_dir: Path) -> list[sqlite3.Row]:
    with sqlite3.connect(f"file:{data_dir / 'rostergate.db'}?mode=ro", uri=True, timeout=10) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute("SELECT id, status, message FROM runs").fetchall()


def _own_seconds(data_dir: Path) -> list[float]:
    """Each run's own processing time: its first step's start to its last step's end."""
    with sqlite3.connect(f"file:{data_dir / 'rostergate.db'}?mode=ro", uri=True, timeout=10) as conn:
        rows = conn.execute("SELECT run_id, MIN(started_at), MAX(finished_at) FROM steps GROUP BY run_id").fetchall()
    return [(_when(end) - _when(start)).total_seconds() for _, start, end in rows]


def one_configuration(root: Path, sshd: OpenSSHDownstream, source: Path, accounts: int, workers: int
                      ) -> dict[str, float]:
    names = [f"district-{n:03d}" for n in range(accounts)]
    flows = "".join(sshd.flow_toml(name, extra="[flows.safeguards]\nenabled = false\n") for name in names)
    (root / f"daemon-{workers}").mkdir()
    server = (f"[server.workers]\nprocesses = {workers}\n"  # every client comes from 127.0.0.1:
              f"[server.defender]\nmax_connections_per_source = {accounts + 10}\n")
    daemon = Daemon(root / f"daemon-{workers}", flows, server)
    key = make_keypair(root / f"daemon-{workers}", "tenant")
    public = Path(f"{key}.pub").read_text()
    daemon.start()
    try:
        conn = store.connect(daemon.data_dir)
        for name in names:  # straight into the store: 50 CLI processes would take longer than the bench
            AccountStore(conn, daemon.data_dir).create(name, public, with_password=False)
        conn.close()
        if not procs.wait_for(lambda: len(procs.worker_pids(daemon.process.pid)) == workers, timeout=60):
            print("  (the workers did not start with the daemon: they start with the first runs)", flush=True)
        start = time.perf_counter()
        returned: list[float] = []

        def upload(name: str) -> None:
            result = sftp_batch(daemon, name, f"put {source} roster.zip\n", key=key, timeout=600)
            returned.append(time.perf_counter() - start)
            if result.returncode != 0:
                raise RuntimeError(result.stderr)

        with ThreadPoolExecutor(accounts) as clients:
            list(clients.map(upload, names))
        deadline = time.perf_counter() + 1800
        while time.perf_counter() < deadline:
            runs = _runs(daemon.data_dir)
            if len(runs) == accounts and all(r["status"] in FINAL for r in runs):
                break
            time.sleep(0.05)
        last = time.perf_counter() - start
        wrong = [dict(r) for r in _runs(daemon.data_dir) if r["status"] != "delivered"]
        if wrong or len(runs) != accounts:
            raise RuntimeError(f"not all delivered: {wrong[:3]}")
        own = _own_seconds(daemon.data_dir)
    finally:
        daemon.stop()
    for path in sshd.dropbox.iterdir():
        path.unlink()
    return {"upload": max(returned), "last": last, "own_sum": sum(own), "own_max": max(own)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=h.sized(50, 5))
    parser.add_argument("--students", type=int, default=h.sized(75_000, 5_000))
    parser.add_argument("--workers", type=int, action="append")
    args = parser.parse_args()
    configurations = args.workers or [1, 2]
    results: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="rg-parallel-") as tmp:
        root = Path(tmp)
        source = district_zip(root, args.students)
        size = source.stat().st_size / 2**20
        sshd = OpenSSHDownstream(root / "sshd").start()
        try:
            for workers in configurations:
                results[workers] = one_configuration(root, sshd, source, args.accounts, workers)
                r = results[workers]
                print(f"{workers} worker(s): uploaded {r['upload']:.1f} s, last delivered {r['last']:.1f} s",
                      flush=True)
        finally:
            sshd.stop()
    print(f"\n{args.accounts} accounts upload a {size:.1f} MiB ZIP ({args.students:,} students) at once; "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    single = results.get(1)
    for workers, r in results.items():
        own = r["own_sum"] / workers
        bound = 1.3 * own + r["upload"]
        line = (f"  {workers} worker(s): last delivered {r['last']:.1f} s; upload {r['upload']:.1f} s; "
                f"runs' own time {r['own_sum']:.1f} s (longest {r['own_max']:.1f} s) / {workers} = {own:.1f} s; "
                f"target 1.3 x {own:.1f} + {r['upload']:.1f} = {bound:.1f} s: "
                f"{'met' if r['last'] <= bound else 'NOT met'}")
        if single and workers != 1:
            strict = 1.3 * single["own_sum"] / workers + r["upload"]
            line += f" (with the 1-worker runs' own time: {strict:.1f} s)"
        print(line)
    markdown = (f"{args.accounts} accounts upload a {size:.1f} MiB ZIP ({args.students:,} students) at once "
                "(`python bench/bench_parallel.py`): the daemon with N workers, OpenSSH `sftp` clients, OpenSSH "
                "`sshd` downstream; target: last delivered <= 1.3 x (runs' own time / workers) + upload.\n\n"
                "| Workers | Uploaded | Last delivered | Runs' own time / workers | Target | Met |\n"
                "|---|---|---|---|---|---|\n"
                + "".join(f"| {w} | {r['upload']:.1f} s | **{r['last']:.1f} s** | {r['own_sum'] / w:.1f} s | "
                          f"{1.3 * r['own_sum'] / w + r['upload']:.1f} s | "
                          f"{'yes' if r['last'] <= 1.3 * r['own_sum'] / w + r['upload'] else 'no'} |\n"
                          for w, r in results.items()))
    h.record("parallel", {"accounts": args.accounts, "students": args.students, "zip_mib": size,
                          "results": {str(w): r for w, r in results.items()}}, markdown)


if __name__ == "__main__":
    main()
