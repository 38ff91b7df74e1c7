"""systemd's readiness protocol (``sd_notify``), spoken over ``$NOTIFY_SOCKET`` without a dependency.

The service manager names a unix datagram socket in ``$NOTIFY_SOCKET`` (a path,
or ``@name`` for the abstract namespace); each datagram is newline-separated
``KEY=VALUE`` assignments such as ``READY=1``. With ``WatchdogSec=`` it also sets
``$WATCHDOG_USEC`` (and ``$WATCHDOG_PID``): the service must send ``WATCHDOG=1``
more often than that, or it is killed and restarted.

:class:`Notifier` reads these variables once and removes them from the
environment, so no child (the worker processes) ever talks to the service
manager in the daemon's name. Outside systemd every call is a no-op.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import MutableMapping

_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


class Notifier:
    """Sends state changes to the service manager; does nothing when none listens."""

    def __init__(self, environ: MutableMapping[str, str] | None = None):
        env = os.environ if environ is None else environ
        values = {name: env.pop(name, None) for name in _VARIABLES}
        address = values["NOTIFY_SOCKET"] or ""
        # An abstract socket's name starts with a NUL byte, written '@' in the variable.
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self._socket: socket.socket | None = None
        if self._address:
            # Non-blocking: a manager that reads slowly (its queue holds ~10 datagrams) must cost a
            # dropped WATCHDOG=1, never a stalled event loop.
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
        self.watchdog_seconds = _watchdog_seconds(values["WATCHDOG_USEC"], values["WATCHDOG_PID"])

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def send(self, **fields: str | int) -> bool:
        """Send one datagram ``KEY=VALUE\\n...``; False when there is no service manager or it is gone."""
        if self._socket is None:
            return False
        payload = "".join(f"{key}={value}\n" for key, value in fields.items()).encode()
        try:
            self._socket.sendto(payload, self._address)
        except OSError:
            # The manager went away, never was, or its queue is full (BlockingIOError): the daemon runs on.
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send(READY=1, STATUS=status)

    def reloading(self) -> bool:
        # MONOTONIC_USEC lets newer managers (Type=notify-reload) tie READY=1 to this reload.
        return self.send(RELOADING=1, MONOTONIC_USEC=time.monotonic_ns() // 1000, STATUS="reloading")

    def stopping(self, grace_seconds: float) -> bool:
        """Say we stop, and ask for the time the drain may take (beyond ``TimeoutStopSec=``)."""
        extend = int((grace_seconds + 15) * 1_000_000)
        return self.send(STOPPING=1, EXTEND_TIMEOUT_USEC=extend, STATUS="stopping: finishing uploads and runs")

    def watchdog(self) -> bool:
        return self.send(WATCHDOG=1)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _watchdog_seconds(usec: str | None, pid: str | None) -> float | None:
    """The watchdog period in seconds, when the manager expects pings from this process."""
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 1_000_000 if value > 0 else None
