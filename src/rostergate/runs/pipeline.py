"""The pipeline: takes runs from the history store and moves them through their stages to a status.

State lives in the history store: the pipeline claims the next runnable run
(``received``, or ``retrying`` whose time has come; one run at a time per
account), does the CPU work in a worker process, delivers with the flow's
:class:`~rostergate.forward.Forwarder` in a thread and records every step. Every
change of a run's status goes through :class:`~rostergate.runs.lifecycle.Lifecycle`
(the statuses and their allowed changes: :mod:`rostergate.runstatus`). A daemon
killed at any moment finds its runs where it left them: ``processing`` runs start
again, spooled uploads are never deleted before their run is final.

A worker lost during the CPU work (killed, crashed, out of memory, over its time
limit) costs the run one of its ``MAX_PREPARE_ATTEMPTS`` starts, counted in the
store before each start: it is tried once more in a fresh worker, then failed
with a report that says what happened. A graceful stop gives the start back.

A failed delivery is tried again after :func:`~rostergate.runs.lifecycle.retry_delay`
(doubling from ``retry_base_seconds``, at most ``retry_max_seconds``) until it
works, is final, or ``max_attempts`` are used up
(:func:`~rostergate.runs.lifecycle.after_failed_delivery`).
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path

import structlog
from structlog.typing import FilteringBoundLogger as Logger

from rostergate import forward, metrics, timeutil
from rostergate.accounts import AccountStore
from rostergate.config import Downstream, Flow, Settings
from rostergate.errors import DeliveryError, FinalError, WorkerFailure
from rostergate.forward import Forwarder, Receipt
from rostergate.history import History, Run
from rostergate.intake import SPOOL_DIR, UPLOAD_NAME
from rostergate.runs import safeguard
from rostergate.runs.lifecycle import Lifecycle, SettleHook, after_failed_delivery, prepared_before, retry_delay
from rostergate.runs.stages import OUTPUT_NAME, ROWS_NAME, Prepared, prepare
from rostergate.runs.workers import ExecutorWorkers, WorkerPool, Workers
from rostergate.runstatus import RunStatus

log = structlog.get_logger("rostergate.pipeline")
# The CLI changes runs (retry, approve) in the shared store without talking to the
# daemon; looking at the store this often picks such changes up.
POLL_SECONDS = 2.0
# A run's CPU work is started at most this often: the first time and one retry after a lost worker.
MAX_PREPARE_ATTEMPTS = 2


class Pipeline:
    """Processes runs from the history store until stopped.

    ``forwarder_for`` gives the forwarder of a flow's downstream (tests pass a
    recording fake); ``workers`` runs the CPU work (a :class:`WorkerPool`, or any
    executor: threads in tests); ``alerts`` is told of every run that settles (the
    daemon's :class:`~rostergate.alerts.notify.Alerter`).
    """

    def __init__(self, settings: Settings, history: History, accounts: AccountStore,
                 workers: WorkerPool | Executor, concurrency: int = 2,
                 forwarder_for: Callable[[Downstream], Forwarder] = forward.forwarder_for,
                 alerts: SettleHook | None = None):
        self.settings = settings
        self.history = history
        self.lifecycle = Lifecycle(history, accounts.home, alerts)
        self.workers: Workers = workers if isinstance(workers, WorkerPool) else ExecutorWorkers(workers)
        self.concurrency = concurrency
        self.forwarder_for = forwarder_for
        self._wakeup = asyncio.Event()
        self._busy: dict[str, asyncio.Task[None]] = {}  # account -> its running task
        self._holding = False
        self.heartbeat = time.monotonic()  # the last turn of run_forever's loop: /healthz's "pipeline_alive"

    def wake(self) -> None:
        """Tell the worker there may be new work (thread-safe via the loop when needed)."""
        self._wakeup.set()

    def resume_interrupted(self) -> list[str]:
        """Queue again the runs a stopped daemon left ``processing`` (once, before the daemon says it is ready)."""
        requeued = self.history.requeue_interrupted()
        if requeued:
            log.info("runs_resumed", count=len(requeued))
        return requeued

    def hold(self) -> None:
        """Start no further run (a stopping daemon); the runs in progress go on."""
        self._holding = True

    @property
    def idle(self) -> bool:
        """No run is in progress."""
        return not self._busy

    async def run_forever(self) -> None:
        while True:
            self.heartbeat = time.monotonic()
            self._start_claimable()
            timeout = self._seconds_until_next_retry()
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout=timeout)
            except TimeoutError:
                pass

    def _start_claimable(self) -> None:
        while not self._holding and len(self._busy) < self.concurrency:
            run = self.history.claim_next(set(self._busy))
            if run is None:
                return
            task = asyncio.create_task(self.process(run))
            self._busy[run.account] = task
            task.add_done_callback(functools.partial(self._finished, run.account))

    async def stop(self, timeout: float = 10.0) -> None:
        """Cancel the runs in progress and wait (bounded) for them to wind down; they resume on the next start."""
        tasks = list(self._busy.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    def _finished(self, account: str, _task: asyncio.Task[None]) -> None:
        self._busy.pop(account, None)
        self.wake()

    def _seconds_until_next_retry(self) -> float:
        upcoming = self.history.next_wakeup()
        if upcoming is None:
            return POLL_SECONDS
        delta = (timeutil.parse_iso(upcoming) - timeutil.now()).total_seconds()
        return min(max(delta, 0.2), POLL_SECONDS)

    # -- one run -----------------------------------------------------------------
    async def process(self, run: Run) -> None:
        """Take a claimed (``processing``) run to its next resting status: settled, held or retrying."""
        bound = log.bind(run_id=run.id, account=run.account)
        flow = self.settings.flow_for(run.account)
        try:
            if flow is None:
                self._settle(run, RunStatus.FAILED, "no flow is configured for this account; the operator must add one",
                             reason="no_flow")
                return
            output = Path(run.spool_path).parent / OUTPUT_NAME
            summary = ""
            if not (output.exists() and prepared_before(run)):
                checked = await self._prepare_and_check(run, flow, output, bound)
                if checked is None:
                    return
                summary = checked.summary
            await self._forward(run, flow.downstream, output, bound, summary)
        except Exception as exc:  # noqa: BLE001 - any failure of a run is recorded, and the pipeline goes on
            # An exception's text may quote roster values (a name in a KeyError), so the log
            # gets its type and where it was raised, never its message.
            bound.error("run_internal_error", error=type(exc).__name__, where=_raised_at(exc))
            current = self.history.get(run.id)
            if current is not None and current.status is RunStatus.PROCESSING:
                self._settle(run, RunStatus.FAILED, "internal error; the operator can retry this run",
                             reason="internal_error")

    async def _prepare_and_check(self, run: Run, flow: Flow, output: Path, bound: Logger) -> Prepared | None:
        """The CPU work (prepare, then the safeguard's diff) in a worker, tried again once if the worker is lost.

        Returns what was prepared when the run may be forwarded, or None when it was
        settled here (rejected, held, or failed after its last start).
        """
        attempts = run.prepare_attempts
        while True:
            if attempts >= MAX_PREPARE_ATTEMPTS:
                # Every start was cut short without an outcome: the daemon stopped each time.
                bound.error("run_interrupted_too_often", attempts=attempts)
                self._settle(run, RunStatus.FAILED, _processing_failed(
                    run.id, f"its processing was interrupted {attempts} times (the daemon stopped while it ran)",
                    "uploading it again starts a new run"), reason="interrupted")
                return None
            attempts += 1
            self.history.update(run.id, prepare_attempts=attempts)  # before the work: durable
            started = timeutil.iso_ms()
            try:
                prepared = await self._prepare(run, flow, bound)
                if prepared.outcome == "failed":  # the upload is not the one received
                    self._settle(run, RunStatus.FAILED, prepared.message, prepared.summary, reason="upload_changed")
                    return None
                if prepared.outcome != "ready":
                    self._settle(run, RunStatus.REJECTED, "the upload breaks the rules listed in the report",
                                 prepared.summary, reason="upload_invalid")
                    return None
                self.history.update(run.id, output_sha256=prepared.output_sha256)
                if self._hold_if_unsafe(run, flow, prepared, bound):
                    return None
                return prepared
            except asyncio.CancelledError:
                # The daemon is stopping: not the run's fault, so the start is given back.
                self.history.update(run.id, prepare_attempts=attempts - 1)
                raise
            except WorkerFailure as failure:
                metrics.WORKER_FAILURES.labels(failure.kind).inc()
                bound.warning("worker_lost", kind=failure.kind, signal=failure.signal, attempt=attempts)
                last = attempts >= MAX_PREPARE_ATTEMPTS
                self.history.add_step(run.id, "processing", "failed", started, timeutil.iso_ms(),
                                      f"attempt {attempts}: {failure.detail}"
                                      + ("" if last else "; trying once more in a new worker"))
                if last:
                    self._settle(run, RunStatus.FAILED, _processing_failed(
                        run.id, failure.detail + f" (tried {attempts} times)", _upload_again(failure)),
                        reason="worker_lost")
                    return None

    async def _prepare(self, run: Run, flow: Flow, bound: Logger) -> Prepared:
        run_dir = Path(self.settings.data_dir).resolve() / SPOOL_DIR / run.id
        if Path(run.spool_path).resolve() != run_dir / UPLOAD_NAME:
            raise ValueError("the run's upload is not in its spool folder")  # never work on another path
        # With safeguards on, the worker also compares with the last delivery (one call, no second wait
        # for a free worker); with them off, it compares nothing.
        baseline = safeguard.snapshot_path(self.settings.data_dir, run.account) if flow.safeguards.enabled else None
        prepared: Prepared = await self.workers.run(
            prepare, str(run_dir), run.spool_path, flow.input, flow.output, flow.profile, flow.mapping, flow.encoding,
            run.sha256, str(baseline) if baseline else None,
        )
        for step in prepared.steps:
            self.history.add_step(run.id, step.name, step.status, step.started_at, step.finished_at, step.message)
            bound.info("step_finished", step=step.name, status=step.status, seconds=step.seconds)
            metrics.STEP_SECONDS.labels(step.name).observe(step.seconds)
        self.history.replace_issues(run.id, prepared.issues)
        if prepared.format:
            self.history.update(run.id, input_format=prepared.format)
        if prepared.counts:  # numbers only; the JSON report of a run delivered after an approval reads them
            self.history.update(run.id, counts_json=json.dumps(prepared.counts))
        return prepared

    def _hold_if_unsafe(self, run: Run, flow: Flow, prepared: Prepared, bound: Logger) -> bool:
        """The safeguard step: judge the worker's diff against the last delivery; hold the run when too
        much would go. With the flow's safeguards off, no diff was made and the step says so."""
        if prepared.changes is None or prepared.compared is None:
            now = timeutil.iso_ms()
            self.history.add_step(run.id, "safeguard", "skipped", now, now,
                                  "safeguards are off for this flow ([flows.safeguards] enabled = false)")
            return False
        changes, (started, finished, seconds) = prepared.changes, prepared.compared
        metrics.STEP_SECONDS.labels("safeguard").observe(seconds)
        reasons = safeguard.reasons_to_hold(changes, flow.safeguards)
        self.history.update(run.id, diff_json=json.dumps(changes))
        if not reasons:
            message = "first delivery: nothing to compare with" if not changes["baseline"] else "within thresholds"
            self.history.add_step(run.id, "safeguard", "ok", started, finished, message)
            return False
        self.history.add_step(run.id, "safeguard", "held", started, finished, "; ".join(reasons))
        bound.warning("run_held", files=[r.split(" ", 1)[0] for r in reasons])
        self._settle(run, RunStatus.HELD, "held for an operator's approval: " + "; ".join(reasons), prepared.summary,
                     reason="safeguard")
        return True

    async def _forward(self, run: Run, downstream: Downstream, output: Path, bound: Logger, summary: str) -> None:
        """Deliver the prepared ZIP; ``delivered`` (and the safeguard baseline) only with a verified receipt."""
        attempts = run.attempts + 1
        forwarder = self.forwarder_for(downstream)
        # The SHA-256 recorded when the ZIP passed its checks (set during this run's processing).
        checked = self.history.get(run.id)
        expected = checked.output_sha256 if checked else None
        seq = self.history.start_step(run.id, "forward")
        clock = time.perf_counter()
        receipt: Receipt | None = None
        error: DeliveryError | None = None
        try:
            remote_name = forward.remote_name(downstream, run.account, run.id)
            interrupted = self.history.interrupted_deliveries(downstream.url, run.id)
            self.history.delivery_started(run.id, downstream.url, attempts, forwarder.written_path(remote_name))
            receipt = await asyncio.to_thread(forwarder.deliver, output, remote_name, expected,
                                              [remote for _, remote in interrupted])
        except DeliveryError as exc:
            error = exc
        seconds = round(time.perf_counter() - clock, 3)
        metrics.STEP_SECONDS.labels("forward").observe(seconds)
        bound.info("step_finished", step="forward", status="failed" if error else "ok", attempt=attempts,
                   seconds=seconds)
        if receipt is not None:
            self.history.delivery_finished(run.id, downstream.url, "delivered", receipt)
            self.history.mark_interrupted(downstream.url, [other for other, _ in interrupted if other != run.id])
            self.history.finish_step(run.id, seq, "ok", f"delivered as {remote_name}: {receipt.size} bytes, "
                                                        f"sha256 {receipt.sha256}, verified by {receipt.verified}")
            # The baseline changes only after a verified delivery: this is that point. The run is
            # delivered whatever happens here; a baseline that cannot be saved stays the previous one
            # (the next run is compared with an older delivery: more likely held, never less).
            note = ""
            rows = output.parent / ROWS_NAME
            try:
                await asyncio.to_thread(safeguard.remember_delivery, self.settings.data_dir, run.account, output,
                                        rows if rows.exists() else None)
            except OSError as exc:
                bound.error("baseline_not_saved", error=exc.strerror or type(exc).__name__)
                note = ("; the safeguard baseline could not be updated, so the next upload is compared with "
                        "the previous delivery")
            metrics.DELIVERED_BYTES.labels(run.account).inc(receipt.size)
            self._settle(run, RunStatus.DELIVERED, f"delivered as {remote_name}{note}", summary, attempts=attempts,
                         reason="delivered")
            return
        assert error is not None
        final = isinstance(error, FinalError)
        metrics.DELIVERY_FAILURES.labels(run.account, "final" if final else "retryable").inc()
        status = after_failed_delivery(error, attempts, downstream.max_attempts)
        self.history.finish_step(run.id, seq, "failed", f"attempt {attempts}: {error}")
        self.history.delivery_finished(run.id, downstream.url, status.value)
        if status is RunStatus.FAILED:
            message = str(error) if final else f"gave up after {attempts} attempts: {error}"
            self._settle(run, RunStatus.FAILED, message, summary, attempts=attempts,
                         reason="delivery_refused" if final else "delivery_gave_up")
            return
        delay = retry_delay(attempts, downstream.retry_base_seconds, downstream.retry_max_seconds)
        next_at = self.lifecycle.retry_later(run.id, attempts, str(error), delay)
        bound.warning("run_retrying", status=RunStatus.RETRYING.value, reason="delivery_retrying", attempt=attempts,
                      next_attempt_at=next_at)

    def _settle(self, run: Run, status: RunStatus, message: str, summary: str = "",
                attempts: int | None = None, reason: str = "") -> None:
        settled = self.lifecycle.settle(run.id, status, message, summary, reason=reason, attempts=attempts)
        # An operator alerts on the log too: failed at error, rejected and held at warning, with the
        # reason code (never the message: a downstream's answer is the report's, not the log's).
        fields: dict[str, object] = {"run_id": run.id, "account": run.account, "status": status.value,
                                     "reason": reason or status.value}
        if status is RunStatus.REJECTED:
            errors = [i.code for i in self.history.issues(run.id) if i.severity == "error"]
            fields.update(errors=len(errors), codes=sorted(set(errors)))
        if status is RunStatus.FAILED:
            log.error("run_finished", **fields)
        elif status in (RunStatus.REJECTED, RunStatus.HELD):
            log.warning("run_finished", **fields)
        else:
            log.info("run_finished", **fields)
        metrics.RUNS_FINISHED.labels(run.account, status.value).inc()
        metrics.RUNS_HELD.labels(run.account).set(len(self.history.list(account=run.account, status="held")))
        if status is RunStatus.DELIVERED and settled.finished_at:
            metrics.LAST_DELIVERY.labels(run.account).set(timeutil.parse_iso(settled.finished_at).timestamp())


def _processing_failed(run_id: str, cause: str, again: str) -> str:
    """The message of a run failed because its worker was lost: what happened, what helps, what does not."""
    return (f"the upload could not be processed: {cause}. This is not a rule your data breaks; {again}. "
            f"The operator can retry it with `rostergate runs retry {run_id}`")


def _upload_again(failure: WorkerFailure) -> str:
    """What uploading the same file again would do, as far as the failure tells."""
    if failure.kind in ("memory", "timeout") or failure.signal not in ("SIGKILL", None):
        return "uploading the same file again will fail the same way"
    return ("if the system stopped the worker for using too much memory, uploading the same file again will "
            "fail the same way")


def _raised_at(exc: BaseException) -> str:
    """``module.py:123 in function`` of the innermost frame that raised ``exc`` here."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "unknown"
    last = frames[-1]
    return f"{Path(last.filename).name}:{last.lineno} in {last.name}"
