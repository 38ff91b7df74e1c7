"""``rostergate serve``: the SFTP server, the intake and the pipeline in one process, run like OpenSSH's sshd.

What a service manager (systemd, ``Type=notify``) sees, through :mod:`rostergate.sdnotify`:

* **Start.** The store is opened (and migrated), runs a stopped daemon left in
  progress are queued again, uploads a crash left behind are recovered, the SFTP
  port listens: only then ``READY=1``. Anything that fails before (a state
  directory that cannot be made, a port in use, a corrupt host key) is raised as
  one of our errors, which the CLI prints as one line with a non-zero exit.
* **Watchdog.** With ``WatchdogSec=``, ``WATCHDOG=1`` goes out from the event loop
  twice per period, so a stalled loop gets the service restarted.
* **SIGHUP: reload.** ``RELOADING=1``; the configuration is read again and checked
  (:func:`rostergate.checks.run`, the listen address aside). With any problem the
  old configuration stays and every problem is logged. Otherwise the flows
  (downstreams, mappings, safeguards, watch folders), ``public_host``,
  ``[server.limits]`` and ``stop_grace_seconds`` apply at once, to runs and sessions that start
  from then on; connected sessions and uploads in flight are not touched. Keys read only at
  start are logged as needing a restart. Accounts need no reload: every login
  reads them from the store. With ``server.sftp_processes`` > 1 the SFTP server
  processes are replaced by a new set with the new settings; the old set drains
  (:mod:`rostergate.sftp.fleet`). Then ``READY=1`` again.
* **SIGTERM (or SIGINT): drain.** ``STOPPING=1``; the listener closes (no new
  connections), watch mode stops, no further run starts; uploads in progress
  and runs in progress get ``server.stop_grace_seconds`` to finish. Runs still
  going then are interrupted where the store says they stand (each logged) and
  resume on the next start; the exit status is 0. A second SIGTERM ends the wait
  at once.
* **Retention.** Every ``[retention] interval_seconds`` a pass of
  :func:`rostergate.runs.retention.purge` runs in a thread on its own store
  connection, as ``rostergate runs purge`` would; it never touches a run in
  progress or held, and a pass that fails is logged and tried again next time.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from collections.abc import Callable
from dataclasses import replace

import asyncssh
import structlog

from rostergate import checks, logs, store
from rostergate.accounts import AccountStore, dummy_hash
from rostergate.alerts.dispatch import Dispatcher
from rostergate.alerts.notify import Alerter, Watch
from rostergate.config import Settings
from rostergate.errors import ConfigError
from rostergate.history import Actor, History, os_user
from rostergate.intake import Intake
from rostergate.metrics import serve_metrics
from rostergate.runs import retention
from rostergate.runs.pipeline import Pipeline
from rostergate.runs.workers import WorkerPool
from rostergate.sdnotify import Notifier
from rostergate.sftp.files import ServerState
from rostergate.sftp.fleet import SOCKET_DIR, SOCKET_NAME, Fleet, ServerProcessConfig, ServerProcessFailed
from rostergate.sftp.server import load_or_create_host_key, start_server
from rostergate.sftp.slots import SessionSlots
from rostergate.watch import InboxWatcher

log = structlog.get_logger("rostergate.daemon")
# Imported when a worker starts, so a run's time limit does not pay for them.
# imported in every worker as it starts, then a tiny district run through prepare(): the first
# upload after a start pays neither the imports nor the first use of the format code
WORKER_PRELOAD = ("rostergate.runs.stages", "rostergate.formats.validate.entry", "rostergate.formats.convert.entry",
                  "rostergate.runs.warmup:warm_up")
DRAIN_POLL_SECONDS = 0.2
# /healthz calls the pipeline dead when its loop (which turns at least every POLL_SECONDS) has not
# turned for this long: the event loop is stuck, or the pipeline's task ended.
PIPELINE_STALE_SECONDS = 30.0
# On stop, alerts still queued get this long to go out.
ALERT_GRACE_SECONDS = 5.0


def ensure_demo_account(accounts: AccountStore, settings: Settings) -> str | None:
    """On embedded defaults, create the ``demo`` account once; returns its password when just created."""
    if not settings.demo or accounts.get("demo"):
        return None
    _, password = accounts.create("demo")
    return password


def welcome(settings: Settings, fingerprint: str, demo_password: str | None) -> str:
    server = settings.server
    lines = [
        f"rostergate listening on {server.listen_host}:{server.listen_port}; host key {fingerprint}",
        f"state and history under {server.data_dir.resolve()}",
    ]
    demo_flow = settings.flow_for("demo") if settings.demo else None  # the embedded defaults always have it
    if demo_flow is not None:
        outbox = demo_flow.downstream.path
        lines += [
            "Embedded defaults: account 'demo' uploads are validated, converted to Apple School Manager",
            f"format and delivered into the local folder {outbox}.",
        ]
        if demo_password:
            lines.append(f"Created account 'demo' with password {demo_password} (shown only now).")
        else:
            lines.append("Account 'demo' exists; 'rostergate accounts regenerate-password demo' gives a new password.")
        lines.append(
            f"Try: sftp -P {server.listen_port} demo@{server.listen_host}  then  put your-roster.zip"
        )
    return "\n".join(lines)


# Keys read once at start: a reload that changes them says so and keeps the running values.
def _restart_keys(old: Settings, new: Settings) -> list[str]:
    a, b = old.server, new.server
    pairs: list[tuple[str, object, object]] = [
        ("server.listen", (a.listen_host, a.listen_port), (b.listen_host, b.listen_port)),
        ("server.host_key", a.host_key, b.host_key),
        ("server.data_dir", a.data_dir, b.data_dir),
        ("server.metrics_listen", a.metrics_listen, b.metrics_listen),
        ("server.workers", a.workers, b.workers),
        ("server.sftp_processes", a.sftp_processes, b.sftp_processes),
        ("server.algorithms", a.sftp.algorithms, b.sftp.algorithms),
        ("server.defender", a.sftp.defender, b.sftp.defender),
        ("alerts (the dispatcher's keys)", old.dispatch, new.dispatch),
    ]
    return [key for key, before, after in pairs if before != after]


def _watched(settings: Settings) -> set[tuple[str, str, float]]:
    return {(f.account, str(f.watch), f.watch_settle_seconds) for f in settings.flows if f.watch is not None}


class Daemon:
    """One ``serve``: its parts, its signals, and its lifecycle (module doc)."""

    def __init__(self, settings: Settings, reload: Callable[[], Settings], notifier: Notifier):
        self.settings = settings
        self._reload_settings = reload
        self.notifier = notifier
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        self._hup = asyncio.Event()
        self._watch_stop = asyncio.Event()
        self._watchers: list[asyncio.Task[None]] = []
        self._sftp: asyncssh.SSHAcceptor | Fleet | None = None  # the SFTP listener once it listens (for /healthz)
        self._pipeline_task: asyncio.Task[None] | None = None
        self.fleet: Fleet | None = None  # the SFTP server processes, when server.sftp_processes > 1

    # -- signals -------------------------------------------------------------------------
    def _on_stop(self, name: str) -> None:
        if self._stop.is_set():
            log.warning("stop_forced", signal=name)
            self._force.set()
        else:
            log.info("stop_requested", signal=name)
            self._stop.set()

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop, sig.name)
        loop.add_signal_handler(signal.SIGHUP, self._hup.set)

    # -- start ---------------------------------------------------------------------------
    async def run(self) -> None:
        data_dir = self.settings.data_dir
        try:
            conn = store.connect(data_dir)
        except OSError as exc:
            raise ConfigError([f"server.data_dir: cannot create or open {data_dir}: {exc.strerror or exc}"]) from None
        try:
            await self._serve(conn)
        finally:
            conn.close()

    async def _serve(self, conn: sqlite3.Connection) -> None:
        settings = self.settings
        server_settings = settings.server
        data_dir = settings.data_dir
        self.accounts = accounts = AccountStore(conn, data_dir)
        history = History(conn)
        algorithms = checks.sftp_algorithms(server_settings.sftp)
        if algorithms:
            raise ConfigError(algorithms)
        dummy_hash()  # unknown users cost a login as much as known ones, from the first one on
        demo_password = ensure_demo_account(accounts, settings)
        workers = WorkerPool(server_settings.workers, preload=WORKER_PRELOAD)
        dispatcher = Dispatcher(settings.dispatch)
        self.alerter = alerter = Alerter(lambda: self.settings, history, dispatcher)
        # Runs of different accounts go side by side: twice as many as there are workers, so that
        # while some runs deliver (network, in a thread) others keep every worker busy.
        self.pipeline = pipeline = Pipeline(settings, history, accounts, workers,
                                            concurrency=2 * server_settings.workers.processes, alerts=alerter)
        metrics_server = None
        intake_conn = store.connect(data_dir)  # the intake records from threads: a connection of its own
        try:
            intake = Intake(History(intake_conn), data_dir, wake=pipeline.wake)
            self.intake = intake
            recovered = intake.recover({a.name: accounts.home(a.name) for a in accounts.list()})
            if recovered:
                log.info("uploads_recovered", count=len(recovered))
            pipeline.resume_interrupted()
            if server_settings.metrics_listen:
                host, _, port = server_settings.metrics_listen.rpartition(":")
                try:
                    metrics_server = serve_metrics(server_settings.metrics_listen, self.health)
                except OSError as exc:
                    raise ConfigError([checks.cannot_listen("server.metrics_listen", host, int(port), exc)]) from None
            host_key = load_or_create_host_key(server_settings.host_key)
            SessionSlots(conn).clear()  # no server process serves yet: sessions in the store are a stopped one's
            try:
                server = await self._start_sftp(conn, intake)
            except OSError as exc:
                raise ConfigError([checks.cannot_listen(
                    "server.listen", server_settings.listen_host, server_settings.listen_port, exc)]) from None
            self._sftp = server
            loop = asyncio.get_running_loop()
            self._install_signals(loop)
            self._pipeline_task = asyncio.create_task(pipeline.run_forever())
            watch = Watch(alerter, accounts)
            background = [asyncio.create_task(workers.warm()), self._pipeline_task,
                          asyncio.create_task(self._reloader()),
                          asyncio.create_task(self._watch(watch, settings.dispatch.check_interval_seconds)),
                          asyncio.create_task(self._retention())]
            if self.notifier.watchdog_seconds:
                background.append(asyncio.create_task(self._watchdog(self.notifier.watchdog_seconds)))
            self._start_watchers(settings)
            self._banner(welcome(settings, host_key.get_fingerprint(), demo_password), demo_password)
            listen = f"{server_settings.listen_host}:{server_settings.listen_port}"
            log.info("daemon_started", listen=listen)
            self.notifier.ready(f"listening on {listen}")
            await self._stop.wait()
            await self._drain_and_stop(server, history, background)
        finally:
            await workers.close()  # no worker outlives the daemon, not even one in the middle of a run
            intake_conn.close()
            unsent = await asyncio.to_thread(dispatcher.close, ALERT_GRACE_SECONDS)
            if unsent:
                log.error("alerts_unsent_at_stop", count=unsent)
            if metrics_server is not None:
                metrics_server.shutdown()
                metrics_server.server_close()

    async def _start_sftp(self, conn: sqlite3.Connection, intake: Intake) -> asyncssh.SSHAcceptor | Fleet:
        """The SFTP listener: in this process, or ``server.sftp_processes`` server processes
        (:mod:`rostergate.sftp.fleet`); raises OSError when the port cannot be had."""
        server_settings = self.settings.server
        if server_settings.sftp_processes == 1:
            listener = await start_server(
                server_settings.listen_host, server_settings.listen_port, server_settings.host_key, self.accounts,
                intake.upload_finished, settings=server_settings.sftp,
            )
            self.state = listener.state  # the sessions' shared registries
            self.fleet = None
            return listener.acceptor
        # Uploads a crash left staged are finished here, once, before any server process serves.
        self.state = ServerState(server_settings.sftp, self.settings.data_dir, self.accounts.homes,
                                 intake.upload_finished)
        self.state.recover()
        data_dir = self.settings.data_dir
        config = ServerProcessConfig(
            server_settings.listen_host, server_settings.listen_port, server_settings.host_key, data_dir,
            server_settings.sftp, server_settings.stop_grace_seconds, data_dir / SOCKET_DIR / SOCKET_NAME)
        self.fleet = fleet = Fleet(server_settings.sftp_processes, config, intake.upload_finished, conn, self.state)
        try:
            await fleet.start()
        except ServerProcessFailed as exc:
            await fleet.wait_closed()
            raise OSError(f"an SFTP server process could not listen (exit code {exc.exitcode})") from None
        return fleet

    def _banner(self, text: str, demo_password: str | None) -> None:
        """The welcome text: as it is on a terminal; one JSON log line otherwise (without a demo password,
        which goes to stdout only: a log is no place for it)."""
        if not logs.is_json():
            print(text, flush=True)
            return
        lines = [line for line in text.splitlines() if not (demo_password and demo_password in line)]
        log.info("daemon_banner", lines=lines)
        if demo_password:
            print(f"Created account 'demo' with password {demo_password} (shown only now).", flush=True)

    # -- health and the timer ----------------------------------------------------------------
    def health(self) -> dict[str, bool]:
        """``/healthz``'s checks (called from the metrics thread: reads only)."""
        sftp = self._sftp
        task = self._pipeline_task
        beat = time.monotonic() - self.pipeline.heartbeat if hasattr(self, "pipeline") else float("inf")
        return {
            "sftp_listening": bool(sftp is not None and sftp.is_serving() and not self._stop.is_set()),
            "pipeline_alive": bool(task is not None and not task.done() and beat < PIPELINE_STALE_SECONDS),
        }

    async def _watch(self, watch: Watch, interval: float) -> None:
        """Deadlines, long retries and the store's gauges, every ``interval`` seconds; a failure is logged."""
        while True:
            try:
                watch.tick()  # on the loop: the store's connection is the loop's (quick, indexed queries)
            except Exception as exc:  # noqa: BLE001 - the watch must outlive any one failure
                log.error("watch_failed", error=type(exc).__name__)
            await asyncio.sleep(interval)

    # -- retention -------------------------------------------------------------------------
    async def _retention(self) -> None:
        while True:
            await asyncio.sleep(self.settings.retention_interval_seconds)
            settings = self.settings  # as reloaded
            if not settings.retention_configured:
                continue
            try:
                result = await asyncio.to_thread(_retention_pass, settings)
            except Exception as exc:  # noqa: BLE001 - a failed pass is logged; the next one tries again
                log.error("retention_failed", error=type(exc).__name__, detail=getattr(exc, "strerror", None))
                continue
            for refused in result.refused:
                log.warning("retention_refused", run_id=refused.run_id, account=refused.account, reason=refused.reason)
            if result.removals:
                log.info("retention_purged", **result.totals)

    # -- watchdog and watch mode -----------------------------------------------------------
    async def _watchdog(self, period: float) -> None:
        while True:
            self.notifier.watchdog()
            await asyncio.sleep(period / 2)

    def _start_watchers(self, settings: Settings) -> None:
        self._watch_stop = stop = asyncio.Event()
        self._watchers = [
            asyncio.create_task(
                InboxWatcher(flow.watch, flow.account, self.intake, flow.watch_settle_seconds).run(stop))
            for flow in settings.flows if flow.watch is not None
        ]

    def _stop_watchers(self) -> None:
        self._watch_stop.set()
        for watcher in self._watchers:
            watcher.cancel()
        self._watchers = []

    # -- reload ------------------------------------------------------------------------
    async def _reloader(self) -> None:
        while True:
            await self._hup.wait()
            self._hup.clear()
            if self._stop.is_set():
                return
            await self.reload()

    def _read_and_check(self) -> tuple[Settings | None, list[str]]:
        try:
            new = self._reload_settings()
        except ConfigError as exc:
            return None, exc.problems
        return new, checks.run(new, listen=False)

    async def reload(self) -> bool:
        """Read the configuration again and apply it, or keep the running one; True when applied."""
        self.notifier.reloading()
        log.info("reload_requested")
        new, problems = await asyncio.to_thread(self._read_and_check)
        if new is None or problems:
            log.error("reload_refused", problems=problems, kept=str(self.settings.source or "embedded defaults"))
            self.notifier.ready("running; the last reload was refused (see the log)")
            return False
        restart = _restart_keys(self.settings, new)
        old = self.settings
        sftp = replace(new.server.sftp, algorithms=old.server.sftp.algorithms, defender=old.server.sftp.defender)
        server = replace(old.server, public_host=new.server.public_host, sftp=sftp,
                         stop_grace_seconds=new.server.stop_grace_seconds)
        applied = replace(new, server=server, dispatch=old.dispatch)
        self.settings = self.pipeline.settings = applied
        self.state.settings = sftp
        if self.fleet is not None:  # server processes take new settings by being replaced (rostergate.sftp.fleet)
            try:
                await self.fleet.replace_settings(sftp, new.server.stop_grace_seconds)
            except ServerProcessFailed as exc:  # the processes already serving go on, with the settings they have
                log.error("reload_sftp_processes_failed", exitcode=exc.exitcode)
        if _watched(applied) != _watched(old):
            self._stop_watchers()
            self._start_watchers(applied)
        if restart:
            log.warning("reload_needs_restart", keys=restart)
        # read on the loop, whose connection this is (a thread reading it while the loop writes is what
        # makes SQLite answer "database is locked": see Intake); the accounts are a few hundred rows
        log.info("reloaded", flows=len(applied.flows), accounts=len(self.accounts.list()))
        self.notifier.ready(f"reloaded: {len(applied.flows)} flow(s)")
        return True

    # -- stop ------------------------------------------------------------------------------
    def _uploads_in_progress(self) -> int:
        """Files open for writing, and finished uploads still on their way to a run (with server processes:
        those still draining, and their uploads being handed over)."""
        fleet = self.fleet.in_progress() if self.fleet is not None else 0
        return self.state.uploads_in_progress() + fleet

    async def _drain_and_stop(self, server: asyncssh.SSHAcceptor | Fleet, history: History,
                              background: list[asyncio.Task[None]]) -> None:
        grace = self.settings.server.stop_grace_seconds
        self.notifier.stopping(grace)
        server.close()  # no new connections; connected sessions go on
        self._stop_watchers()
        self.pipeline.hold()
        uploads, busy = self._uploads_in_progress(), not self.pipeline.idle
        log.info("daemon_stopping", grace_seconds=grace, uploads_in_progress=uploads, runs_in_progress=busy)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while (self._uploads_in_progress() or not self.pipeline.idle) and not self._force.is_set():
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                await asyncio.wait_for(self._force.wait(), timeout=min(DRAIN_POLL_SECONDS, left))
            except TimeoutError:
                pass
        unfinished = self._uploads_in_progress()
        if self.fleet is not None:
            await self.fleet.wait_closed()  # a server process still draining now is killed
        for task in background:
            task.cancel()
        await self.pipeline.stop()  # runs still going: their state is in the store; they resume on the next start
        for run in history.list(status="processing"):
            log.info("run_interrupted", run_id=run.id, account=run.account, status=run.status,
                     resumes="on the next start")
        queued = len(history.list(status="received"))
        log.info("daemon_stopped", uploads_cut_short=unfinished, runs_queued_for_next_start=queued)


def _retention_pass(settings: Settings) -> retention.PurgeResult:
    """One retention pass on a connection of its own (it runs in a thread beside the event loop's)."""
    conn = store.connect(settings.data_dir)
    try:
        return retention.purge(settings, History(conn), by=Actor("rostergate serve (retention)", os_user()))
    finally:
        conn.close()


async def serve(settings: Settings, reload: Callable[[], Settings] | None = None,
                notifier: Notifier | None = None) -> None:
    """Run until SIGTERM/SIGINT (module doc); ``reload`` reads the configuration again on SIGHUP."""
    daemon = Daemon(settings, reload or (lambda: settings), notifier or Notifier())
    try:
        await daemon.run()
    finally:
        daemon.notifier.close()
