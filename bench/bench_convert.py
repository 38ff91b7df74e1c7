"""Conversion speed against a bare pandas parse, side by side in one run.

    python bench/bench_convert.py                        # 200,000 students, OneRoster 1.1, 5 rounds
    python bench/bench_convert.py --version 1.2 --repeat 3
    python bench/bench_convert.py --dir /tmp/district     # reuse (or create) a generated folder
    python bench/bench_convert.py --no-validate           # conversion only

Each round times, on the same folder: (a) ``pandas.read_csv(engine="pyarrow",
dtype=str)`` of every CSV file; then the pipeline's own CPU step,
:func:`rostergate.runs.stages.prepare`, on a ZIP of the folder, reading the seconds
it records for its ``validate``, ``convert`` and ``check-output`` steps (the
``unpack`` step is shown but not counted: the bare parse reads unpacked files
too). The issue 5 target is validate + convert + check-output ≤ 10 × (a).

For a breakdown it also times the parts one after the other: ``validate_dir``
of the input, ``convert_dir``, ``write_asm_zip`` and ``validate_dir`` of the
written ASM files (``--no-validate``: conversion only, no pipeline). After one
warm-up round, medians and the ratios to (a) are printed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h  # noqa: E402
from gen_district import generate  # noqa: E402

from rostergate.formats.convert.entry import convert_dir, write_asm_zip  # noqa: E402
from rostergate.formats.read.csvio import sharing_loaded_tables  # noqa: E402
from rostergate.intake import SPOOL_DIR, UPLOAD_NAME  # noqa: E402
from rostergate.runs.stages import prepare  # noqa: E402

AS_OF = dt.date(2026, 11, 22)


def bare_parse(folder: Path) -> int:
    return sum(len(pd.read_csv(p, engine="pyarrow", dtype=str)) for p in sorted(folder.glob("*.csv")))


def zip_folder(folder: Path, out: Path) -> None:
    """The upload: the folder's CSVs stored (not deflated) so unpacking stays cheap."""
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        for path in sorted(folder.glob("*.csv")):
            archive.write(path, path.name)


PIPELINE_STEPS = ("validate", "convert", "check-output")


def run_pipeline(upload: Path) -> dict[str, float]:
    """One :func:`prepare` run of ``upload`` (in a run's spool folder); the seconds of each step it recorded."""
    prepared = prepare(str(upload.parent), str(upload), "oneroster", "asm", "strict")
    if prepared.outcome != "ready":
        problems = [i.message for i in prepared.issues if i.severity == "error"][:5]
        raise SystemExit(f"the pipeline rejected the district: {problems}")
    return {step.name: step.seconds for step in prepared.steps}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=h.sized(200_000, 20_000))
    parser.add_argument("--version", choices=("1.1", "1.2"), default="1.1")
    parser.add_argument("--repeat", type=int, default=h.sized(5, 1))
    parser.add_argument("--dir", type=Path, help="use (or create) this folder instead of a temporary one")
    parser.add_argument("--no-validate", action="store_true", help="time the conversion only")
    args = parser.parse_args(argv)
    validate = None
    if not args.no_validate:
        try:
            from rostergate.formats.validate.entry import validate_dir as validate
        except ImportError:
            print("validate_dir not available: timing conversion only")

    with tempfile.TemporaryDirectory(prefix="rostergate-bench-") as tmp:
        folder = args.dir or Path(tmp) / "district"
        if not (folder / "users.csv").exists():
            started = time.perf_counter()
            rows = generate(folder, args.students, args.version)
            print(f"generated {sum(rows.values()):,} rows in {time.perf_counter() - started:.1f}s")
        size = sum(p.stat().st_size for p in folder.glob("*.csv")) / 2**20
        print(f"folder: {folder} ({size:.0f} MiB), OneRoster {args.version}")
        out_zip, out_dir = Path(tmp) / "asm.zip", Path(tmp) / "asm"
        source_format = f"oneroster-{args.version}"

        def unpack() -> None:
            out_dir.mkdir(exist_ok=True)
            with zipfile.ZipFile(out_zip) as archive:
                archive.extractall(out_dir)

        # prepare() works only in a run's own spool folder: <data_dir>/spool/<run-id>/upload.zip
        upload = Path(tmp) / SPOOL_DIR / "20261122-080000-000000" / UPLOAD_NAME
        if validate is not None:
            upload.parent.mkdir(parents=True)
            zip_folder(folder, upload)
        steps: dict[str, list[float]] = {"bare parse": [], "convert_dir": [], "write_asm_zip": []}
        if validate is not None:
            steps.update({"validate input": [], "validate output": []})
            steps.update({f"pipeline {name}": [] for name in ("unpack", *PIPELINE_STEPS)})
        for round_ in range(args.repeat + 1):  # round 0 is the warm-up
            timings: dict[str, float] = {}
            gc.collect()  # nothing from the previous round stays alive (a worker runs one prepare at a time)
            t = time.perf_counter()
            rows = bare_parse(folder)
            timings["bare parse"] = time.perf_counter() - t
            if validate is not None:  # the pipeline right after the parse it is compared with
                recorded = run_pipeline(upload)
                timings.update({f"pipeline {name}": recorded[name] for name in ("unpack", *PIPELINE_STEPS)})
            with sharing_loaded_tables():  # as the pipeline does: validation's parse is reused
                if validate is not None:
                    t = time.perf_counter()
                    validate(folder, "oneroster")
                    timings["validate input"] = time.perf_counter() - t
                t = time.perf_counter()
                conversion = convert_dir(folder, source_format, as_of=AS_OF)
                timings["convert_dir"] = time.perf_counter() - t
            t = time.perf_counter()
            write_asm_zip(conversion, out_zip)
            timings["write_asm_zip"] = time.perf_counter() - t
            if validate is not None:
                unpack()
                t = time.perf_counter()
                result = validate(out_dir, "asm", "asm")
                timings["validate output"] = time.perf_counter() - t
            if round_ == 0:
                print(f"rows read: {rows:,}; output: {conversion.output_counts}")
                if validate is not None:
                    print(f"output valid: {result.valid} ({len(result.issues)} issues)")
            else:
                for name, value in timings.items():
                    steps[name].append(value)
            del conversion

        # Medians are the headline; minima are printed too because on a shared machine
        # the noise only ever adds time.
        for label, pick in (("median", statistics.median), ("best", min)):
            chosen = {name: pick(values) for name, values in steps.items()}
            bare = chosen["bare parse"]
            print(f"-- {label} of {args.repeat} runs")
            for name, values in steps.items():
                runs = ", ".join(f"{v:.2f}" for v in values) if label == "median" else ""
                print(f"{name:<16} {chosen[name]:6.2f}s  {chosen[name] / bare:5.1f}x  {runs}")
            conversion_only = chosen["convert_dir"] + chosen["write_asm_zip"]
            print(f"convert + write: {conversion_only:.2f}s = {conversion_only / bare:.1f}x bare parse")
            if validate is not None:
                total = conversion_only + chosen["validate input"] + chosen["validate output"]
                print(f"parts one after the other: {total:.2f}s = {total / bare:.1f}x bare parse")
                per_round = [sum(steps[f"pipeline {name}"][i] for name in PIPELINE_STEPS)
                             for i in range(args.repeat)]
                pipeline = pick(per_round)
                ratios = [p / b for p, b in zip(per_round, steps["bare parse"])]
                print(f"PIPELINE validate + convert + check-output: {pipeline:.2f}s = {pipeline / bare:.1f}x "
                      f"bare parse (target <= 10x)")
                # each round's pipeline against the bare parse measured just before it: less
                # exposed to load that comes and goes during the run
                print(f"         {label} of the per-round ratios: {pick(ratios):.1f}x "
                      f"({', '.join(f'{r:.1f}' for r in ratios)})")
    med = {name: statistics.median(values) for name, values in steps.items()}
    markdown = (f"`prepare()` and its parts in a warm process (a breakdown, not the real path), "
                f"{args.students:,} students, OneRoster {args.version}, {args.repeat} rounds "
                f"(`python bench/bench_convert.py --students {args.students} --version {args.version} "
                f"--repeat {args.repeat}`); medians.\n\n| Part | Median | x bare parse |\n|---|---|---|\n"
                + "".join(f"| {name} | {value:.2f} s | {value / med['bare parse']:.1f}x |\n"
                          for name, value in med.items()))
    h.record("convert", {"students": args.students, "version": args.version, "rounds": steps}, markdown)


if __name__ == "__main__":
    main()
