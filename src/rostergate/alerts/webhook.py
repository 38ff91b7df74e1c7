"""The webhook sender: one signed JSON POST per try.

Headers of every POST:

* ``Content-Type: application/json``;
* ``X-Rostergate-Event: run.failed`` (the body's ``event``);
* ``X-Rostergate-Delivery: <32 hex>``: the same for every try of one alert, so a
  receiver can drop a repeat;
* ``X-Rostergate-Signature: sha256=<64 hex>``: HMAC-SHA256 of the exact body bytes with
  the secret in ``webhook_secret_file`` (its content, without the final line break),
  as GitHub signs its webhooks. A receiver computes the same over the raw body and
  compares in constant time (:func:`signature` is the reference).

A 2xx answer is success. A 408, 429 or 5xx answer, a timeout or a refused or lost
connection may go away: :class:`~rostergate.errors.AlertError` with ``retryable``.
Any other answer (a 4xx: wrong URL, a receiver that rejects the signature) and a
redirect (a signed POST is never sent elsewhere) fail for good. The secret is read
on every try, so a rotated file takes effect without a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import urllib.error
import urllib.request
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from rostergate.alerts.payload import Alert
from rostergate.errors import AlertError

SIGNATURE_HEADER = "X-Rostergate-Signature"
RETRYABLE_STATUS = frozenset({408, 429})


def _user_agent() -> str:
    try:
        return f"rostergate/{version('rostergate')}"
    except PackageNotFoundError:
        return "rostergate"


def signature(body: bytes, secret: bytes) -> str:
    """The ``X-Rostergate-Signature`` value of ``body``: ``sha256=`` and the HMAC-SHA256 in lower-case hex."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def read_secret(path: Path, key: str) -> bytes:
    """The secret in ``path`` without its final line break; AlertError naming ``key`` when unusable."""
    try:
        secret = path.read_bytes().rstrip(b"\r\n")
    except OSError as exc:
        raise AlertError(f"{key} {path} cannot be read: {exc.strerror or exc}") from None
    if not secret:
        raise AlertError(f"{key} {path} is empty", retryable=False)
    return secret


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # a 3xx then surfaces as an HTTPError, refused below


_OPENER = urllib.request.build_opener(_NoRedirect)


def post(url: str, alert: Alert, secret_file: Path, delivery_id: str, timeout: float) -> int:
    """POST ``alert``'s body to ``url``, signed; returns the HTTP status (2xx), raises AlertError otherwise."""
    body = alert.body()
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json",
        "User-Agent": _user_agent(),
        "X-Rostergate-Event": alert.event,
        "X-Rostergate-Delivery": delivery_id,
        SIGNATURE_HEADER: signature(body, read_secret(secret_file, "webhook_secret_file")),
    })
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            status: int = response.status
    except urllib.error.HTTPError as exc:
        exc.close()
        retryable = exc.code in RETRYABLE_STATUS or exc.code >= 500
        raise AlertError(f"webhook answered HTTP {exc.code} {exc.reason}", retryable=retryable) from None
    except urllib.error.URLError as exc:
        raise AlertError(f"webhook unreachable: {exc.reason}") from None
    except (TimeoutError, OSError) as exc:
        raise AlertError(f"webhook unreachable: {exc.strerror or type(exc).__name__}") from None
    if not 200 <= status < 300:
        raise AlertError(f"webhook answered HTTP {status}", retryable=status >= 500)
    return status
