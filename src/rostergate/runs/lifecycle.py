"""A run's life: every change of its status, for the pipeline and the operator alike, and its report.

The statuses and the table of allowed changes are :mod:`rostergate.runstatus`
(:class:`RunStatus`, :data:`TRANSITIONS`): a leaf module, so that
:mod:`rostergate.history` can store and return :class:`RunStatus` and refuse an
illegal change (:class:`~rostergate.errors.IllegalTransition`) in the very
``UPDATE`` that would make it, without importing ``runs/``. This module says
*when* a run moves, and is the one place that writes a run's report:

* the pipeline settles a run (:meth:`Lifecycle.settle`: delivered, rejected,
  failed, or held for an operator) or schedules its next delivery attempt
  (:meth:`Lifecycle.retry_later`, after :func:`after_failed_delivery` and
  :func:`retry_delay`);
* the operator approves or rejects a held run, or retries a failed one
  (:meth:`Lifecycle.approve`, :meth:`Lifecycle.reject`, :meth:`Lifecycle.retry`;
  the CLI's ``runs approve|reject|retry``), each recorded in the audit trail with
  who and why (:class:`~rostergate.history.Actor`); the pipeline reads what an
  approval left through :func:`prepared_before`.

A report (``reports/<run-id>.txt`` and ``.json``) is written whenever a run
settles, into the account's home when it still exists; a run that waits for a
retry or was superseded gets none.

Settling is also the one place alerts are raised for a run (``run.rejected``,
``run.failed``, ``run.held``, ``run.recovered``): :meth:`Lifecycle.settle` calls its
:class:`SettleHook` (the daemon's :class:`rostergate.alerts.notify.Alerter`) with the
run and a reason code, and the report says how the operator was told, only when
they were. A hook that fails is logged and changes nothing else: an alert never
blocks or fails a run.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import timedelta
from pathlib import Path
from typing import Protocol

import structlog

from rostergate import timeutil
from rostergate.errors import DeliveryError, FinalError, RunError
from rostergate.history import Actor, AuditTrail, History, Run
from rostergate.runs.reports import write_report
from rostergate.runstatus import RunStatus

SETTLED = frozenset({RunStatus.DELIVERED, RunStatus.REJECTED, RunStatus.FAILED, RunStatus.DISCARDED,
                     RunStatus.HELD})  # the statuses :meth:`Lifecycle.settle` moves to: each gets a report
RETRIABLE = frozenset({RunStatus.FAILED, RunStatus.RETRYING})  # what an operator may retry
log = structlog.get_logger("rostergate.lifecycle")


class SettleHook(Protocol):
    """Told of every run that settles (:meth:`Lifecycle.settle`); must not block."""

    def settled(self, run: Run, reason: str) -> str:
        """React to ``run``'s new status (``reason``: a code of :data:`rostergate.alerts.payload.REASONS`);
        returns how the operator was told (``by webhook and e-mail``), or ``""``."""
        ...


def retry_delay(attempts: int, base_seconds: float, max_seconds: float) -> float:
    """Seconds to wait after the ``attempts``-th failed delivery: base, twice that, four times, ... at most max."""
    return float(min(base_seconds * (2 ** (attempts - 1)), max_seconds))


def after_failed_delivery(error: DeliveryError, attempts: int, max_attempts: int) -> RunStatus:
    """``failed`` when retrying cannot help or ``attempts`` used the last one up, else ``retrying``."""
    if isinstance(error, FinalError) or attempts >= max_attempts:
        return RunStatus.FAILED
    return RunStatus.RETRYING


def prepared_before(run: Run) -> bool:
    """True when the run's ZIP was prepared and checked before: a delivery retry, or a held run that was approved."""
    return bool(run.attempts or run.approved_at)


class Lifecycle:
    """Changes the status of runs in ``history``; ``homes`` gives an account's home, where reports go."""

    def __init__(self, history: History, homes: Callable[[str], Path], hook: SettleHook | None = None):
        self.history = history
        self.homes = homes
        self.audit = AuditTrail(history.conn)
        self.hook = hook

    # -- the pipeline ------------------------------------------------------------------
    def settle(self, run_id: str, status: RunStatus, message: str, summary: str = "", *, reason: str = "",
               attempts: int | None = None, only_from: Collection[RunStatus] | None = None) -> Run:
        """Move the run to ``status`` (final, or held) with ``message``, tell the hook, and write its report.

        ``summary`` (the conversion's, when there was one) goes into the report;
        ``reason`` is the code of why (``upload_invalid``, ``delivery_refused``, ...);
        ``attempts``, when given, is the number of delivery attempts made.
        Raises :class:`~rostergate.errors.IllegalTransition` when the run may not
        move there now (see :meth:`History.set_status`).
        """
        assert status in SETTLED, status
        columns = {} if attempts is None else {"attempts": attempts}
        self.history.set_status(run_id, status, message, only_from=only_from, **columns)
        run = self._existing(run_id)
        told = self._tell(run, reason or status.value)
        home = self.homes(run.account)
        if home.exists():
            write_report(home, run, self.history.steps(run_id), self.history.issues(run_id), summary,
                         self.history.deliveries(run_id), alerted=told)
        return run

    def _tell(self, run: Run, reason: str) -> str:
        """The hook's answer; a hook that fails is logged and tells nobody."""
        if self.hook is None:
            return ""
        try:
            return self.hook.settled(run, reason)
        except Exception as exc:  # noqa: BLE001 - an alert never fails a run
            log.error("alert_not_raised", run_id=run.id, account=run.account, status=run.status.value,
                      error=type(exc).__name__)
            return ""

    def retry_later(self, run_id: str, attempts: int, reason: str, delay_seconds: float) -> str:
        """Mark the run ``retrying`` after its ``attempts``-th failed delivery; returns when it is due again."""
        next_at = timeutil.iso(timeutil.now() + timedelta(seconds=delay_seconds))
        self.history.set_status(run_id, RunStatus.RETRYING, f"attempt {attempts} failed: {reason}; next try at "
                                f"{next_at}", attempts=attempts, next_attempt_at=next_at)
        return next_at

    # -- the operator ------------------------------------------------------------------
    def approve(self, run_id: str, by: Actor | None = None) -> Run:
        """A held run is delivered as it is: back to ``received``, marked approved (see :func:`prepared_before`)."""
        run = self._held(run_id)
        self.history.set_status(run_id, RunStatus.RECEIVED, "approved by an operator", only_from={RunStatus.HELD},
                                approved_at=timeutil.iso())
        self.audit.record("runs.approve", by or Actor.current(), run.account, run_id)
        return self._existing(run_id)

    def reject(self, run_id: str, by: Actor | None = None) -> Run:
        """A held run is never delivered: ``discarded``, with a report saying so."""
        run = self._held(run_id)
        settled = self.settle(run_id, RunStatus.DISCARDED, "rejected by an operator; nothing was delivered",
                              reason="operator_rejected", only_from={RunStatus.HELD})
        self.audit.record("runs.reject", by or Actor.current(), run.account, run_id)
        return settled

    def retry(self, run_id: str, by: Actor | None = None) -> Run:
        """A failed or retrying run starts again from its spooled upload, with fresh attempt counters.

        A run whose files retention purged cannot: its upload is gone.
        """
        run = self._existing(run_id)
        if run.status not in RETRIABLE:
            raise RunError(f"run {run_id} is {run.status}; only failed or retrying runs can be retried")
        if run.purged_at:
            raise RunError(f"run {run_id}: its upload was removed by retention at {run.purged_at}; "
                           "it cannot be retried: ask the district to upload again")
        self.history.set_status(run_id, RunStatus.RECEIVED, "retry requested by an operator", only_from=RETRIABLE,
                                finished_at=None, attempts=0, prepare_attempts=0)
        self.audit.record("runs.retry", by or Actor.current(), run.account, run_id)
        return self._existing(run_id)

    def _existing(self, run_id: str) -> Run:
        run = self.history.get(run_id)
        if run is None:
            raise RunError(f"run {run_id!r} does not exist (see 'rostergate runs list')")
        return run

    def _held(self, run_id: str) -> Run:
        run = self._existing(run_id)
        if run.status is not RunStatus.HELD:
            raise RunError(f"run {run_id} is {run.status}; only held runs can be approved or rejected")
        return run
