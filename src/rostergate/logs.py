"""structlog set-up: JSON lines on stderr (readable console output on a TTY).

stdout carries only a command's own output (``--json`` documents, tables), so a
log line can never corrupt what a script parses; journald reads both streams.

One pipeline of same-signature processors; context is bound once per run
(``run_id``, ``account``). Student data never reaches a log line: callers log
counts, codes and ids of runs only, and :func:`drop_secrets` removes any key
that looks like a secret as a last line of defence.

In JSON mode (stderr is not a terminal, or ``json=True``) *every* line is one JSON
object: the standard library's loggers (asyncssh, paramiko, asyncio's "exception
was never retrieved"), Python warnings, and exceptions nobody caught, in any
thread, go through the same renderer, a traceback as the ``exception`` field.
``--log-level`` (:data:`LEVELS`) sets the threshold for all of them.
"""

from __future__ import annotations

import logging
import sys
import threading
from types import TracebackType
from typing import TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from rostergate.printable import printable

SECRET_KEYS = frozenset({"password", "passphrase", "secret", "token", "private_key", "key_data"})
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_state = {"json": False}
_log = structlog.get_logger("rostergate")


def drop_secrets(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
    """Remove values of keys that name a secret (``password``, ``token``, ...)."""
    for key in list(event):
        if key.lower() in SECRET_KEYS:
            event[key] = "[redacted]"
    return event


def escape_controls(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
    """On a terminal, show control characters in values (a tenant's upload name) as escapes."""
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = printable(value)
    return event


def is_json() -> bool:
    """True when log lines are JSON objects (what :func:`configure` chose)."""
    return _state["json"]


def configure(json: bool | None = None, level: int = logging.INFO) -> None:
    """Configure structlog, the stdlib root logger (asyncssh and paramiko log through it) and, in JSON
    mode, the hooks for uncaught exceptions and warnings (module doc)."""
    if json is None:
        json = not sys.stderr.isatty()
    _state["json"] = json
    renderer: Processor = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    shared: list[Processor] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        drop_secrets,
    ]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            *shared,
            structlog.processors.format_exc_info,
            *([] if json else [escape_controls]),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # one write per line (message and newline together): other processes of the daemon (workers, SFTP
        # server processes) write lines to the same stderr, and O_APPEND keeps whole writes whole
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    _configure_stdlib(json, level, shared, renderer)
    if json:
        sys.excepthook = _uncaught
        threading.excepthook = _uncaught_in_thread
    else:
        sys.excepthook, threading.excepthook = sys.__excepthook__, threading.__excepthook__


def _configure_stdlib(json: bool, level: int, shared: list[Processor], renderer: Processor) -> None:
    """The root logger's one handler renders records as structlog does (``logger`` names the library)."""
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, renderer],
    )
    handler = _Stderr()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_rostergate", False):
            root.removeHandler(old)
    root.addHandler(handler)
    # Third-party loggers stay at warning at least: asyncssh and paramiko are chatty at info and may log user names.
    root.setLevel(max(level, logging.WARNING))
    for name in ("asyncssh", "paramiko"):
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    logging.captureWarnings(json)


class _Stderr(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stderr`` is when a record is emitted (a test's capture, then the real one)."""

    _rostergate = True  # how a second configure() finds the handler it replaces (by attribute: reloads too)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def _uncaught(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, value, tb)
        return
    _log.critical("unhandled_exception", error=kind.__name__, exc_info=(kind, value, tb))


def _uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    assert args.exc_value is not None
    _log.critical("unhandled_exception", error=args.exc_type.__name__,
                  thread=args.thread.name if args.thread else None,
                  exc_info=(args.exc_type, args.exc_value, args.exc_traceback))
