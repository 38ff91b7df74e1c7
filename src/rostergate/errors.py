"""The one exception tree of rostergate.

Every error we raise on purpose is a :class:`RostergateError`; a foreign library's
errors (paramiko, asyncssh, the OS) are mapped into it at the one boundary that
talks to that library (``raise ... from exc``), so callers handle our classes only.
Messages say what is wrong and what to do, and never quote a secret or student data.

::

    RostergateError
    ├── ConfigError              the configuration is wrong (one "key: reason" per problem)
    ├── AccountError             an operator request about a file account cannot be done
    ├── StoreError               the state store cannot be used (e.g. newer than this code)
    ├── HostKeyError             the server's own SSH host key cannot be read or made
    ├── WorkerFailure            a worker process running a run's CPU work was lost
    ├── RunError                 an operator request about a run cannot be done (unknown run, wrong status)
    │   └── IllegalTransition    a run was asked to change status in a way the lifecycle forbids
    ├── DeliveryError            a delivery to a downstream failed
    │   ├── RetryableError       try again later: unreachable, disk full, credentials unreadable
    │   └── FinalError           retrying cannot help: host key mismatch, login or permission refused
    └── AlertError               an alert (webhook, e-mail) could not be sent; ``retryable``: may work later

Bad *upload content* is not an exception: it is data (:class:`rostergate.formats.issues.Issue`).
"""

from __future__ import annotations


class RostergateError(Exception):
    """The root of every error rostergate raises on purpose."""


class ConfigError(RostergateError):
    """The configuration is wrong; ``problems`` holds one ``key: reason`` per mistake."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


class AccountError(RostergateError):
    """An operator request about accounts cannot be done; the message says why."""


class StoreError(RostergateError):
    """The state store cannot be opened or used as it is; the message says what to do."""


class HostKeyError(RostergateError):
    """The server's SSH host key file cannot be read, parsed or created."""


class WorkerFailure(RostergateError):
    """The worker of a call was lost; ``kind`` says how, ``detail`` says it for people.

    ``kind`` is ``memory`` (ran out of memory under its limit), ``timeout`` (killed
    after ``max_run_seconds``) or ``died`` (killed by a signal or crashed; ``signal``
    names it when known). The text never quotes data of the call.
    """

    def __init__(self, kind: str, detail: str, signal_name: str | None = None):
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.signal = signal_name


class RunError(RostergateError):
    """An operator request about a run cannot be done (no such run, or its status does not allow it)."""


class IllegalTransition(RunError):
    """A run's status was asked to change in a way :data:`rostergate.runstatus.TRANSITIONS` forbids.

    ``current`` is the status the run had (``None``: no such run), ``wanted`` the one
    asked for. From an operator action it usually means the daemon moved the run
    first (a newer upload superseded it); from the pipeline it is a bug.
    """

    def __init__(self, run_id: str, current: str | None, wanted: str):
        self.run_id, self.current, self.wanted = run_id, current, wanted
        now = f"is {current}" if current is not None else "does not exist"
        super().__init__(f"run {run_id} {now}; it cannot become {wanted}")


class DeliveryError(RostergateError):
    """Delivery failed; the message says why without any secret."""


class RetryableError(DeliveryError):
    """The delivery may work later (the server is down, its disk is full, a credential file is missing)."""


class FinalError(DeliveryError):
    """Retrying cannot help (a host key mismatch, a refused login or permission, a missing folder)."""


class AlertError(RostergateError):
    """An alert could not be sent; ``retryable`` is False when trying again cannot help (a refused login,
    a 4xx answer). The message names the channel and the reason, never a secret."""

    def __init__(self, message: str, retryable: bool = True):
        self.retryable = retryable
        super().__init__(message)
