"""What an alert says: the webhook's JSON body and the e-mail's subject and text.

The body (DESIGN.md, "Alert (webhook body)"), every key always present::

    {"event": "run.failed", "account": "district-a", "run_id": "20261122-084151-3f9a1c",
     "status": "failed", "reason": {"code": "delivery_refused", "text": "..."},
     "counts": {"errors": 0, "warnings": 2, "issues": {"oneroster.bad_grade": 2}},
     "at": "2026-11-22T08:41:51Z", "inspect": "rostergate --config ... runs show 20261122-084151-3f9a1c",
     "server": "sftp.district.example", "details": {...}}

``reason.code`` is one of :data:`REASONS`; ``counts`` are the run's issues by
severity and by catalogue code; ``details`` holds what only some events have
(``attempts`` and ``retrying_since`` of run.retrying, ``deadline``,
``expect_upload`` and ``last_upload`` of account.late). ``status`` and ``run_id``
are null for account.late when the account never uploaded.

Never student data: an alert carries account names, run ids, catalogue codes,
counts and the run's own message (which the pipeline writes without values from
the roster), and neither the upload's file name (chosen by the district) nor any
issue's value or message.
"""

from __future__ import annotations

import json
import shlex
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

# reason.code: why the run is where it is (also logged with the run's status).
REASONS = {
    "upload_invalid": "the upload breaks validation rules (see the report)",
    "upload_changed": "the spooled upload is not the one received",
    "no_flow": "no flow is configured for the account",
    "worker_lost": "the worker process processing the run was lost",
    "interrupted": "processing was interrupted too often",
    "internal_error": "an internal error",
    "safeguard": "the safeguard held the run (too much would be removed)",
    "delivery_refused": "the downstream refused the delivery (retrying cannot help)",
    "delivery_gave_up": "every delivery attempt failed",
    "delivery_retrying": "delivery attempts keep failing; it is retried",
    "delivered": "delivered",
    "operator_rejected": "an operator rejected the held run",
    "deadline_missed": "the account's expected upload did not arrive",
}
MAX_TEXT = 500  # characters of reason.text: a downstream's error message is bounded


class IssueLike(Protocol):
    @property
    def severity(self) -> str: ...
    @property
    def code(self) -> str: ...


@dataclass(frozen=True)
class Alert:
    """One alert, whatever channels it goes to."""

    event: str
    account: str
    run_id: str | None
    status: str | None
    reason_code: str
    reason_text: str
    at: str
    inspect: str
    counts: Mapping[str, Any] = field(default_factory=dict)
    server: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The webhook body as a dict (module doc)."""
        return {
            "event": self.event, "account": self.account, "run_id": self.run_id, "status": self.status,
            "reason": {"code": self.reason_code, "text": self.reason_text[:MAX_TEXT]},
            "counts": dict(self.counts), "at": self.at, "inspect": self.inspect, "server": self.server,
            "details": dict(self.details),
        }

    def body(self) -> bytes:
        """The exact bytes POSTed (and signed): compact JSON, UTF-8."""
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()

    def subject(self) -> str:
        """An e-mail subject line: event, account and run."""
        about = f" run {self.run_id}" if self.run_id else ""
        return f"[rostergate] {self.event}: {self.account}{about} ({self.reason_code})"

    def text(self) -> str:
        """The e-mail's plain-text body: the same facts as the webhook, for people."""
        lines = [
            f"{self.event} for account {self.account}" + (f", run {self.run_id}" if self.run_id else ""),
            "",
            f"status:  {self.status or '-'}",
            f"reason:  {self.reason_code}: {self.reason_text[:MAX_TEXT]}",
            f"at:      {self.at}",
        ]
        if self.counts:
            lines.append(f"issues:  {self.counts.get('errors', 0)} errors, {self.counts.get('warnings', 0)} warnings")
            lines += [f"         {code}: {n}" for code, n in sorted(self.counts.get("issues", {}).items())]
        lines += [f"{key + ':':<9}{value}" for key, value in sorted(self.details.items())]
        lines += ["", "To look into it:", f"  {self.inspect}", ""]
        if self.server:
            lines.append(f"-- rostergate on {self.server}")
        return "\n".join(lines) + "\n"


def issue_counts(issues: Iterable[IssueLike]) -> dict[str, Any]:
    """``{"errors", "warnings", "issues": {code: n}}`` of a run's issues: codes and numbers, nothing else."""
    codes: Counter[str] = Counter()
    severities: Counter[str] = Counter()
    for issue in issues:
        codes[issue.code] += 1
        severities[issue.severity] += 1
    return {"errors": severities["error"], "warnings": severities["warning"], "issues": dict(codes)}


def inspect_command(config: str | None, *args: str) -> str:
    """The command an operator runs to look into it, with ``--config`` when the daemon was given one."""
    return shlex.join(["rostergate", *(["--config", config] if config else []), *args])
