"""``[alerts]``, ``[flows.alerts]`` and ``[flows.schedule]``: typed, merged key by key, every error naming its key."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from rostergate import config
from rostergate.cli import main
from tests.alerts.conftest import secret_file
from tests.conftest import free_port


def flow(account: str, tmp_path: Path, extra: str = "") -> str:
    return (f'[[flows]]\naccount = "{account}"\n[flows.downstream]\nurl = "{(tmp_path / "out").as_uri()}"\n'
            f"{extra}")


def parse(tmp_path: Path, text: str) -> config.Settings:
    path = tmp_path / "rostergate.toml"
    path.write_text(f'[server]\ndata_dir = "{tmp_path / "var"}"\n{text}')
    return config.load(path)


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(config.ConfigError) as raised:
        parse(tmp_path, text)
    return raised.value.problems


def test_a_flow_inherits_the_server_default_and_overrides_it_key_by_key(tmp_path):
    secret = secret_file(tmp_path, "webhook.secret", b"s")
    password = secret_file(tmp_path, "smtp.pass", b"p")
    b_alerts = '[flows.alerts]\nemail_to = ["b-admin@district.example"]\nevents = ["run.failed"]\n'
    c_alerts = "[flows.alerts]\nenabled = false\n"
    settings = parse(tmp_path, f'''
[alerts]
webhook_url = "https://hooks.example/rostergate"
webhook_secret_file = "{secret}"
smtp_url = "smtp://alerts@mail.example:587"
smtp_password_file = "{password}"
email_from = "rostergate@district.example"
email_to = ["it@district.example"]
retrying_after = "2h"
max_attempts = 3
{flow("district-a", tmp_path)}
{flow("district-b", tmp_path, b_alerts)}
{flow("district-c", tmp_path, c_alerts)}
''')
    a, b, c = (settings.alerts_for(name) for name in ("district-a", "district-b", "district-c"))
    assert a.channels == ("webhook", "email") and a.email_to == ("it@district.example",)
    assert a.retrying_after_seconds == 7200 and a.wants("account.late")
    assert b.email_to == ("b-admin@district.example",) and b.webhook_url == "https://hooks.example/rostergate"
    assert b.wants("run.failed") and not b.wants("run.rejected")
    assert c.channels == () and not c.wants("run.failed")
    assert settings.alerts_for("no-flow") == settings.alerts  # an account without a flow: the server's
    assert settings.dispatch.max_attempts == 3
    assert a.describe() == "by webhook and e-mail"


def test_without_any_alerts_nothing_is_sent_and_nothing_is_required(tmp_path):
    settings = parse(tmp_path, flow("district-a", tmp_path))
    assert settings.alerts_for("district-a").channels == ()
    assert settings.flows[0].schedule is None


def test_every_wrong_key_is_named(tmp_path):
    flow_tables = '[flows.alerts]\nmax_attempts = 2\n[flows.schedule]\nexpect_upload = "daily 31:00"\n'
    found = problems(tmp_path, f'''
[alerts]
webhook_url = "ftp://hooks.example"
smtp_url = "smtp://user:pw@mail.example"
email_to = "not-an-address"
events = ["run.exploded"]
retrying_after = "soon"
queue_size = 0
colour = "red"
{flow("district-a", tmp_path, flow_tables)}
''')
    text = "\n".join(found)
    for key in ("alerts.webhook_url", "alerts.smtp_url", "alerts.email_to", "alerts.events",
                "alerts.retrying_after", "alerts.queue_size", "alerts.colour", "flows[0].alerts.max_attempts",
                "flows[0].schedule.expect_upload"):
        assert f"{key}:" in text, key
    assert "only in the server's [alerts]" in text and "not a time of day" in text
    assert "pw" not in text  # a password in a URL is refused without being repeated


def test_what_a_channel_needs_is_required(tmp_path):
    found = problems(tmp_path, '[alerts]\nwebhook_url = "https://hooks.example"\nsmtp_url = "smtp://u@mail.example"\n')
    text = "\n".join(found)
    assert "alerts.webhook_secret_file: required with webhook_url" in text
    assert "alerts.email_from: required" in text and "alerts.email_to: required" in text
    assert "alerts.smtp_password_file: required when smtp_url names a user" in text


def test_a_missing_secret_file_is_named(tmp_path):
    found = problems(tmp_path, f'[alerts]\nwebhook_url = "https://h.example"\n'
                               f'webhook_secret_file = "{tmp_path / "absent"}"\n')
    assert any(p.startswith("alerts.webhook_secret_file: file not found") for p in found)


def test_schedule_is_parsed(tmp_path):
    settings = parse(tmp_path, flow("district-a", tmp_path, '[flows.schedule]\nexpect_upload = "every 24h"\n'))
    assert settings.flows[0].schedule.text == "every 24h"
    assert "flows[0].schedule.expect_upload: required" in "\n".join(
        problems(tmp_path, flow("district-a", tmp_path, "[flows.schedule]\n")))


def test_check_config_catches_a_bad_deadline_and_a_secret_others_may_read(tmp_path):
    secret = secret_file(tmp_path, "webhook.secret", b"s")
    secret.chmod(0o644)
    path = tmp_path / "rostergate.toml"
    path.write_text(f'[server]\ndata_dir = "{tmp_path / "var"}"\nlisten = "127.0.0.1:{free_port()}"\n'
                    f'[alerts]\nwebhook_url = "https://h.example"\nwebhook_secret_file = "{secret}"\n')
    result = CliRunner().invoke(main, ["--config", str(path), "check-config"])
    assert result.exit_code == 2
    assert f"alerts.webhook_secret_file: {secret} may be read by others" in result.output
    secret.chmod(0o600)
    assert CliRunner().invoke(main, ["--config", str(path), "check-config"]).exit_code == 0

    path.write_text(path.read_text() + flow("district-a", tmp_path,
                                            '[flows.schedule]\nexpect_upload = "daily 07:00 Nowhere/Land"\n'))
    result = CliRunner().invoke(main, ["--config", str(path), "check-config"])
    assert result.exit_code == 2
    assert "flows[0].schedule.expect_upload:" in result.output and "unknown time zone" in result.output


def test_the_commented_alert_keys_of_config_example_are_real_keys():
    """Uncommented, the example's [alerts], [flows.schedule] and [flows.alerts] parse (only the example's
    secret files are missing)."""
    import re
    import tomllib

    from rostergate.alerts.settings import parse_dispatch, parse_flow_schedule, parse_target

    example = (Path(__file__).resolve().parents[2] / "config.example.toml").read_text()
    tables = {}
    for name in ("alerts", "flows.schedule", "flows.alerts"):
        block = re.search(rf"^# \[{re.escape(name)}\]\n((?:# .*\n)+)", example, re.M)
        assert block, name
        lines = [line[2:] for line in block[1].splitlines() if re.match(r"# \w+ = ", line)]
        tables[name] = tomllib.loads("\n".join(lines))
    values, found = parse_target(tables["alerts"], "alerts", Path("/"), server=True)
    assert all("file not found" in p for p in found) and len(found) == 3, found
    assert values["email_to"] and values["retrying_after_seconds"] == 3600
    assert parse_dispatch(tables["alerts"], "alerts")[1] == []
    assert parse_target(tables["flows.alerts"], "flows[0].alerts", Path("/"), server=False)[1] == []
    assert parse_flow_schedule(tables["flows.schedule"], "flows[0].schedule")[1] == []
