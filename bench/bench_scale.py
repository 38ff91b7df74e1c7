"""Scaling: one run's CPU step (``prepare()``) from 1,000 to 1,000,000 students, time and peak memory.

    python bench/bench_scale.py                                  # 1k, 10k, 100k, 200k, 500k, 1M students
    python bench/bench_scale.py --students 1000 --students 50000 # other sizes
    BENCH_QUICK=1 python bench/bench_scale.py                    # 1k, 10k, 50k: a smoke run

For each size, a OneRoster 1.1 district (``bench/gen_district.py``; generated once and kept as
a stored ZIP under ``--cache``, by default ``$TMPDIR/rg-bench-districts``) is put in a run's
spool folder and a **fresh worker process** runs :func:`rostergate.runs.stages.prepare` on it
once, as a daemon worker does: unpack, detect, validate, convert, check-output, the output ZIP
written. Recorded per size: the wall seconds of ``prepare`` (the process's start-up and imports
not included), each step's seconds, and the peak memory of that process (``VmHWM``, imports
included: it is what the worker needs). The chart (``bench/results/scale.png``) plots both
against students on linear axes with a least-squares line ``a x + b`` (``b``: what a run costs
whatever its size, imports included for memory) and its R² (1.0 = on the line, i.e. linear).
Issue 14 target at 1,000,000 students: ≤ 15 s and ≤ 2 GB. Not part of the test run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h  # noqa: E402
from gen_district import generate  # noqa: E402

SIZES = (1_000, 10_000, 100_000, 200_000, 500_000, 1_000_000)
QUICK_SIZES = (1_000, 10_000, 50_000)

# Runs in the fresh worker process: argv = run_dir, upload. Prints one JSON line.
WORKER = """
import json, os, sys, time
from rostergate.runs.workers import initialize_worker
initialize_worker(os.getppid(), None)  # set up as a daemon's worker is
import rostergate.runs.safeguard  # first: importing runs.stages alone is circular
from rostergate.runs.stages import prepare
started = time.perf_counter()
prepared = prepare(sys.argv[1], sys.argv[2], "oneroster", "asm", "strict")
seconds = time.perf_counter() - started
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM")][0].split()[1]
print(json.dumps({"outcome": prepared.outcome, "seconds": seconds, "peak_kib": int(hwm),
                  "steps": {step.name: step.seconds for step in prepared.steps}}))
"""


def district_upload(cache: Path, students: int) -> Path:
    """The district's CSVs in a stored ZIP (made once per size and kept in ``cache``)."""
    target = cache / f"oneroster-1.1-{students}.zip"
    if not target.exists():
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            generate(Path(tmp), students, "1.1")
            partial = Path(tmp) / "upload.zip"
            with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_STORED) as archive:
                for path in sorted(Path(tmp).glob("*.csv")):
                    archive.write(path, path.name)
            partial.replace(target)
    return target


def one_run(root: Path, upload: Path) -> dict:
    """``prepare`` of ``upload`` in a fresh process, in a run's own spool folder under ``root``."""
    sys.path.insert(0, str(h.SRC))
    from rostergate.intake import SPOOL_DIR, UPLOAD_NAME

    run_dir = root / SPOOL_DIR / "20261130-120000-000000"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    shutil.copyfile(upload, run_dir / UPLOAD_NAME)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(h.SRC), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, "-c", WORKER, str(run_dir), str(run_dir / UPLOAD_NAME)],
                         capture_output=True, text=True, env=env, timeout=900)
    if out.returncode != 0:
        raise SystemExit(f"the worker failed: {out.stderr[-2000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    shutil.rmtree(run_dir)
    if result["outcome"] != "ready":
        raise SystemExit(f"the run was not ready: {result}")
    return result


def fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Least-squares line ``y = a x + b`` and its R²."""
    a, b = np.polyfit(x, y, 1)
    residual = y - (a * x + b)
    r2 = 1 - float(residual @ residual) / float(((y - y.mean()) ** 2).sum())
    return float(a), float(b), r2


def chart(points: list[dict], target: Path) -> dict:
    """Time and peak memory against students (linear axes, fit line, R²) into ``target``; the fits."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.array([p["students"] for p in points], dtype=float)
    series = {"seconds": np.array([p["seconds"] for p in points]),
              "peak_mib": np.array([p["peak_kib"] / 1024 for p in points])}
    fits = {}
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, (key, y), label in zip(axes, series.items(), ("prepare() wall seconds", "peak memory (VmHWM, MiB)")):
        a, b, r2 = fit(x, y)
        fits[key] = {"per_student": a, "intercept": b, "r2": r2}
        grid = np.linspace(0, x.max(), 50)
        ax.plot(x, y, "o", label="measured")
        ax.plot(grid, a * grid + b, "-", label=f"linear fit, R² = {r2:.4f}")
        ax.set_xlabel("students")
        ax.set_ylabel(label)
        ax.set_title(f"{label.split(' (')[0]}: {a * 1e6:.3g} per million students {b:+.3g}", fontsize=9)
        ax.ticklabel_format(style="plain", axis="x")
        ax.grid(alpha=0.3)
        ax.legend()
    machine = h.machine()
    figure.suptitle(f"One run (prepare in a fresh worker), OneRoster 1.1 -> ASM; {machine['cpus']} CPUs, "
                    f"load {machine['loadavg'][0]:.1f}, {machine['when']}", fontsize=9)
    figure.tight_layout()
    target.parent.mkdir(exist_ok=True)
    figure.savefig(target, dpi=110)
    plt.close(figure)
    return fits


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, action="append")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "rg-bench-districts")
    args = parser.parse_args(argv)
    sizes = sorted(args.students or h.sized(SIZES, QUICK_SIZES))
    args.cache.mkdir(mode=0o700, parents=True, exist_ok=True)
    load_before = h.loadavg()
    points = []
    with tempfile.TemporaryDirectory(prefix="rg-bench-scale-") as tmp:
        for students in sizes:
            upload = district_upload(args.cache, students)
            one = one_run(Path(tmp), upload)
            point = {"students": students, "upload_mib": upload.stat().st_size / h.MiB, "load": h.loadavg()[0], **one}
            points.append(point)
            print(f"{students:>9,} students: {one['seconds']:6.2f} s, peak {one['peak_kib'] / 1024:6.0f} MiB "
                  f"(" + ", ".join(f"{k} {v:.2f}" for k, v in one["steps"].items()) + f"), load {point['load']:.2f}",
                  flush=True)
    png = h.RESULTS / h.sized("scale.png", "scale-quick.png")
    if len(points) < 3:
        raise SystemExit("a chart needs at least three sizes")
    fits = chart(points, png)
    result = {"points": points, "fits": fits, "load_before": load_before, "load_after": h.loadavg(),
              "chart": str(png.relative_to(h.ROOT)), "target_1m": {"seconds": "<= 15", "peak": "<= 2 GB"}}
    rows = "".join(f"| {p['students']:,} | {p['seconds']:.2f} s | {p['seconds'] / p['students'] * 1e6:.1f} µs | "
                   f"{p['peak_kib'] / 1024:,.0f} MiB | "
                   + ", ".join(f"{k} {v:.2f}" for k, v in p["steps"].items()) + f" | {p['load']:.1f} |\n"
                   for p in points)
    markdown = (
        f"One run's `prepare()` in a fresh worker process (`python bench/bench_scale.py`), OneRoster 1.1 -> ASM; "
        f"load average {load_before[0]:.2f} before, {result['load_after'][0]:.2f} after. "
        f"Chart: `{result['chart']}`.\n\n"
        "| Students | Wall | Per student | Peak memory (VmHWM) | Steps (s) | Load |\n|---|---|---|---|---|---|\n" + rows
        + f"\nLinear fits: time {fits['seconds']['per_student'] * 1e6:.2f} µs/student "
        f"(R² {fits['seconds']['r2']:.4f}); memory {fits['peak_mib']['per_student'] * 1e3:.2f} "
        f"KiB/student (R² {fits['peak_mib']['r2']:.4f}). "
        "Target at 1,000,000 students: <= 15 s and <= 2 GB.\n"
    )
    h.record("scale", result, markdown)
    print(markdown)
    return result


if __name__ == "__main__":
    main()
