"""Validation speed and memory against a bare pandas parse, side by side in one run.

    python bench/bench_validate.py                       # 200,000 students, OneRoster 1.1, 5 rounds
    python bench/bench_validate.py --students 1000000 --repeat 3
    python bench/bench_validate.py --version asm --dir /tmp/district   # reuse a generated folder

Each round times (a) ``pandas.read_csv(engine="pyarrow", dtype=str)`` of every
CSV file and (b) ``validate_dir`` on the same folder, alternating, after one
warm-up of each; the medians and their ratio are printed. Peak memory is the
high-water RSS (VmHWM) of a fresh child process that runs one ``validate_dir`` (and, for
comparison, one bare parse).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h  # noqa: E402
from gen_district import generate  # noqa: E402

from rostergate.formats.validate.entry import validate_dir  # noqa: E402


def bare_parse(folder: Path) -> int:
    rows = 0
    for path in sorted(folder.glob("*.csv")):
        rows += len(pd.read_csv(path, engine="pyarrow", dtype=str))
    return rows


def child_peak_rss(folder: Path, mode: str) -> float:
    """Peak RSS (MiB) of a fresh interpreter running one bare parse or one validation."""
    code = (
        "import sys, json, resource; from pathlib import Path; sys.path.insert(0, sys.argv[3]);"
        "from bench_validate import bare_parse; from rostergate.formats.validate.entry import validate_dir;"
        "f = Path(sys.argv[1]);"
        "r = bare_parse(f) if sys.argv[2] == 'bare' else validate_dir(f).valid;"
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1];"
        "print(json.dumps({'rss': int(hwm), 'result': str(r)}))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(folder), mode, str(Path(__file__).resolve().parent)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)["rss"] / 1024  # VmHWM is KiB; ru_maxrss would include the parent's (kept across exec)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=h.sized(200_000, 20_000))
    parser.add_argument("--version", choices=("1.1", "1.2", "asm"), default="1.1")
    parser.add_argument("--repeat", type=int, default=h.sized(5, 1))
    parser.add_argument("--dir", type=Path, help="use (or create) this folder instead of a temporary one")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="rostergate-bench-") as tmp:
        folder = args.dir or Path(tmp) / "district"
        if not (folder / "users.csv").exists() and not (folder / "students.csv").exists():
            started = time.perf_counter()
            rows = generate(folder, args.students, args.version)
            print(f"generated {sum(rows.values()):,} rows in {time.perf_counter() - started:.1f}s")
        size = sum(p.stat().st_size for p in folder.glob("*.csv")) / 2**20
        print(f"folder: {folder} ({size:.0f} MiB)")

        rows = bare_parse(folder)
        result = validate_dir(folder)
        print(f"rows: {rows:,}; validation: valid={result.valid}, issues={len(result.issues)}")
        bare, full = [], []
        for _ in range(args.repeat):
            t = time.perf_counter()
            bare_parse(folder)
            bare.append(time.perf_counter() - t)
            t = time.perf_counter()
            validate_dir(folder)
            full.append(time.perf_counter() - t)
        mb, mf = statistics.median(bare), statistics.median(full)
        print(f"bare read_csv  median {mb:.2f}s  (runs: {', '.join(f'{x:.2f}' for x in bare)})")
        print(f"validate_dir   median {mf:.2f}s  (runs: {', '.join(f'{x:.2f}' for x in full)})")
        print(f"ratio validate/bare: {mf / mb:.2f}x")
        peak = {"validate": child_peak_rss(folder, "validate"), "bare": child_peak_rss(folder, "bare")}
        print(f"peak RSS: validate {peak['validate']:.0f} MiB, bare parse {peak['bare']:.0f} MiB")
        print(f"(this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB)")
    markdown = (f"`validate_dir` alone (a breakdown, not the real path), {args.students:,} students, "
                f"{args.version}, {args.repeat} rounds (`python bench/bench_validate.py --students {args.students} "
                f"--version {args.version} --repeat {args.repeat}`).\n\n"
                "| Rows | Bare parse | validate_dir | Ratio | Peak RSS validate / bare |\n|---|---|---|---|---|\n"
                f"| {rows:,} | {mb:.2f} s | {mf:.2f} s | {mf / mb:.1f}x | {peak['validate']:,.0f} / "
                f"{peak['bare']:,.0f} MiB |\n")
    h.record("validate", {"students": args.students, "version": args.version, "rows": rows, "bare": bare,
                          "validate": full, "peak_mib": peak}, markdown)


if __name__ == "__main__":
    main()
