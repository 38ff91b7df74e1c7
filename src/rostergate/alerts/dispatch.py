"""The dispatcher: alerts go out in the background, are retried with back-off, and never block a run.

:meth:`Dispatcher.submit` only puts one job per channel (webhook, e-mail) into a
bounded in-memory queue and returns at once, from any thread. A few sender
threads take the jobs that are due, each try bounded by ``timeout_seconds``; a
try that may work later (:class:`~rostergate.errors.AlertError` ``retryable``) is
put back after ``retry_base_seconds``, twice as long each time, at most
``retry_max_seconds``, until ``max_attempts``. Every outcome is logged
(``alert_sent``, ``alert_retrying``, ``alert_failed``, ``alert_dropped`` when the
queue is full) and counted (``rostergate_alerts_total``). Nothing a sender raises
reaches the caller or stops the threads.

Pending alerts live in memory only: a daemon that stops gives the queue
``grace`` seconds (:meth:`Dispatcher.close`) and logs what it leaves unsent.
"""

from __future__ import annotations

import heapq
import itertools
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import structlog

from rostergate import metrics
from rostergate.alerts import mail, webhook
from rostergate.alerts.payload import Alert
from rostergate.alerts.settings import AlertSettings, DispatchSettings
from rostergate.errors import AlertError

log = structlog.get_logger("rostergate.alerts")
# A sender: sends ``alert`` on one channel as ``target`` says; raises AlertError.
Sender = Callable[[Alert, AlertSettings, str, float], None]
SENDER_THREADS = 2


def _send_webhook(alert: Alert, target: AlertSettings, delivery_id: str, timeout: float) -> None:
    assert target.webhook_url and target.webhook_secret_file
    webhook.post(target.webhook_url, alert, target.webhook_secret_file, delivery_id, timeout)


SENDERS: Mapping[str, Sender] = {"webhook": _send_webhook, "email": mail.send}


@dataclass
class _Job:
    alert: Alert
    target: AlertSettings
    channel: str
    delivery_id: str
    attempts: int = 0


class Dispatcher:
    """Sends alerts in background threads (module doc); ``senders`` and ``clock`` are for tests."""

    def __init__(self, settings: DispatchSettings, senders: Mapping[str, Sender] | None = None,
                 clock: Callable[[], float] = time.monotonic, threads: int = SENDER_THREADS):
        self.settings = settings
        self.senders = dict(SENDERS if senders is None else senders)
        self._clock = clock
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Job]] = []
        self._order = itertools.count()
        self._busy = 0
        self._closing = False
        self._threads = [threading.Thread(target=self._work, name=f"rostergate-alerts-{n}", daemon=True)
                         for n in range(threads)]
        for thread in self._threads:
            thread.start()

    @property
    def pending(self) -> int:
        """Jobs waiting or being sent."""
        with self._cond:
            return len(self._heap) + self._busy

    def submit(self, alert: Alert, target: AlertSettings) -> bool:
        """Queue ``alert`` for each of ``target``'s channels; never blocks. False when (some of) it was dropped."""
        kept = True
        delivery_id = secrets.token_hex(16)
        with self._cond:
            for channel in target.channels:
                if self._closing or len(self._heap) + self._busy >= self.settings.queue_size:
                    kept = False
                    metrics.ALERTS.labels(channel, "dropped").inc()
                    log.error("alert_dropped", alert=alert.event, account=alert.account, run_id=alert.run_id,
                              channel=channel, reason="stopping" if self._closing else "queue full",
                              queue_size=self.settings.queue_size)
                    continue
                self._push(self._clock(), _Job(alert, target, channel, delivery_id))
            self._cond.notify_all()
        return kept

    def close(self, grace: float = 5.0) -> int:
        """Stop taking alerts; wait up to ``grace`` seconds for those queued; returns how many were left unsent."""
        deadline = time.monotonic() + grace
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            while (self._heap or self._busy) and time.monotonic() < deadline:
                self._cond.wait(timeout=min(0.1, max(0.0, deadline - time.monotonic())))
            left = len(self._heap) + self._busy
            for _, _, job in self._heap:
                log.error("alert_unsent", alert=job.alert.event, account=job.alert.account, run_id=job.alert.run_id,
                          channel=job.channel, attempts=job.attempts, reason="the daemon stopped")
            self._heap.clear()
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()) + 0.5)
        return left

    # -- the sender threads --------------------------------------------------------------
    def _push(self, due: float, job: _Job) -> None:
        heapq.heappush(self._heap, (due, next(self._order), job))

    def _next(self) -> _Job | None:
        """The next due job (waiting for it), or None once closing with nothing due."""
        with self._cond:
            while True:
                if self._heap and self._heap[0][0] <= self._clock():
                    self._busy += 1
                    return heapq.heappop(self._heap)[2]
                if self._closing and not self._heap:
                    return None
                wait = self._heap[0][0] - self._clock() if self._heap else 1.0
                self._cond.wait(timeout=min(max(wait, 0.01), 1.0))

    def _work(self) -> None:
        while True:
            job = self._next()
            if job is None:
                return
            try:
                self._try(job)
            except Exception as exc:  # noqa: BLE001 - a sender's bug must not end the thread
                log.error("alert_failed", alert=job.alert.event, account=job.alert.account, channel=job.channel,
                          error=type(exc).__name__, attempts=job.attempts)
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()

    def _try(self, job: _Job) -> None:
        job.attempts += 1
        alert, settings = job.alert, self.settings
        fields = dict(alert=alert.event, account=alert.account, run_id=alert.run_id, channel=job.channel,
                      attempt=job.attempts)
        try:
            self.senders[job.channel](alert, job.target, job.delivery_id, settings.timeout_seconds)
        except AlertError as exc:
            if exc.retryable and job.attempts < settings.max_attempts and not self._closing:
                delay = min(settings.retry_base_seconds * 2 ** (job.attempts - 1), settings.retry_max_seconds)
                log.warning("alert_retrying", **fields, error=str(exc), retry_in_seconds=round(delay, 3))
                metrics.ALERTS.labels(job.channel, "retried").inc()
                with self._cond:
                    self._push(self._clock() + delay, job)
                return
            why = ("retrying cannot help" if not exc.retryable else
                   "the daemon is stopping" if self._closing else "no tries left")
            log.error("alert_failed", **fields, error=str(exc), why=why)
            metrics.ALERTS.labels(job.channel, "failed").inc()
            return
        log.info("alert_sent", **fields)
        metrics.ALERTS.labels(job.channel, "sent").inc()
