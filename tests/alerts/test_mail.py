"""The e-mail sender against a real SMTP server (aiosmtpd) on 127.0.0.1: STARTTLS with a self-signed
certificate, AUTH, and refusals that must not be retried."""

from __future__ import annotations

import pytest

from rostergate.alerts import mail
from rostergate.alerts.payload import Alert
from rostergate.alerts.settings import AlertSettings
from rostergate.errors import AlertError
from tests.alerts.conftest import secret_file
from tests.alerts.receivers import MailServer

ALERT = Alert(event="run.rejected", account="district-a", run_id="20261122-084151-3f9a1c", status="rejected",
              reason_code="upload_invalid", reason_text="the upload breaks the rules listed in the report",
              at="2026-11-22T08:41:51Z", inspect="rostergate runs show 20261122-084151-3f9a1c",
              counts={"errors": 3, "warnings": 0, "issues": {"oneroster.missing_file": 3}}, server="sftp.example")


def _settings(tmp_path, server: MailServer, password: bytes = b"mail-secret", **changes) -> AlertSettings:
    values = dict(smtp_url=f"smtp://alerts@127.0.0.1:{server.port}",
                  smtp_password_file=secret_file(tmp_path, "smtp.pass", password), smtp_ca_file=server.cert,
                  email_from="rostergate@district.example", email_to=("it@district.example", "ops@district.example"))
    return AlertSettings(**{**values, **changes})


def test_an_alert_goes_by_starttls_with_auth_to_every_recipient(tmp_path, mail_server):
    mail.send(ALERT, _settings(tmp_path, mail_server), "d" * 32, timeout=10)

    [message] = mail_server.wait_for(1)
    assert mail_server.logins == ["alerts"]  # AUTH happened (the server refuses MAIL before it, and before TLS)
    assert message["From"] == "rostergate@district.example"
    assert message["To"] == "it@district.example, ops@district.example"
    assert message["Subject"] == "[rostergate] run.rejected: district-a run 20261122-084151-3f9a1c (upload_invalid)"
    assert message["X-Rostergate-Event"] == "run.rejected"
    text = message.get_content()
    assert "rostergate runs show 20261122-084151-3f9a1c" in text
    assert "oneroster.missing_file: 3" in text


def test_a_wrong_password_is_final(tmp_path, mail_server):
    with pytest.raises(AlertError) as raised:
        mail.send(ALERT, _settings(tmp_path, mail_server, password=b"wrong"), "d" * 32, timeout=10)
    assert not raised.value.retryable and "refused the login" in str(raised.value)
    assert "wrong" not in str(raised.value)
    assert mail_server.messages == []


def test_a_certificate_that_does_not_verify_is_final(tmp_path, mail_server):
    """Without smtp_ca_file the self-signed certificate is not trusted: nothing (no password) is sent."""
    with pytest.raises(AlertError) as raised:
        mail.send(ALERT, _settings(tmp_path, mail_server, smtp_ca_file=None), "d" * 32, timeout=10)
    assert not raised.value.retryable and "smtp_ca_file" in str(raised.value)
    assert mail_server.logins == [] and mail_server.messages == []


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # the server this test wants
def test_a_server_without_starttls_gets_nothing(tmp_path):
    plain = MailServer(tmp_path, starttls=False)
    try:
        with pytest.raises(AlertError) as raised:
            mail.send(ALERT, _settings(tmp_path, plain), "d" * 32, timeout=10)
    finally:
        plain.stop()
    assert not raised.value.retryable and "STARTTLS" in str(raised.value)
    assert plain.logins == [] and plain.messages == []


def test_nothing_listening_is_retryable(tmp_path, mail_server):
    settings = _settings(tmp_path, mail_server)
    mail_server.stop()
    with pytest.raises(AlertError) as raised:
        mail.send(ALERT, settings, "d" * 32, timeout=5)
    assert raised.value.retryable
