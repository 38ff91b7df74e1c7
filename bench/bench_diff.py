"""Time the safeguard's diff and ``runs diff``'s record listing on a synthetic ASM district.

    python bench/bench_diff.py --students 200000 --repeat 5

Builds the district's six ASM files (``gen_district.py --version asm``) as the "before" ZIP,
and a "now" ZIP in which 1 % of the students are gone, 1 % are new and 2 % changed their last
name (and so 1 % of the roster rows are gone). Times :func:`diff` (what every run's safeguard
step does) and :func:`diff_records` without and with values (``runs diff [--show-values]``).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import zipfile
from pathlib import Path

import pandas as pd
from gen_district import generate

from rostergate.formats import snapshot
from rostergate.formats.snapshot import diff


def _zip(folder: Path, frames: dict[str, pd.DataFrame], target: Path) -> Path:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, frame in frames.items():
            archive.writestr(name, frame.to_csv(index=False))
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--counts-only", action="store_true", help="Time diff() only (it exists in older trees too).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rg-bench-diff-") as scratch:
        folder = Path(scratch) / "asm"
        generate(folder, args.students, "asm")
        before = {p.name: pd.read_csv(p, dtype=str, keep_default_na=False) for p in sorted(folder.glob("*.csv"))}
        now = dict(before)
        students = before["students.csv"]
        n = len(students)
        gone = set(students["person_id"].iloc[: n // 100])
        kept = students.iloc[n // 100:].copy()
        renamed = kept.index[: n // 50]
        kept.loc[renamed, "last_name"] = kept.loc[renamed, "last_name"] + "-x"
        new = students.iloc[: n // 100].copy()
        new["person_id"] = "new-" + new["person_id"]
        now["students.csv"] = pd.concat([kept, new], ignore_index=True)
        now["rosters.csv"] = before["rosters.csv"][~before["rosters.csv"]["student_id"].isin(gone)]
        a = _zip(folder, before, Path(scratch) / "before.zip")
        b = _zip(folder, now, Path(scratch) / "now.zip")
        rows = sum(len(f) for f in before.values())
        print(f"{args.students} students, {rows} rows before")
        works = [("diff (safeguard step)", lambda: diff(a, b))]
        if not args.counts_only:
            works += [("diff_records (runs diff)", lambda: snapshot.diff_records(a, b)),
                      ("diff_records --show-values", lambda: snapshot.diff_records(a, b, True))]
        for label, work in works:
            work()  # warm-up
            times, cpu = [], []
            for _ in range(args.repeat):
                start, start_cpu = time.perf_counter(), time.process_time()
                result = work()
                times.append(time.perf_counter() - start)
                cpu.append(time.process_time() - start_cpu)
            print(f"{label:<28} median {statistics.median(times):.3f} s wall, {statistics.median(cpu):.3f} s CPU "
                  f"(students: {result['files']['students.csv']})")


if __name__ == "__main__":
    main()
