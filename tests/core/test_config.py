"""Configuration: embedded defaults, a full file, and errors that name their keys."""

import os
from pathlib import Path

import pytest

from rostergate import config
from rostergate.formats.holdrules import Thresholds
from rostergate.sftp.settings import SftpSettings

#: one flow whose downstream password is a systemd credential
_FLOW_WITH_CREDENTIAL = """
[[flows]]
account = "a"
[flows.downstream]
url = "sftp://u@h:22/in"
password_file = "${CREDENTIALS_DIRECTORY}/secret_a.pass"
host_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEbYm0+g2pEGX9DGNB/nWoHAfZf2BL7FZDafdkprrCbK"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rostergate.toml"
    path.write_text(text)
    return path


def test_embedded_defaults_listen_on_loopback_with_state_under_var(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    source = config.discover(demo=True, environ={})
    settings = config.load_source(source)
    assert (settings.server.listen_host, settings.server.listen_port) == ("127.0.0.1", 2222)
    assert settings.data_dir == Path("var")
    assert settings.demo and settings.flow_for("demo").downstream.scheme == "file"
    assert "--demo" in source.describe()


def test_local_rostergate_toml_is_used_without_config_option(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, '[server]\nlisten = "127.0.0.1:2300"\n')
    source = config.discover(environ={}, system=tmp_path / "etc" / "rostergate.toml")
    assert source.path == Path("rostergate.toml")
    assert config.load_source(source).server.listen_port == 2300


def test_discovery_order_is_option_variable_system_file_then_local_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    local = write(tmp_path, "")
    system = tmp_path / "etc-rostergate.toml"
    system.write_text("")
    env_file = tmp_path / "from-env.toml"
    explicit = tmp_path / "explicit.toml"
    environ = {"ROSTERGATE_CONFIG": str(env_file)}
    assert config.discover(explicit, environ=environ, system=system).path == explicit
    assert config.discover(environ=environ, system=system).path == env_file
    assert config.discover(environ={}, system=system).path == system
    assert config.discover(environ={}, system=tmp_path / "absent.toml", local=local).path == local
    described = config.discover(environ=environ, system=system).describe()
    assert str(env_file) in described and "$ROSTERGATE_CONFIG" in described


def test_no_configuration_is_an_error_not_a_silent_demo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(config.ConfigError, match="--demo") as caught:
        config.discover(environ={}, system=tmp_path / "absent.toml")
    assert len(caught.value.problems) == 1
    with pytest.raises(config.ConfigError, match="cannot be combined"):
        config.discover(tmp_path / "x.toml", demo=True)
    assert not (tmp_path / "var").exists()


def test_paths_may_point_into_the_service_credentials_directory(tmp_path, monkeypatch):
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "secret_a.pass").write_text("pw\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    path = write(tmp_path, _FLOW_WITH_CREDENTIAL)
    assert config.load(path).flow_for("a").downstream.password_file == credentials / "secret_a.pass"
    (credentials / "secret_a.pass").unlink()
    with pytest.raises(config.ConfigError, match=r"password_file: file not found: .*/credentials/secret_a.pass"):
        config.load(path)


def test_outside_the_stopped_service_its_credentials_are_not_required(tmp_path, monkeypatch):
    """An operator's command (accounts list) works while the service, and so its credentials, are away;
    while it runs, its credentials directory is where they are looked for and must be."""
    service = tmp_path / "run" / "credentials" / "rostergate.service"
    monkeypatch.setattr(config, "SERVICE_CREDENTIALS", service)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    path = write(tmp_path, _FLOW_WITH_CREDENTIAL)
    assert config.load(path).flow_for("a").downstream.password_file == service / "secret_a.pass"
    service.mkdir(parents=True)  # the service runs: its credentials are there to be seen
    with pytest.raises(config.ConfigError, match=f"password_file: file not found: {service}/secret_a.pass"):
        config.load(path)


def test_full_sftp_flow_parses(tmp_path):
    password = tmp_path / "pass"
    password.write_text("secret\n")
    path = write(tmp_path, f"""
[server]
listen = "0.0.0.0:22"
data_dir = "state"
[[flows]]
account = "district-a"
input = "oneroster"
[flows.downstream]
url = "sftp://upload@example.org:2022/dropbox"
password_file = "{password}"
host_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEbYm0+g2pEGX9DGNB/nWoHAfZf2BL7FZDafdkprrCbK"
""")
    settings = config.load(path)
    down = settings.flow_for("district-a").downstream
    assert (down.host, down.port, down.username, down.path) == ("example.org", 2022, "upload", "/dropbox")
    assert settings.data_dir == tmp_path / "state"
    assert settings.flow_for("district-a").input == "oneroster"


def test_every_wrong_key_is_named(tmp_path):
    path = write(tmp_path, """
[server]
listen = "nowhere"
colour = "blue"
[[flows]]
account = "a"
output = "pdf"
[flows.downstream]
url = "ftp://host/x"
[[flows]]
input = "asm"
""")
    with pytest.raises(config.ConfigError) as caught:
        config.load(path)
    text = "\n".join(caught.value.problems)
    for key in ("server.listen", "server.colour", "flows[0].output", "flows[0].downstream.url", "flows[1].account"):
        assert key in text, (key, text)


def test_sftp_downstream_requires_pinned_host_key_and_credentials(tmp_path):
    path = write(tmp_path, '[[flows]]\naccount = "a"\n[flows.downstream]\nurl = "sftp://u@h/x"\n')
    with pytest.raises(config.ConfigError) as caught:
        config.load(path)
    text = "\n".join(caught.value.problems)
    assert "password_file or key_file" in text and "host_key or known_hosts" in text


def test_missing_file_and_bad_toml_are_reported(tmp_path):
    with pytest.raises(config.ConfigError, match="file not found"):
        config.load(tmp_path / "absent.toml")
    with pytest.raises(config.ConfigError, match="not valid TOML"):
        config.load(write(tmp_path, "[server\n"))


def test_example_config_loads_and_only_lacks_its_secret_inside_the_service(tmp_path, monkeypatch):
    """Outside the service the example loads as it is; inside it (credentials handed over), the one
    thing it lacks is its downstream password."""
    example = Path(__file__).resolve().parents[2] / "config.example.toml"
    monkeypatch.setattr(config, "SERVICE_CREDENTIALS", tmp_path / "rostergate.service")
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    assert config.load(example).flow_for("district-a").downstream.password_file.name == "secret_district-a.pass"
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    with pytest.raises(config.ConfigError) as caught:
        config.load(example)
    assert caught.value.problems == [
        f"flows[0].downstream.password_file: file not found: {tmp_path}/secret_district-a.pass"
    ]


def test_unparseable_pinned_host_key_is_named(tmp_path):
    key = tmp_path / "k"
    key.write_text("x")
    path = write(tmp_path, f"""
[[flows]]
account = "a"
[flows.downstream]
url = "sftp://u@h/x"
key_file = "{key}"
host_key = "ssh-ed25519 AAAA"
""")
    with pytest.raises(config.ConfigError, match=r"flows\[0\]\.downstream\.host_key"):
        config.load(path)


def test_retry_cap_and_encoding_policy_parse_and_are_checked(tmp_path):
    base = (f'[[flows]]\naccount = "a"\nencoding = "ENC"\n[flows.downstream]\nurl = "{tmp_path.as_uri()}"\n'
            "retry_max_seconds = CAP\n")
    flow = config.load(write(tmp_path, base.replace("ENC", "reject").replace("CAP", "90"))).flow_for("a")
    assert flow.encoding == "reject" and flow.downstream.retry_max_seconds == 90
    with pytest.raises(config.ConfigError) as caught:
        config.load(write(tmp_path, base.replace("ENC", "latin1").replace("CAP", "-1")))
    text = "\n".join(caught.value.problems)
    assert "flows[0].encoding" in text and "flows[0].downstream.retry_max_seconds" in text


# -- the delivery keys of [flows.downstream] ------------------------------------------
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEbYm0+g2pEGX9DGNB/nWoHAfZf2BL7FZDafdkprrCbK"


def sftp_flow(tmp_path: Path, host: str = "example.org", extra: str = "", flow_extra: str = "") -> Path:
    password = tmp_path / "pass"
    password.write_text("secret\n")
    return write(tmp_path, f"""
[[flows]]
account = "a"
{flow_extra}
[flows.downstream]
url = "sftp://upload@{host}/dropbox"
password_file = "{password}"
host_key = "{HOST_KEY}"
{extra}
""")


def problems_of(path: Path) -> str:
    with pytest.raises(config.ConfigError) as caught:
        config.load(path)
    return "\n".join(caught.value.problems)


@pytest.mark.parametrize("host, extra, expected", [
    ("example.org", "", (True, "stat")),
    ("upload.appleschoolcontent.com", "", (False, "size-on-handle")),  # Apple's drop box: no rename, no stat
    ("Upload.AppleSchoolContent.com", "", (False, "size-on-handle")),
    ("example.org", "temp_name = false", (False, "size-on-handle")),
    ("upload.appleschoolcontent.com", "temp_name = true", (True, "stat")),
    ("example.org", 'verify = "none"', (True, "none")),
    ("upload.appleschoolcontent.com", 'verify = "none"', (False, "none")),
])
def test_temp_name_and_verify_defaults_follow_the_host(tmp_path, host, extra, expected):
    down = config.load(sftp_flow(tmp_path, host, extra)).flow_for("a").downstream
    assert (down.temp_name, down.verify) == expected


@pytest.mark.parametrize("extra, key, reason", [
    ('temp_name = "yes"', "temp_name", "must be true or false"),
    ("temp_name = 1", "temp_name", "must be true or false"),
    ('verify = "md5"', "verify", "must be one of stat, size-on-handle, none"),
    ("verify = true", "verify", "must be one of stat, size-on-handle, none"),
])
def test_wrong_delivery_keys_are_named(tmp_path, extra, key, reason):
    assert f"flows[0].downstream.{key}: {reason}" in problems_of(sftp_flow(tmp_path, extra=extra))


@pytest.mark.parametrize("key", ["temp_name", "verify"])
def test_delivery_keys_are_refused_for_a_folder(tmp_path, key):
    value = "false" if key == "temp_name" else '"stat"'
    path = write(tmp_path,
                 f'[[flows]]\naccount = "a"\n[flows.downstream]\nurl = "{tmp_path.as_uri()}"\n{key} = {value}\n')
    assert f"flows[0].downstream.{key}: applies to sftp:// downstreams only" in problems_of(path)


# -- numbers: finite, in range, and whole where a count is meant ---------------------
@pytest.mark.parametrize("key", ["connect_timeout", "retry_base_seconds", "retry_max_seconds"])
@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0"])
def test_downstream_durations_must_be_finite_and_positive(tmp_path, key, value):
    text = problems_of(sftp_flow(tmp_path, extra=f"{key} = {value}"))
    assert f"flows[0].downstream.{key}: must be a finite positive number" in text, text


@pytest.mark.parametrize("value", ["2.5", "0", "-3", "true", "nan"])
def test_max_attempts_must_be_a_whole_number(tmp_path, value):
    text = problems_of(sftp_flow(tmp_path, extra=f"max_attempts = {value}"))
    assert "flows[0].downstream.max_attempts: must be a whole number >= 1" in text, text


@pytest.mark.parametrize("table, key, value", [
    ("limits", "idle_timeout_seconds", "nan"),
    ("limits", "login_grace_seconds", "inf"),
    ("defender", "ban_seconds", "nan"),
    ("defender", "failed_password_delay_seconds", "inf"),
])
def test_server_durations_must_be_finite(tmp_path, table, key, value):
    text = problems_of(write(tmp_path, f"[server.{table}]\n{key} = {value}\n"))
    assert f"server.{table}.{key}: " in text and "finite" in text, text


@pytest.mark.parametrize("value", ["nan", "inf", "-0.5"])
def test_watch_settle_seconds_must_be_finite_and_not_negative(tmp_path, value):
    text = problems_of(sftp_flow(tmp_path, flow_extra=f"watch_settle_seconds = {value}"))
    assert "flows[0].watch_settle_seconds: must be a finite number of seconds >= 0" in text, text


@pytest.mark.parametrize("template, says", [("{acount}-{run_id}.zip", "unknown placeholder {acount}"),
                                            ("{account", "not a valid name template")])
def test_a_misspelt_remote_name_placeholder_is_refused_at_load(tmp_path, template, says):
    """Not at delivery time, where it failed every run as an internal error."""
    path = write(tmp_path, f'[[flows]]\naccount = "a"\n[flows.downstream]\nurl = "file:///srv/o"\n'
                           f'remote_name = "{template}"\n')
    with pytest.raises(config.ConfigError) as caught:
        config.load(path)
    assert any(p.startswith("flows[0].downstream.remote_name:") and says in p for p in caught.value.problems)


# -- every flow setting typed: a choice from its Literal, a downstream always there --------
@pytest.mark.parametrize("key, value, choices", [
    ("input", "csv", "auto, asm, oneroster"),
    ("output", "pdf", "asm, same"),
    ("profile", "lenient", "strict, asm"),
    ("encoding", "latin1", "convert, reject"),
])
def test_a_wrong_choice_names_the_key_and_every_value_it_accepts(tmp_path, key, value, choices):
    path = write(tmp_path, f'[[flows]]\naccount = "a"\n{key} = "{value}"\n'
                           f'[flows.downstream]\nurl = "{tmp_path.as_uri()}"\n')
    assert f"flows[0].{key}: must be one of {choices}; got '{value}'" in problems_of(path)


@pytest.mark.parametrize("downstream", ["", '[flows.downstream]\nurl = "ftp://h/x"\n'],
                         ids=["missing", "unusable"])
def test_a_flow_without_a_usable_downstream_is_refused_and_duplicates_are_still_named(tmp_path, downstream):
    """A Flow always has its downstream: none is ever built without one, and the other checks go on."""
    path = write(tmp_path, f'[[flows]]\naccount = "a"\n{downstream}'
                           f'[[flows]]\naccount = "a"\n[flows.downstream]\nurl = "{tmp_path.as_uri()}"\n')
    text = problems_of(path)
    assert "flows[0].downstream" in text
    assert "flows[1].account: account 'a' already has a flow" in text


def test_unset_sections_are_their_defaults_not_none(tmp_path):
    toml = f'[[flows]]\naccount = "a"\n[flows.downstream]\nurl = "{tmp_path.as_uri()}"\n'
    settings = config.load(write(tmp_path, toml))
    flow = settings.flow_for("a")
    assert (flow.input, flow.output, flow.profile, flow.encoding) == ("auto", "asm", "strict", "convert")
    assert flow.safeguards == Thresholds() and flow.mapping is None
    assert settings.server.sftp == SftpSettings()
    assert flow.downstream.scheme == "file" and flow.downstream.path == str(tmp_path)


def test_worker_processes_default_to_the_cores_this_process_may_use(monkeypatch):
    assert config.parse({}).server.workers.processes == min(len(os.sched_getaffinity(0)), 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})  # e.g. taskset or a container's cpuset
    assert config.parse({}).server.workers.processes == 3
    assert config.parse({"server": {"workers": {"processes": 1}}}).server.workers.processes == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(200)))
    assert config.parse({}).server.workers.processes == config.MAX_WORKER_PROCESSES


def test_sftp_processes_defaults_to_one_and_refuses_what_is_no_count(tmp_path):
    assert config.parse({"server": {}}, tmp_path).server.sftp_processes == 1
    assert config.parse({"server": {"sftp_processes": 4}}, tmp_path).server.sftp_processes == 4
    for bad in (0, -1, 65, 2.5, "2", True):
        with pytest.raises(config.ConfigError, match=r"server.sftp_processes: must be a whole number from 1 to 64"):
            config.parse({"server": {"sftp_processes": bad}}, tmp_path)
