"""The run state machine and its worker.

State lives in the history store: the worker claims the next runnable run
(``received``, or ``retrying`` whose time has come; one run at a time per
account), does the CPU work in a process pool, delivers in a thread and records
every step. A daemon killed at any moment finds its runs where it left them:
``processing`` runs start again, spooled uploads are never deleted before their
run is final.

    received ──► processing ──► delivered
                    │  ├──────► rejected   (the upload broke a rule)
                    │  └──────► retrying ──► processing … ──► failed
                    └─────────► failed     (cannot deliver / internal error)
"""

from __future__ import annotations

import asyncio
import json
import time
import traceback
from concurrent.futures import Executor
from datetime import timedelta
from pathlib import Path

import structlog

from rostergate import forward, metrics, safeguard, timeutil
from rostergate.accounts import AccountStore
from rostergate.config import Flow, Settings
from rostergate.history import History, Run
from rostergate.prepare import OUTPUT_NAME, Prepared, prepare
from rostergate.reports import write_report

log = structlog.get_logger("rostergate.pipeline")
# The CLI changes runs (retry, approve) in the shared store without talking to the
# daemon; looking at the store this often picks such changes up.
POLL_SECONDS = 2.0


class Pipeline:
    """Processes runs from the history store until stopped."""

    def __init__(self, settings: Settings, history: History, accounts: AccountStore, executor: Executor,
                 concurrency: int = 2):
        self.settings = settings
        self.history = history
        self.accounts = accounts
        self.executor = executor
        self.concurrency = concurrency
        self._wakeup = asyncio.Event()
        self._busy: dict[str, asyncio.Task] = {}  # account -> its running task

    def wake(self) -> None:
        """Tell the worker there may be new work (thread-safe via the loop when needed)."""
        self._wakeup.set()

    async def run_forever(self) -> None:
        requeued = self.history.requeue_interrupted()
        if requeued:
            log.info("runs_resumed", count=len(requeued))
        while True:
            self._start_claimable()
            timeout = self._seconds_until_next_retry()
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout=timeout)
            except asyncio.TimeoutError:
                pass

    def _start_claimable(self) -> None:
        while len(self._busy) < self.concurrency:
            run = self.history.claim_next(set(self._busy))
            if run is None:
                return
            task = asyncio.create_task(self._process(run))
            self._busy[run.account] = task
            task.add_done_callback(lambda _t, account=run.account: self._finished(account))

    def _finished(self, account: str) -> None:
        self._busy.pop(account, None)
        self.wake()

    def _seconds_until_next_retry(self) -> float:
        upcoming = self.history.next_wakeup()
        if upcoming is None:
            return POLL_SECONDS
        delta = (timeutil.parse_iso(upcoming) - timeutil.now()).total_seconds()
        return min(max(delta, 0.2), POLL_SECONDS)

    # -- one run -----------------------------------------------------------------
    async def _process(self, run: Run) -> None:
        bound = log.bind(run_id=run.id, account=run.account)
        flow = self.settings.flow_for(run.account)
        try:
            if flow is None or flow.downstream is None:
                self._finish(run, "failed", "no flow is configured for this account; the operator must add one")
                return
            output = Path(run.spool_path).parent / OUTPUT_NAME
            summary = ""
            if output.exists() and (run.attempts or run.approved_at):
                pass  # a delivery retry or an approved held run: prepared and checked before
            else:
                prepared = await self._prepare(run, flow, bound)
                summary = prepared.summary
                if prepared.outcome != "ready":
                    self._finish(run, "rejected", "the upload breaks the rules listed in the report", summary)
                    return
                if await self._hold_if_unsafe(run, flow, output, bound, summary):
                    return
            await self._forward(run, flow, output, bound, summary)
        except Exception as exc:
            # An exception's text may quote roster values (a name in a KeyError), so the log
            # gets its type and where it was raised, never its message.
            bound.error("run_internal_error", error=type(exc).__name__, where=_raised_at(exc))
            self._finish(run, "failed", "internal error; the operator can retry this run")

    async def _prepare(self, run: Run, flow: Flow, bound) -> Prepared:
        loop = asyncio.get_running_loop()
        run_dir = str(Path(run.spool_path).parent)
        prepared: Prepared = await loop.run_in_executor(
            self.executor, prepare, run_dir, run.spool_path, flow.input, flow.output, flow.profile, flow.mapping,
            flow.encoding,
        )
        for step in prepared.steps:
            self.history.add_step(run.id, step.name, step.status, step.started_at, step.finished_at, step.message)
            bound.info("step_finished", step=step.name, status=step.status, seconds=step.seconds)
            metrics.STEP_SECONDS.labels(step.name).observe(step.seconds)
        self.history.replace_issues(run.id, prepared.issues)
        if prepared.format:
            self.history.set_status(run.id, "processing", input_format=prepared.format)
        return prepared

    async def _hold_if_unsafe(self, run: Run, flow: Flow, output: Path, bound, summary: str) -> bool:
        """The safeguard step: diff against the last delivery; hold the run when too much would go."""
        seq = self.history.start_step(run.id, "safeguard")
        previous = safeguard.snapshot_path(self.settings.data_dir, run.account)
        loop = asyncio.get_running_loop()
        changes = await loop.run_in_executor(self.executor, safeguard.diff, previous, output)
        reasons = safeguard.reasons_to_hold(changes, flow.safeguards or safeguard.Thresholds())
        self.history.set_status(run.id, "processing", diff_json=json.dumps(changes))
        if not reasons:
            message = "first delivery: nothing to compare with" if not changes["baseline"] else "within thresholds"
            self.history.finish_step(run.id, seq, "ok", message)
            return False
        self.history.finish_step(run.id, seq, "held", "; ".join(reasons))
        bound.warning("run_held", files=[r.split(" ", 1)[0] for r in reasons])
        self._finish(run, "held", "held for an operator's approval: " + "; ".join(reasons), summary)
        return True

    async def _forward(self, run: Run, flow: Flow, output: Path, bound, summary: str) -> None:
        downstream = flow.downstream
        assert downstream is not None
        attempts = run.attempts + 1
        remote_name = downstream.remote_name.format(account=run.account, run_id=run.id)
        seq = self.history.start_step(run.id, "forward")
        clock = time.perf_counter()
        try:
            await asyncio.to_thread(forward.deliver, output, downstream, remote_name)
            error = None
        except forward.DeliveryError as exc:
            error = exc
        seconds = round(time.perf_counter() - clock, 3)
        metrics.STEP_SECONDS.labels("forward").observe(seconds)
        bound.info("step_finished", step="forward", status="failed" if error else "ok", attempt=attempts,
                   seconds=seconds)
        if error is None:
            self.history.finish_step(run.id, seq, "ok", f"delivered as {remote_name}")
            await asyncio.to_thread(safeguard.remember_delivery, self.settings.data_dir, run.account, output)
            self._finish(run, "delivered", f"delivered as {remote_name}", summary, attempts=attempts)
            return
        final = isinstance(error, forward.FinalError)
        metrics.DELIVERY_FAILURES.labels(run.account, "final" if final else "retryable").inc()
        self.history.finish_step(run.id, seq, "failed", f"attempt {attempts}: {error}")
        if final or attempts >= downstream.max_attempts:
            message = str(error) if final else f"gave up after {attempts} attempts: {error}"
            self._finish(run, "failed", message, summary, attempts=attempts)
            return
        delay = min(downstream.retry_base_seconds * (2 ** (attempts - 1)), downstream.retry_max_seconds)
        next_at = timeutil.iso(timeutil.now() + timedelta(seconds=delay))
        self.history.set_status(run.id, "retrying", f"attempt {attempts} failed: {error}; next try at {next_at}",
                                attempts=attempts, next_attempt_at=next_at)

    def _finish(self, run: Run, status: str, message: str, summary: str = "", **columns: object) -> None:
        self.history.set_status(run.id, status, message, **columns)
        finished = self.history.get(run.id)
        assert finished is not None
        log.info("run_finished", run_id=run.id, account=run.account, status=status)
        metrics.RUNS_FINISHED.labels(run.account, status).inc()
        home = self.accounts.home(run.account)
        if home.exists():
            write_report(home, finished, self.history.steps(run.id), self.history.issues(run.id), summary)


def _raised_at(exc: BaseException) -> str:
    """``module.py:123 in function`` of the innermost frame that raised ``exc`` here."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "unknown"
    last = frames[-1]
    return f"{Path(last.filename).name}:{last.lineno} in {last.name}"
