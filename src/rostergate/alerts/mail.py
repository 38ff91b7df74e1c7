"""The e-mail sender: stdlib :mod:`smtplib`, called in the dispatcher's thread.

``smtp_url``:

* ``smtp://[user@]host[:587]``: plain connection, then STARTTLS, which is
  required: a server that does not offer it gets nothing (not the password, not
  the alert), and the certificate is verified against the system's CAs or
  ``smtp_ca_file``;
* ``smtps://[user@]host[:465]``: TLS from the first byte.

With a user in the URL, ``AUTH`` uses the password in ``smtp_password_file``
(read on every try). A refused login, refused addresses, a certificate that does
not verify and any 5xx answer fail for good; a 4xx answer, a timeout and a lost
connection are retried (:class:`~rostergate.errors.AlertError` ``retryable``).
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import unquote, urlsplit

from rostergate.alerts.payload import Alert
from rostergate.alerts.settings import AlertSettings
from rostergate.alerts.webhook import read_secret
from rostergate.errors import AlertError


def message(alert: Alert, settings: AlertSettings, delivery_id: str) -> EmailMessage:
    """The e-mail of ``alert``: plain text, one per try-group (the same Message-ID on every try)."""
    assert settings.email_from
    mail = EmailMessage()
    mail["From"] = settings.email_from
    mail["To"] = ", ".join(settings.email_to)
    mail["Subject"] = alert.subject()
    mail["Date"] = formatdate(localtime=False)
    mail["Message-ID"] = make_msgid(idstring=delivery_id, domain=settings.email_from.rpartition("@")[2])
    mail["X-Rostergate-Event"] = alert.event
    mail.set_content(alert.text())
    return mail


def send(alert: Alert, settings: AlertSettings, delivery_id: str, timeout: float) -> None:
    """Send ``alert`` by e-mail as ``settings`` say; raises AlertError (``retryable`` or not)."""
    assert settings.smtp_url
    parts = urlsplit(settings.smtp_url)
    host = parts.hostname or ""
    context = ssl.create_default_context(cafile=str(settings.smtp_ca_file) if settings.smtp_ca_file else None)
    password = None
    if parts.username:
        assert settings.smtp_password_file is not None  # required by the settings
        password = read_secret(settings.smtp_password_file, "smtp_password_file").decode("utf-8")
    try:
        client: smtplib.SMTP
        if parts.scheme == "smtps":
            client = smtplib.SMTP_SSL(host, parts.port or 465, timeout=timeout, context=context)
        else:
            client = smtplib.SMTP(host, parts.port or 587, timeout=timeout)
        with client:
            if parts.scheme == "smtp":
                client.ehlo()
                if not client.has_extn("starttls"):
                    raise AlertError(f"mail server {host} does not offer STARTTLS; nothing was sent (use an "
                                     "smtps:// URL, or a server with STARTTLS)", retryable=False)
                client.starttls(context=context)
                client.ehlo()
            if parts.username and password is not None:
                client.login(unquote(parts.username), password)
            client.send_message(message(alert, settings, delivery_id))
    except AlertError:
        raise
    except smtplib.SMTPAuthenticationError as exc:
        raise AlertError(f"mail server {host} refused the login ({exc.smtp_code}); check smtp_url's user and "
                         "smtp_password_file", retryable=False) from None
    except smtplib.SMTPRecipientsRefused:
        raise AlertError(f"mail server {host} refused every address of email_to", retryable=False) from None
    except smtplib.SMTPResponseException as exc:
        raise AlertError(f"mail server {host} answered {exc.smtp_code}", retryable=exc.smtp_code < 500) from None
    except ssl.SSLCertVerificationError as exc:
        raise AlertError(f"mail server {host}'s certificate does not verify ({exc.verify_message}); give its CA "
                         "in smtp_ca_file", retryable=False) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise AlertError(f"mail server {host} unreachable or lost: {type(exc).__name__}"
                         + (f" {exc.strerror}" if isinstance(exc, OSError) and exc.strerror else "")) from None
