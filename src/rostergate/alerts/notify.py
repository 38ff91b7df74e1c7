"""When alerts are raised: as a run settles (:class:`Alerter`), and on the daemon's timer (:class:`Watch`).

:class:`Alerter` is the run lifecycle's one hook
(:meth:`rostergate.runs.lifecycle.Lifecycle.settle` calls :meth:`Alerter.settled`):

* ``rejected`` -> run.rejected, ``failed`` -> run.failed, ``held`` -> run.held;
* ``delivered`` -> run.recovered when it is the first delivery after failures: the
  run itself was reported as retrying too long, or the account's previous run that
  came to an end (delivered, rejected or failed) did not deliver.

:class:`Watch` runs every ``[alerts] check_interval_seconds``:

* account.late once per missed ``[flows.schedule] expect_upload`` deadline
  (:mod:`rostergate.alerts.schedule`), recorded in the store
  (:meth:`~rostergate.history.History.raise_once`) so a restart never raises it again;
* run.retrying once per run whose delivery has been retrying longer than its flow's
  ``retrying_after`` (counted from the first failed attempt of the current series);
* the metrics read from the store: last upload and delivery per account, lateness, held runs.

Both also log what they raise (``account_late``, ``run_retrying_long`` at warning),
whether or not any alert channel is configured: the log is an alert channel too.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping
from datetime import datetime

import structlog

from rostergate import metrics, timeutil
from rostergate.accountrecords import AccountRecords
from rostergate.alerts.dispatch import Dispatcher
from rostergate.alerts.payload import REASONS, Alert, inspect_command, issue_counts
from rostergate.alerts.settings import AlertSettings
from rostergate.alerts.states import AccountState, account_states
from rostergate.config import Settings
from rostergate.history import History, Run
from rostergate.runstatus import RunStatus

log = structlog.get_logger("rostergate.alerts")

EVENT_OF = {RunStatus.REJECTED: "run.rejected", RunStatus.FAILED: "run.failed", RunStatus.HELD: "run.held"}
ENDED = (RunStatus.DELIVERED, RunStatus.REJECTED, RunStatus.FAILED)  # a previous run that counts for "recovered"


class Alerter:
    """Builds alerts and hands them to the dispatcher; ``settings`` gives the settings in force (reloads)."""

    def __init__(self, settings: Callable[[], Settings], history: History, dispatcher: Dispatcher):
        self._settings = settings
        self.history = history
        self.dispatcher = dispatcher

    # -- the lifecycle's hook --------------------------------------------------------------
    def settled(self, run: Run, reason: str) -> str:
        """Raise the alert ``run``'s new status calls for; returns how the operator is told (``by webhook``),
        or ``""`` when nobody is (what the district's report may then claim)."""
        target = self._settings().alerts_for(run.account)
        event = EVENT_OF.get(run.status)
        if run.status is RunStatus.DELIVERED and target.wants("run.recovered") and self._recovered(run):
            event = "run.recovered"
        if event is None or not target.wants(event):
            return ""
        details = {"attempts": run.attempts} if run.attempts else {}
        self.send(self.run_alert(event, run, reason, details), target)
        return target.describe()

    def _recovered(self, run: Run) -> bool:
        if self.history.raised(run.id, "run.retrying"):
            return True
        previous = self.history.previous_status(run.id, ENDED)
        return previous is not None and previous is not RunStatus.DELIVERED

    # -- building and sending --------------------------------------------------------------
    def run_alert(self, event: str, run: Run, reason: str, details: Mapping[str, object] | None = None) -> Alert:
        """The alert ``event`` about ``run``: its status, reason, issue counts and how to inspect it."""
        settings = self._settings()
        return Alert(
            event=event, account=run.account, run_id=run.id, status=run.status.value, reason_code=reason,
            reason_text=run.message or REASONS.get(reason, reason), at=timeutil.iso(),
            inspect=inspect_command(_config(settings), "runs", "show", run.id),
            counts=issue_counts(self.history.issues(run.id)), server=settings.server.public_host,
            details=details or {},
        )

    def send(self, alert: Alert, target: AlertSettings) -> None:
        """Queue ``alert`` for ``target``'s channels (never blocks)."""
        self.dispatcher.submit(alert, target)

    def settings(self) -> Settings:
        return self._settings()


def _config(settings: Settings) -> str | None:
    return str(settings.source.resolve()) if settings.source is not None else None


def retrying_since(history: History, run: Run) -> datetime | None:
    """When the run's current series of failed deliveries began: the start of its first failed attempt.

    ``run.attempts`` counts the attempts of the current series (an operator's retry starts a new
    one), and each attempt is one ``forward`` step.
    """
    forwards = [s for s in history.steps(run.id) if s["name"] == "forward"]
    if not run.attempts or len(forwards) < run.attempts:
        return None
    started = forwards[-run.attempts]["started_at"]
    return timeutil.parse_iso(started) if started else None


class Watch:
    """The daemon's timer work (module doc); ``clock`` gives the time (tests move it)."""

    def __init__(self, alerter: Alerter, accounts: AccountRecords, clock: Callable[[], datetime] = timeutil.now):
        self.alerter = alerter
        self.history = alerter.history
        self.accounts = accounts
        self.clock = clock

    def tick(self) -> builtins.list[Alert]:
        """Raise what is due now; returns the alerts handed to the dispatcher."""
        settings, now = self.alerter.settings(), self.clock()
        raised = self._deadlines(settings, now) + self._long_retries(settings, now)
        self._gauges()
        return raised

    def _deadlines(self, settings: Settings, now: datetime) -> builtins.list[Alert]:
        raised = []
        for state in account_states(settings, self.history, self.accounts, now):
            metrics.ACCOUNT_LATE.labels(state.account).set(1 if state.late else 0)
            if not state.late or state.missed_deadline is None:
                continue
            key = f"account.late:{state.account}:{state.missed_deadline}"
            if not self.history.raise_once(key, "account.late", state.account):
                continue
            log.warning("account_late", account=state.account, deadline=state.missed_deadline,
                        expect_upload=state.expect_upload, last_upload=state.last_upload, reason="deadline_missed")
            target = settings.alerts_for(state.account)
            if target.wants("account.late"):
                alert = self._late_alert(settings, state)
                self.alerter.send(alert, target)
                raised.append(alert)
        return raised

    def _late_alert(self, settings: Settings, state: AccountState) -> Alert:
        latest = self.history.list(account=state.account, limit=1)
        text = (f"no upload since {state.last_upload}" if state.last_upload else "no upload yet") + \
            f"; expected {state.expect_upload}, deadline {state.missed_deadline} passed"
        return Alert(
            event="account.late", account=state.account, run_id=latest[0].id if latest else None,
            status=latest[0].status.value if latest else None, reason_code="deadline_missed", reason_text=text,
            at=timeutil.iso(), inspect=inspect_command(_config(settings), "runs", "stats"),
            server=settings.server.public_host,
            details={"deadline": state.missed_deadline, "expect_upload": state.expect_upload,
                     "last_upload": state.last_upload, "last_delivery": state.last_delivery},
        )

    def _long_retries(self, settings: Settings, now: datetime) -> builtins.list[Alert]:
        raised = []
        for run in self.history.list(status=RunStatus.RETRYING.value):
            target = settings.alerts_for(run.account)
            since = retrying_since(self.history, run)
            if since is None or (now - since).total_seconds() < target.retrying_after_seconds:
                continue
            if not self.history.raise_once(f"run.retrying:{run.id}:{timeutil.iso(since)}", "run.retrying",
                                           run.account, run.id):
                continue
            log.warning("run_retrying_long", run_id=run.id, account=run.account, since=timeutil.iso(since),
                        attempts=run.attempts, reason="delivery_retrying")
            if target.wants("run.retrying"):
                alert = self.alerter.run_alert("run.retrying", run, "delivery_retrying",
                                               {"attempts": run.attempts, "retrying_since": timeutil.iso(since),
                                                "next_attempt_at": run.next_attempt_at})
                self.alerter.send(alert, target)
                raised.append(alert)
        return raised

    def _gauges(self) -> None:
        for account, seen in self.history.activity().items():
            if seen["last_upload"]:
                metrics.LAST_UPLOAD.labels(account).set(timeutil.parse_iso(seen["last_upload"]).timestamp())
            if seen["last_delivery"]:
                metrics.LAST_DELIVERY.labels(account).set(timeutil.parse_iso(seen["last_delivery"]).timestamp())
        by_account = self.history.stats()["by_account"]
        assert isinstance(by_account, dict)
        for account, counts in by_account.items():
            metrics.RUNS_HELD.labels(account).set(counts.get(RunStatus.HELD.value, 0))
