"""The report of a run, written into the uploader's own ``reports/`` folder, for people and for scripts.

Two files per run, readable with any SFTP client: ``reports/<run-id>.txt`` names
every problem as ``file:line - what is wrong``; ``reports/<run-id>.json`` says the
same as data (:func:`report_data`, shape in the README, "Reports"). Both only ever
go to the account that uploaded the data. :mod:`rostergate.runs.lifecycle` is the
one caller: a report is (re)written whenever a run settles.
"""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Mapping, Sequence
from pathlib import Path

from rostergate.accountrecords import REPORTS_DIR
from rostergate.formats.issues import Issue
from rostergate.history import Run
from rostergate.runstatus import RunStatus

Step = Mapping[str, str | None]  # as History.steps gives them
Delivery = Mapping[str, str | int | None]  # as History.deliveries gives them
#: The JSON report's ``schema``: a script can tell the shape it reads. A new key keeps the
#: number; a key removed or changing meaning would take the next.
REPORT_SCHEMA = "rostergate.report/1"

_HEADLINES: dict[RunStatus, str] = {
    RunStatus.DELIVERED: "DELIVERED: your upload was accepted and forwarded.",
    RunStatus.REJECTED: ("REJECTED: your upload breaks the rules below and was not forwarded. "
                         "Fix them and upload again."),
    # Not every failure goes away by itself: say only what holds (whether the operator was alerted: _alerted).
    RunStatus.FAILED: ("FAILED: your upload was not forwarded; the reason is below. The operator of this server "
                       "can retry it: contact them with the run id above."),
    RunStatus.RETRYING: "RETRYING: the downstream server could not be reached; delivery will be retried.",
    RunStatus.HELD: "HELD: your upload waits for an operator's approval before it is forwarded.",
    RunStatus.DISCARDED: "DISCARDED: an operator rejected this held upload.",
    RunStatus.SUPERSEDED: "SUPERSEDED: a newer upload replaced this one before it was delivered.",
}


def render_report(run: Run, steps: Sequence[Step], issues: Sequence[Issue], summary: str = "",
                  deliveries: Sequence[Delivery] = (), alerted: str = "") -> str:
    """The report's text: headline, the delivery receipt, steps, then every issue as ``file:line - what is wrong``.

    ``alerted`` says how the operator was alerted to this run (``by webhook and e-mail``); only
    then does the report say they were.
    """
    lines = [
        f"rostergate run {run.id}",
        f"upload:   {run.upload_name}",
        f"received: {run.received_at}",
        f"format:   {run.input_format or 'unknown'}",
        f"status:   {run.status}",
        "",
        headline(run),
    ]
    if run.message:
        lines.append(run.message)
    if alerted:
        lines.append(f"The operator of this server has been alerted to this run ({alerted}).")
    lines += _receipt_lines(deliveries)
    lines += ["", "Steps:"]
    lines += [f"  {s['name']:<13} {s['status']:<8} {s['message'] or ''}".rstrip() for s in steps]
    errors = [i for i in issues if i.severity == "error"]
    warnings = [i for i in issues if i.severity == "warning"]
    for title, group in (("Errors", errors), ("Warnings", warnings)):
        if group:
            lines += ["", f"{title} ({len(group)}):"]
            lines += [i.to_text() for i in group]
    if summary:
        lines += ["", "Conversion:", summary]
    return "\n".join(lines) + "\n"


def headline(run: Run) -> str:
    """The report's first sentence for the district: what became of the upload."""
    return _HEADLINES.get(run.status, run.status)


def report_data(run: Run, steps: Sequence[Step], issues: Sequence[Issue],
                deliveries: Sequence[Delivery] = (), alerted: str = "") -> dict[str, object]:
    """The JSON report: what the text report says, as data (README, "Reports").

    ``counts`` is keyed by source file, ``{"rows": read, "delivered": used,
    "dropped": {reason: n}}``, and empty when the upload was not converted (rejected
    before, or ``output = same``). A delivery names the file as the downstream got it,
    never the downstream's address: that is the operator's, not the district's.
    ``operator_alerted`` says how the operator was alerted to this run, or is null.
    """
    return {
        "schema": REPORT_SCHEMA,
        "run_id": run.id,
        "account": run.account,
        "status": run.status.value,
        "headline": headline(run),
        "message": run.message,
        "operator_alerted": alerted or None,
        "upload_name": run.upload_name,
        "input_format": run.input_format,
        "sha256": run.sha256,
        "received_at": run.received_at,
        "finished_at": run.finished_at,
        "counts": json.loads(run.counts_json) if run.counts_json else {},
        "issues": [{**i.to_dict(), "hint": i.hint} for i in issues],
        "steps": [{k: s[k] for k in ("name", "status", "started_at", "finished_at", "message")} for s in steps],
        "deliveries": [
            {"status": d["status"], "attempts": d["attempts"],
             "name": posixpath.basename(str(d["remote"])) if d["remote"] else None,
             "size": d["size"], "sha256": d["sha256"], "finished_at": d["finished_at"]}
            for d in deliveries
        ],
    }


def _receipt_lines(deliveries: Sequence[Delivery]) -> list[str]:
    """What the downstream holds, for each verified delivery: name, size and SHA-256 of the bytes sent."""
    lines = []
    for d in deliveries:
        if d["status"] == "delivered":
            lines.append(f"  delivered as {posixpath.basename(str(d['remote']))}, {d['size']} bytes, "
                         f"sha256 {d['sha256']}, at {d['finished_at']}")
    return ["", "Delivery receipt:", *lines] if lines else []


def report_names(run_id: str) -> tuple[str, ...]:
    """The names a run's report may leave in ``reports/``: both reports, and their partial files."""
    return tuple(name for suffix in REPORT_SUFFIXES for name in (f"{run_id}{suffix}", f".{run_id}{suffix}.partial"))


REPORT_SUFFIXES = (".json", ".txt")


def write_report(home: Path, run: Run, steps: Sequence[Step], issues: Sequence[Issue], summary: str = "",
                 deliveries: Sequence[Delivery] = (), alerted: str = "") -> Path:
    """Write (or replace) ``reports/<run-id>.json`` and ``.txt`` in ``home``, each owner-only and atomically.

    The JSON goes first, so a ``.txt`` a district sees always has its ``.json`` beside it.
    ``alerted``: how the operator was alerted to this run (see :func:`render_report`).
    Returns the ``.txt``'s path.
    """
    folder = Path(home) / REPORTS_DIR
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = json.dumps(report_data(run, steps, issues, deliveries, alerted), indent=2, ensure_ascii=False) + "\n"
    _replace(folder, f"{run.id}.json", data)
    return _replace(folder, f"{run.id}.txt", render_report(run, steps, issues, summary, deliveries, alerted))


def _replace(folder: Path, name: str, text: str) -> Path:
    """Write ``folder/name`` through an owner-only ``.name.partial`` and a rename: a reader sees all or nothing."""
    target = folder / name
    partial = folder / f".{name}.partial"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(partial, target)
    return target
