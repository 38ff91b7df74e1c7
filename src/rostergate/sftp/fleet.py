"""Several SFTP server processes on one port (``[server] sftp_processes``), one intake in the daemon.

With ``sftp_processes = 1`` the daemon serves SFTP itself (:func:`rostergate.sftp.server.start_server`)
and nothing here runs. With N > 1, :class:`Fleet` (in the daemon) starts N server processes (spawn
context) that each listen on the same address with ``SO_REUSEPORT``, so the kernel spreads new
connections over them and every core decrypts and writes. Each server process:

* dies with the daemon (``PR_SET_PDEATHSIG``, :func:`rostergate.procs.die_with_parent`);
* hands every finished upload to the daemon over a Unix socket (``<data_dir>/run/sftp.sock``,
  owner-only) and waits for the answer, so the daemon's intake records it exactly as with one
  process, one account's uploads in the order they finished (the intake's per-account lock);
* shares bans, failed-login scores, connections per source and per-account session slots with
  the others through the state store (:mod:`rostergate.sftp.defender`,
  :mod:`rostergate.sftp.slots`); accounts are read from the store at every login anyway;
* reports its SFTP counters (logins, failed logins, bans, bytes) to the daemon over the same
  socket, every :data:`REPORT_SECONDS` when they changed and once more as it exits, so the
  daemon's ``/metrics`` serves the sums (:class:`rostergate.metrics.CounterRelay`);
* on ``SIGTERM`` stops listening and lets its uploads in flight finish (``stop_grace_seconds``),
  then exits.

The daemon replaces a server process that dies: its session slots and connection counts are
freed, and the uploads it had staged but not finished (moved out of the home into
``incoming/<account>/<pid>-<token>/``, not yet handed over or not yet answered) are finished
by the daemon with the recovery the start uses (:meth:`rostergate.sftp.files.ServerState.recover`),
once every hand-over the dead process had started is done, so none is handed over twice. The
counts a killed process made after its last report are lost. On a reload the daemon starts a
new set with the new settings before it stops the old one (which drains as on ``SIGTERM``):
sessions already connected keep the settings they started with.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import signal
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from multiprocessing.process import BaseProcess
from pathlib import Path

import structlog

from rostergate import logs, metrics, store
from rostergate.accounts import AccountStore
from rostergate.procs import die_with_parent
from rostergate.sftp.files import INCOMING_DIR, ServerState
from rostergate.sftp.server import start_server
from rostergate.sftp.settings import SftpSettings
from rostergate.sftp.slots import SessionSlots

log = structlog.get_logger("rostergate.sftp.fleet")

SOCKET_DIR = "run"
SOCKET_NAME = "sftp.sock"
START_SECONDS = 60.0  # a server process that is not listening by then is a failed start
SUPERVISE_SECONDS = 0.5
MAX_MESSAGE_BYTES = 64 * 1024
REPORT_SECONDS = 0.5  # how often a server process reports its counters, when they changed
UploadCallback = Callable[[str, Path], Awaitable[object]]


@dataclass(frozen=True)
class ServerProcessConfig:
    """What a server process needs (pickled to it at spawn)."""

    listen_host: str
    listen_port: int
    host_key: Path
    data_dir: Path
    sftp: SftpSettings
    stop_grace_seconds: float
    socket_path: Path


class ServerProcessFailed(Exception):
    """A server process ended before it listened; ``exitcode`` says how."""

    def __init__(self, exitcode: int | None):
        super().__init__(f"an SFTP server process ended before listening (exit code {exitcode})")
        self.exitcode = exitcode


# -- the daemon's side --------------------------------------------------------------------------
class Fleet:
    """The daemon's SFTP server processes: start, supervise, replace, drain (module doc)."""

    def __init__(self, count: int, config: ServerProcessConfig, on_upload: UploadCallback,
                 conn: sqlite3.Connection, staged: ServerState):
        """``staged`` finishes the uploads a dead server process left staged (its ``on_upload`` is the intake's)."""
        self.count = count
        self.config = config
        self._on_upload = on_upload
        self._slots = SessionSlots(conn)
        self._staged = staged
        self._relay = metrics.CounterRelay()
        self._link_of: dict[int, asyncio.Task[None]] = {}  # server process pid -> its link (from its "ready")
        self._recoveries: set[asyncio.Task[None]] = set()
        self._context = multiprocessing.get_context("spawn")
        self._live: list[BaseProcess] = []  # serving; replaced when they die
        self._retiring: list[BaseProcess] = []  # draining after a reload or on stop; not replaced
        self._ready: dict[int, asyncio.Future[None]] = {}
        self._handoffs = 0  # uploads handed over and not yet answered
        self._links: set[asyncio.Task[None]] = set()
        self._server: asyncio.AbstractServer | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> None:
        """Listen on the handoff socket, start every server process and wait until each listens;
        raises :class:`ServerProcessFailed` when one cannot (the port is taken, for one)."""
        path = self.config.socket_path
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.parent.chmod(0o700)
        path.unlink(missing_ok=True)
        self._server = await asyncio.start_unix_server(self._serve_link, path=str(path), limit=MAX_MESSAGE_BYTES)
        path.chmod(0o600)
        try:
            self._live = await self._start_many(self.count, self.config)
        except BaseException:
            self._kill_all()
            raise
        self._supervisor = asyncio.create_task(self._supervise())

    async def _start_many(self, count: int, config: ServerProcessConfig) -> list[BaseProcess]:
        """``count`` server processes, each listening; when one cannot start, the others are killed
        (tracked nowhere yet, they would hold the port unsupervised) and the failure raised."""
        started = [self._spawn(config) for _ in range(count)]
        try:
            await asyncio.gather(*(self._wait_ready(p) for p in started))
        except BaseException:
            for process in started:
                if process.is_alive():
                    process.kill()
            raise
        return started

    def _spawn(self, config: ServerProcessConfig) -> BaseProcess:
        process = self._context.Process(target=serve_process, args=(os.getpid(), config), name="rostergate-sftp",
                                        daemon=False)
        process.start()  # from the event loop's thread, which lives as long as the daemon (PDEATHSIG)
        assert process.pid is not None
        self._ready[process.pid] = asyncio.get_running_loop().create_future()
        return process

    async def _wait_ready(self, process: BaseProcess) -> None:
        assert process.pid is not None
        ready = self._ready[process.pid]
        deadline = time.monotonic() + START_SECONDS
        try:
            while not ready.done():
                if not process.is_alive():
                    raise ServerProcessFailed(process.exitcode)
                if time.monotonic() > deadline:
                    process.kill()
                    raise ServerProcessFailed(None)
                await asyncio.wait({ready}, timeout=0.05)
        finally:
            self._ready.pop(process.pid, None)
        log.info("sftp_process_started", sftp_pid=process.pid)

    async def _supervise(self) -> None:
        while True:
            await asyncio.sleep(SUPERVISE_SECONDS)
            for process in [p for p in self._retiring if not p.is_alive()]:
                self._retiring.remove(process)
                self._reaped(process, replaced=False)
            for process in [p for p in self._live if not p.is_alive()]:
                self._live.remove(process)
                self._reaped(process, replaced=not self._closing)
            if self._closing:
                continue
            for _ in range(self.count - len(self._live)):
                try:
                    self._live += await self._start_many(1, self.config)
                except ServerProcessFailed as exc:  # tried again at the next turn
                    log.error("sftp_process_start_failed", exitcode=exc.exitcode)

    def _reaped(self, process: BaseProcess, replaced: bool) -> None:
        process.join(0)
        pid = process.pid
        assert pid is not None
        freed = self._slots.forget_process(pid)
        self._relay.forget(pid)
        if replaced:
            log.error("sftp_process_lost", sftp_pid=pid, exitcode=process.exitcode, sessions_freed=freed,
                      replaced=True)
        else:
            log.info("sftp_process_stopped", sftp_pid=pid, exitcode=process.exitcode)
        link = self._link_of.pop(pid, None)
        if self._closing:
            return  # what it left staged is recovered at the next start
        # Listed now, before a new process could be given the same pid and stage its own uploads.
        tokens = self._staged.staged_by(pid)
        if tokens:
            task = asyncio.create_task(self._recover(pid, link, tokens))
            self._recoveries.add(task)
            task.add_done_callback(self._recoveries.discard)

    async def _recover(self, pid: int, link: asyncio.Task[None] | None, tokens: list[Path]) -> None:
        """Finish what process ``pid`` left staged, once the hand-overs it had sent are done (its link ends
        after answering them): one it handed over is in the spool, and only its folder is left to remove."""
        if link is not None:
            await asyncio.wait({link})
        count = self._staged.recover(tokens)
        log.warning("sftp_process_uploads_recovered", sftp_pid=pid, uploads=count)

    async def replace_settings(self, sftp: SftpSettings, stop_grace_seconds: float) -> None:
        """A reload: start a new set with ``sftp`` (its limits) and ``stop_grace_seconds``, then drain the
        old one; raises :class:`ServerProcessFailed` (the old set serving on) when the new set cannot start."""
        config = replace(self.config, sftp=sftp, stop_grace_seconds=stop_grace_seconds)
        fresh = await self._start_many(self.count, config)
        old, self._live, self.config = self._live, fresh, config
        for process in old:
            self._terminate(process)
        self._retiring += old

    # -- handoff ------------------------------------------------------------------------------
    async def _serve_link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One server process's link: a ``ready`` line, then one line per finished upload; each is answered
        once the intake has it. Requests are started in arrival order (the intake keeps that order)."""
        answers: set[asyncio.Task[None]] = set()
        link = asyncio.current_task()
        if link is not None:
            self._links.add(link)
            link.add_done_callback(self._links.discard)
        try:
            while line := await reader.readline():
                message = json.loads(line)
                if "ready" in message:
                    pid = int(message["ready"])
                    if link is not None:
                        self._link_of[pid] = link
                    ready = self._ready.get(pid)
                    if ready is not None and not ready.done():
                        ready.set_result(None)
                    continue
                if "metrics" in message:
                    self._relay.add(int(message["pid"]), message["metrics"])
                    continue
                task = asyncio.create_task(self._hand_over(message, writer))
                answers.add(task)
                task.add_done_callback(answers.discard)
        except (ConnectionError, ValueError, asyncio.LimitOverrunError) as exc:
            log.warning("sftp_link_broken", error=type(exc).__name__)
        except asyncio.CancelledError:  # the daemon stops: its server processes are gone
            pass
        finally:
            if answers:
                await asyncio.gather(*answers, return_exceptions=True)
            writer.close()

    async def _hand_over(self, message: dict[str, object], writer: asyncio.StreamWriter) -> None:
        self._handoffs += 1
        ok = False
        try:
            account, path = str(message["account"]), Path(str(message["path"]))
            incoming = (self.config.data_dir / INCOMING_DIR / account).resolve()
            if path.resolve().parent.parent != incoming:
                log.error("sftp_handoff_refused", account=account, reason="not a staged upload of the account")
            else:
                await self._on_upload(account, path)
                ok = True
        except Exception:  # noqa: BLE001 - the server process keeps the upload for the tenant to retry
            log.exception("intake_failed_for_sftp_process")
        finally:
            self._handoffs -= 1
        try:
            writer.write(json.dumps({"id": message.get("id"), "ok": ok}).encode() + b"\n")
            await writer.drain()
        except ConnectionError:
            pass

    # -- state and stop -----------------------------------------------------------------------
    def is_serving(self) -> bool:
        return not self._closing and any(p.is_alive() for p in self._live)

    def in_progress(self) -> int:
        """Server processes still running (draining their uploads), uploads being handed over, and
        recoveries of a dead process's uploads waiting for its hand-overs."""
        return sum(p.is_alive() for p in self._live + self._retiring) + self._handoffs + len(self._recoveries)

    def close(self) -> None:
        """Stop accepting: every server process gets ``SIGTERM`` and drains (module doc)."""
        self._closing = True
        for process in self._live:
            self._terminate(process)

    async def wait_closed(self) -> None:
        """After :meth:`close` and the drain: kill what still runs, stop the handoff socket."""
        if self._supervisor is not None:
            self._supervisor.cancel()
        self._kill_all()
        for process in self._live + self._retiring:
            await asyncio.to_thread(process.join, 5)
            self._reaped(process, replaced=False)
        self._live, self._retiring = [], []
        for link in list(self._links):
            link.cancel()
        if self._links:
            await asyncio.wait(self._links, timeout=5)
        if self._server is not None:
            self._server.close()
        self.config.socket_path.unlink(missing_ok=True)

    def _terminate(self, process: BaseProcess) -> None:
        if process.is_alive() and process.pid is not None:
            os.kill(process.pid, signal.SIGTERM)

    def _kill_all(self) -> None:
        for process in self._live + self._retiring:
            if process.is_alive():
                process.kill()


# -- a server process ---------------------------------------------------------------------------
class _Link:
    """The server process's end of the handoff socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self._reader, self._writer = reader, writer
        self._waiting: dict[int, asyncio.Future[bool]] = {}
        self._next = 0
        self._task = asyncio.create_task(self._answers())

    async def _answers(self) -> None:
        while line := await self._reader.readline():
            answer = json.loads(line)
            future = self._waiting.pop(int(answer["id"]), None)
            if future is not None and not future.done():
                future.set_result(bool(answer["ok"]))
        os._exit(1)  # the daemon is gone: nobody takes uploads any more

    async def send(self, message: dict[str, object]) -> None:
        self._writer.write(json.dumps(message).encode() + b"\n")
        await self._writer.drain()

    async def upload_finished(self, account: str, path: Path) -> None:
        """Hand ``path`` to the daemon's intake and wait until it has it (or left it, see ServerState.finish)."""
        self._next += 1
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting[self._next] = future
        await self.send({"id": self._next, "account": account, "path": str(path)})
        await future


def serve_process(parent_pid: int, config: ServerProcessConfig) -> None:
    """A server process's main (spawn target): serve until ``SIGTERM``, then drain and exit."""
    die_with_parent(parent_pid)
    logs.configure()
    structlog.contextvars.bind_contextvars(sftp_pid=os.getpid())  # every line says which process served
    asyncio.run(_serve(config))


async def _serve(config: ServerProcessConfig) -> None:
    reader, writer = await asyncio.open_unix_connection(str(config.socket_path), limit=MAX_MESSAGE_BYTES)
    link = _Link(reader, writer)
    conn = store.connect(config.data_dir)
    accounts = AccountStore(conn, config.data_dir)
    try:
        listener = await start_server(config.listen_host, config.listen_port, config.host_key, accounts,
                                      link.upload_finished, settings=config.sftp, reuse_port=True, recover=False)
    except OSError as exc:  # the daemon reports it (ServerProcessFailed); one line here says why
        log.error("sftp_process_cannot_listen", error=exc.strerror or str(exc))
        raise SystemExit(3) from None
    server, state = listener.acceptor, listener.state
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, lambda: None)  # a terminal's ^C is the daemon's to handle
    loop.add_signal_handler(signal.SIGHUP, lambda: None)  # the daemon reloads by replacing this process
    await link.send({"ready": os.getpid()})
    reporter = asyncio.create_task(_report_counters(link))
    await stop.wait()
    server.close()
    deadline = loop.time() + config.stop_grace_seconds
    while state.uploads_in_progress() and loop.time() < deadline:
        await asyncio.sleep(0.1)
    reporter.cancel()
    await _send_counters(link, None)
    log.info("sftp_process_drained", uploads_cut_short=state.uploads_in_progress())
    conn.close()


async def _report_counters(link: _Link) -> None:
    """Send this process's SFTP counters to the daemon every REPORT_SECONDS when they changed."""
    sent: metrics.Totals | None = None
    while True:
        await asyncio.sleep(REPORT_SECONDS)
        sent = await _send_counters(link, sent)


async def _send_counters(link: _Link, sent: metrics.Totals | None) -> metrics.Totals:
    """Send the running totals unless they are ``sent`` already; returns what the daemon has now."""
    totals = metrics.counter_totals()
    if totals != sent:
        try:
            await link.send({"metrics": totals, "pid": os.getpid()})
        except ConnectionError:  # the daemon is gone: so is its /metrics
            pass
    return totals
