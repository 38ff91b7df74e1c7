"""structlog set-up: JSON lines on stdout (readable console output on a TTY).

One pipeline of same-signature processors; context is bound once per run
(``run_id``, ``account``). Student data never reaches a log line: callers log
counts, codes and ids of runs only, and :func:`drop_secrets` removes any key
that looks like a secret as a last line of defence.
"""

from __future__ import annotations

import logging
import sys

import structlog

SECRET_KEYS = frozenset({"password", "passphrase", "secret", "token", "private_key", "key_data"})


def drop_secrets(_logger: object, _method: str, event: dict) -> dict:
    """Remove values of keys that name a secret (``password``, ``token``, ...)."""
    for key in list(event):
        if key.lower() in SECRET_KEYS:
            event[key] = "[redacted]"
    return event


def configure(json: bool | None = None, level: int = logging.INFO) -> None:
    """Configure structlog and the stdlib root logger (asyncssh and paramiko log through it)."""
    if json is None:
        json = not sys.stdout.isatty()
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            drop_secrets,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stdout),
        cache_logger_on_first_use=True,
    )
    # asyncssh and paramiko are chatty at INFO and may log user names; keep them to warnings.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    for name in ("asyncssh", "paramiko"):
        logging.getLogger(name).setLevel(logging.WARNING)
