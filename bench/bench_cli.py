"""The CLI on a large history: `runs list`, `runs stats` and `accounts list` as an operator runs them.

    python bench/bench_cli.py                      # 1,000,000 runs, 50 accounts, 5 rounds
    python bench/bench_cli.py --runs 100000 --rounds 3

A store is made by the rostergate on ``PYTHONPATH`` (so it has that version's schema, indexes
and triggers) and filled by SQL with synthetic runs (ids, times and statuses only; no uploads):
50 accounts, one run a minute, most delivered, some rejected, failed, superseded. Each
command is then started as an operator starts it (``python -m rostergate --config ...``,
a fresh process: imports and configuration included) and timed, alternating the commands;
medians and the best of each are printed, with the median CPU time (user + system) of the
process, which the load of other work sways much less than wall time. ``--help`` is timed too: the cost of starting
Python, click and the configuration's modules, before any command does anything.

Modules are loaded from bytecode, as from an installed wheel (pip compiles it): the commands
run with their own ``PYTHONPYCACHEPREFIX`` in the temporary folder (written in the uncounted
first round), whatever ``PYTHONDONTWRITEBYTECODE`` says. ``--no-bytecode`` compiles
rostergate's modules from source at each start instead (what a checkout run with
``PYTHONDONTWRITEBYTECODE=1`` and no ``__pycache__`` in ``src/`` does; the standard library
and site-packages keep their installed bytecode).

Issue 14 targets: ``runs list`` and ``accounts list`` <= 0.3 s; ``runs stats`` and an
unfiltered ``runs list`` <= 0.5 s on 1,000,000 runs. Not part of the test run.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h  # noqa: E402  (first: puts this checkout's src/ on sys.path)

from rostergate import store  # noqa: E402

ACCOUNTS = 50
COMMANDS = (
    ("--help", ["--help"]),
    ("accounts list", ["accounts", "list"]),
    ("runs list", ["runs", "list"]),
    ("runs list --limit 20", ["runs", "list", "--limit", "20"]),
    ("runs list --status failed --limit 20", ["runs", "list", "--status", "failed", "--limit", "20"]),
    ("runs stats", ["runs", "stats"]),
    ("runs stats --since 24h", ["runs", "stats", "--since", "24h"]),
)


def fill(data_dir: Path, runs: int) -> None:
    """``runs`` synthetic runs and :data:`ACCOUNTS` accounts, by SQL, in the store under ``data_dir``."""
    conn = store.connect(data_dir)
    start = int(time.time()) - runs * 60  # one run a minute, the last one now
    with conn:
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
            " INSERT INTO accounts (name, password_hash, created_at, updated_at)"
            " SELECT printf('district-%02d', i), NULL, '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z' FROM n",
            (ACCOUNTS,))
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
            " INSERT INTO runs (id, account, status, upload_name, received_at, finished_at, spool_path, size,"
            " sha256, attempts)"
            " SELECT strftime('%Y%m%d-%H%M%S', ? + i * 60, 'unixepoch') || printf('-%06x', i),"
            " printf('district-%02d', i % ?),"
            " CASE WHEN i % 50 = 0 THEN 'rejected' WHEN i % 97 = 0 THEN 'failed'"
            " WHEN i % 31 = 0 THEN 'superseded' ELSE 'delivered' END,"
            " 'roster.zip', strftime('%Y-%m-%dT%H:%M:%SZ', ? + i * 60, 'unixepoch'),"
            " strftime('%Y-%m-%dT%H:%M:%SZ', ? + i * 60 + 5, 'unixepoch'), '/nowhere/upload.zip', 5500000,"
            " printf('%064x', i), 1 FROM n",
            (runs, start, ACCOUNTS, start, start))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=h.sized(1_000_000, 20_000))
    parser.add_argument("--rounds", type=int, default=h.sized(5, 1))
    parser.add_argument("--no-bytecode", dest="bytecode", action="store_false",
                        help="compile every module from source at each start (no .pyc)")
    args = parser.parse_args()
    load_at_start = h.loadavg()
    with tempfile.TemporaryDirectory(prefix="rg-cli-") as tmp:
        root = Path(tmp)
        clock = time.perf_counter()
        fill(root / "var", args.runs)
        print(f"filled {args.runs:,} runs in {time.perf_counter() - clock:.1f} s "
              f"({(root / 'var' / store.DB_NAME).stat().st_size / 2**20:.0f} MiB)", flush=True)
        config = root / "rostergate.toml"
        config.write_text(f'[server]\ndata_dir = "{root / "var"}"\nhost_key = "{root / "host_key"}"\n')
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(h.SRC), os.environ.get("PYTHONPATH")]))}
        if args.bytecode:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
        else:  # the standard library and site-packages keep their installed .pyc; src/ has none
            env.pop("PYTHONPYCACHEPREFIX", None)
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        times: dict[str, list[float]] = {name: [] for name, _ in COMMANDS}
        cpu: dict[str, list[float]] = {name: [] for name, _ in COMMANDS}
        for n in range(args.rounds + 1):  # round 0 warms the page cache and is not counted
            for name, command in COMMANDS:
                before = _children_cpu()
                clock = time.perf_counter()
                subprocess.run([sys.executable, "-m", "rostergate", "--config", str(config), *command],
                               check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
                if n:
                    times[name].append(time.perf_counter() - clock)
                    cpu[name].append(_children_cpu() - before)
    load = f"load average {load_at_start[0]:.1f} at the start, {h.loadavg()[0]:.1f} at the end"
    code = "bytecode" if args.bytecode else "no bytecode (compiled from source at each start)"
    print(f"\n{args.runs:,} runs, {ACCOUNTS} accounts; {os.cpu_count()} CPUs, {load}; "
          f"{args.rounds} rounds (a fresh process each, {code})")
    for name, values in times.items():
        print(f"  {name:<40} median {statistics.median(values):.3f} s   best {min(values):.3f} s   "
              f"CPU {statistics.median(cpu[name]):.3f} s")
    targets = {"accounts list": "<= 0.3 s", "runs list": "<= 0.3 s (<= 0.5 s unfiltered on 1M runs)",
               "runs stats": "<= 0.5 s"}
    markdown = (f"CLI commands in a fresh process on {args.runs:,} runs, {ACCOUNTS} accounts, {args.rounds} rounds, "
                f"{code}; {load} (`python bench/bench_cli.py`).\n\n"
                "| Command | Median | Best | CPU (median) | Target |\n|---|---|---|---|---|\n"
                + "".join(f"| `{name}` | **{statistics.median(v):.3f} s** | {min(v):.3f} s | "
                          f"{statistics.median(cpu[name]):.3f} s | {targets.get(name, '')} |\n"
                          for name, v in times.items()))
    h.record("cli", {"runs": args.runs, "bytecode": args.bytecode, "loadavg_start": load_at_start,
                     "seconds": times, "cpu_seconds": cpu}, markdown)


def _children_cpu() -> float:
    """User and system CPU seconds of this process's reaped children so far (less swayed by load than wall time)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
