"""``rostergate serve``: the SFTP server, the intake and the pipeline in one process."""

from __future__ import annotations

import asyncio
import signal

import structlog

from rostergate import store
from rostergate.accounts import AccountStore
from rostergate.config import Settings
from rostergate.history import History
from rostergate.metrics import serve_metrics
from rostergate.intake import Intake
from rostergate.runs.pipeline import Pipeline
from rostergate.sftp.server import load_or_create_host_key, start_server
from rostergate.watch import InboxWatcher
from rostergate.runs.workers import WorkerPool

log = structlog.get_logger("rostergate.daemon")
# Imported when a worker starts, so a run's time limit does not pay for them.
WORKER_PRELOAD = ("rostergate.runs.stages", "rostergate.formats.validate.entry", "rostergate.formats.convert.entry")


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
    if settings.demo:
        outbox = settings.flow_for("demo").downstream.path  # type: ignore[union-attr]
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


async def serve(settings: Settings) -> None:
    """Run until SIGINT/SIGTERM."""
    data_dir = settings.data_dir
    conn = store.connect(data_dir)
    accounts = AccountStore(conn, data_dir)
    history = History(conn)
    demo_password = ensure_demo_account(accounts, settings)
    workers = WorkerPool(settings.server.workers, preload=WORKER_PRELOAD)
    # Runs of different accounts go side by side: at least as many as there are workers to keep busy.
    pipeline = Pipeline(settings, history, accounts, workers, concurrency=max(2, settings.server.workers.processes))
    intake = Intake(history, data_dir, wake=pipeline.wake)
    recovered = intake.recover({a.name: accounts.home(a.name) for a in accounts.list()})
    if recovered:
        log.info("uploads_recovered", count=len(recovered))
    if settings.server.metrics_listen:
        serve_metrics(settings.server.metrics_listen)
    host_key = load_or_create_host_key(settings.server.host_key)
    server = await start_server(
        settings.server.listen_host, settings.server.listen_port, settings.server.host_key, accounts,
        intake.upload_finished, settings=settings.server.sftp,
    )
    print(welcome(settings, host_key.get_fingerprint(), demo_password), flush=True)
    log.info("daemon_started", listen=f"{settings.server.listen_host}:{settings.server.listen_port}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    worker = asyncio.create_task(pipeline.run_forever())
    watchers = [
        asyncio.create_task(InboxWatcher(flow.watch, flow.account, intake, flow.watch_settle_seconds).run(stop))
        for flow in settings.flows if flow.watch is not None
    ]
    await stop.wait()
    for watcher in watchers:
        watcher.cancel()
    log.info("daemon_stopping")
    server.close()
    worker.cancel()
    await pipeline.stop()  # runs in progress resume on the next start
    await workers.close()  # no worker outlives the daemon, not even one in the middle of a run
    conn.close()
