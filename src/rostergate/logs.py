"""structlog set-up: JSON lines on stderr (readable console output on a TTY).

stdout carries only a command's own output (``--json`` documents, tables), so a
log line can never corrupt what a script parses; journald reads both streams.

One pipeline of same-signature processors; context is bound once per run
(``run_id``, ``account``). Student data never reaches a log line: callers log
counts, codes and ids of runs only, and :func:`drop_secrets` removes any key
that looks like a secret as a last line of defence.
"""

from __future__ import annotations

import logging
import sys

import structlog

from rostergate.printable import printable

SECRET_KEYS = frozenset({"password", "passphrase", "secret", "token", "private_key", "key_data"})


def drop_secrets(_logger: object, _method: str, event: dict) -> dict:
    """Remove values of keys that name a secret (``password``, ``token``, ...)."""
    for key in list(event):
        if key.lower() in SECRET_KEYS:
            event[key] = "[redacted]"
    return event


def escape_controls(_logger: object, _method: str, event: dict) -> dict:
    """On a terminal, show control characters in values (a tenant's upload name) as escapes."""
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = printable(value)
    return event


def configure(json: bool | None = None, level: int = logging.INFO) -> None:
    """Configure structlog and the stdlib root logger (asyncssh and paramiko log through it)."""
    if json is None:
        json = not sys.stderr.isatty()
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            drop_secrets,
            structlog.processors.format_exc_info,
            *([] if json else [escape_controls]),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # asyncssh and paramiko are chatty at INFO and may log user names; keep them to warnings.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    for name in ("asyncssh", "paramiko"):
        logging.getLogger(name).setLevel(logging.WARNING)
