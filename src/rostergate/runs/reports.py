"""The plain-text report of a run, written into the uploader's own ``reports/`` folder.

One file per run, ``reports/<run-id>.txt``, readable with any SFTP client. It
names every problem as ``file:line - what is wrong`` and only ever goes to the
account that uploaded the data. :mod:`rostergate.runs.lifecycle` is its one
caller: a report is (re)written whenever a run settles.
"""

from __future__ import annotations

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

_HEADLINES: dict[RunStatus, str] = {
    RunStatus.DELIVERED: "DELIVERED: your upload was accepted and forwarded.",
    RunStatus.REJECTED: ("REJECTED: your upload breaks the rules below and was not forwarded. "
                         "Fix them and upload again."),
    # Nothing alerts the operator yet, and not every failure goes away by itself: say only what holds.
    RunStatus.FAILED: ("FAILED: your upload was not forwarded; the reason is below. The operator of this server "
                       "can retry it: contact them with the run id above."),
    RunStatus.RETRYING: "RETRYING: the downstream server could not be reached; delivery will be retried.",
    RunStatus.HELD: "HELD: your upload waits for an operator's approval before it is forwarded.",
    RunStatus.DISCARDED: "DISCARDED: an operator rejected this held upload.",
    RunStatus.SUPERSEDED: "SUPERSEDED: a newer upload replaced this one before it was delivered.",
}


def render_report(run: Run, steps: Sequence[Step], issues: Sequence[Issue], summary: str = "",
                  deliveries: Sequence[Delivery] = ()) -> str:
    """The report's text: headline, the delivery receipt, steps, then every issue as ``file:line - what is wrong``."""
    lines = [
        f"rostergate run {run.id}",
        f"upload:   {run.upload_name}",
        f"received: {run.received_at}",
        f"format:   {run.input_format or 'unknown'}",
        f"status:   {run.status}",
        "",
        _HEADLINES.get(run.status, run.status),
    ]
    if run.message:
        lines.append(run.message)
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


def _receipt_lines(deliveries: Sequence[Delivery]) -> list[str]:
    """What the downstream holds, for each verified delivery: name, size and SHA-256 of the bytes sent."""
    lines = []
    for d in deliveries:
        if d["status"] == "delivered":
            lines.append(f"  delivered as {posixpath.basename(str(d['remote']))}, {d['size']} bytes, "
                         f"sha256 {d['sha256']}, at {d['finished_at']}")
    return ["", "Delivery receipt:", *lines] if lines else []


def write_report(home: Path, run: Run, steps: Sequence[Step], issues: Sequence[Issue], summary: str = "",
                 deliveries: Sequence[Delivery] = ()) -> Path:
    """Write (or replace) ``reports/<run-id>.txt`` in ``home``, owner-only, atomically."""
    folder = Path(home) / REPORTS_DIR
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = folder / f"{run.id}.txt"
    partial = folder / f".{run.id}.txt.partial"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(render_report(run, steps, issues, summary, deliveries))
    os.replace(partial, target)
    return target
