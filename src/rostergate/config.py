"""TOML configuration → typed, validated settings.

Every error names the key it is about (``flows[0].downstream.url: ...``) and
all errors of a file are reported together, so ``check-config`` shows the whole
list at once.

Which file: :func:`discover` (``--config``, else ``$ROSTERGATE_CONFIG``, else
``/etc/rostergate/rostergate.toml``, else ``./rostergate.toml``). The embedded
demo defaults (listen on 127.0.0.1:2222, all state under ``./var``, a ``demo``
account whose flow delivers into a local folder) are used only when asked for
with ``--demo``: an operator who forgets ``--config`` gets an error, never a new
state directory with a new host key.
"""

from __future__ import annotations

import dataclasses
import math
import os
import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args
from urllib.parse import unquote, urlsplit

from rostergate.alerts.schedule import Schedule
from rostergate.alerts.settings import (
    AlertSettings,
    DispatchSettings,
    parse_dispatch,
    parse_flow_schedule,
    parse_target,
)
from rostergate.alerts.settings import merge as merge_alerts
from rostergate.errors import ConfigError
from rostergate.formats.convert.mapping import Mapping as ColumnMapping
from rostergate.formats.convert.mapping_config import parse_mapping
from rostergate.formats.holdrules import Thresholds, parse_thresholds
from rostergate.formats.read.text import EncodingPolicy
from rostergate.formats.validate.profiles import ProfileName
from rostergate.keylines import check_key_line
from rostergate.sftp.settings import SftpSettings, parse_sftp_settings

DEFAULT_CONFIG_NAME = "rostergate.toml"
SYSTEM_CONFIG = Path("/etc/rostergate") / DEFAULT_CONFIG_NAME
CONFIG_VARIABLE = "ROSTERGATE_CONFIG"
# systemd's LoadCredential= puts the service's secrets in $CREDENTIALS_DIRECTORY; a path in the
# configuration may start with it. Outside the service (an operator's CLI command) it is unset,
# and the running service's credentials are found where systemd keeps them.
CREDENTIALS_VARIABLE = "CREDENTIALS_DIRECTORY"
SERVICE_CREDENTIALS = Path("/run/credentials/rostergate.service")
InputFormat = Literal["auto", "asm", "oneroster"]  # what a flow accepts; "auto" detects it per upload
OutputFormat = Literal["asm", "same"]  # what it delivers: Apple's six files, or the input re-checked
VerifyMode = Literal["stat", "size-on-handle", "none"]  # how a delivery's size is checked (forward/sftp.py)
Scheme = Literal["sftp", "file"]
# The choices each key accepts, its default first: the Literal types above are the one list.
INPUT_FORMATS: tuple[InputFormat, ...] = get_args(InputFormat)
OUTPUT_FORMATS: tuple[OutputFormat, ...] = get_args(OutputFormat)
PROFILES: tuple[ProfileName, ...] = get_args(ProfileName)
ENCODING_POLICIES: tuple[EncodingPolicy, ...] = get_args(EncodingPolicy)
VERIFY_MODES: tuple[VerifyMode, ...] = get_args(VerifyMode)
Choice = TypeVar("Choice", bound=str)


@dataclass(frozen=True)
class Downstream:
    """Where a flow delivers: ``sftp://user@host:port/dir`` or ``file:///dir`` (a local folder)."""

    url: str
    scheme: Scheme
    host: str = ""
    port: int = 22
    username: str = ""
    path: str = "/"
    password_file: Path | None = None
    key_file: Path | None = None
    host_key: str | None = None
    known_hosts: Path | None = None
    remote_name: str = "{account}-{run_id}.zip"
    connect_timeout: float = 15.0
    max_attempts: int = 5
    retry_base_seconds: float = 30.0
    retry_max_seconds: float = 3600.0
    # How a delivery is made and verified (rostergate.forward.sftp's docstring; docs/operators.md
    # "Delivery guarantees"): write to .<name>.partial then rename, or straight to the final name;
    # then check the size by "stat" of the final name, "size-on-handle" (FSTAT before the close),
    # or "none" (every write's acknowledgement and the close status only).
    temp_name: bool = True
    verify: VerifyMode = "stat"


# Apple School Manager's drop box hides a file as soon as it is written (asm.md §2.4): no rename,
# no request on the name after the close. Its host gets those defaults.
APPLE_DROP_BOX_HOST = "upload.appleschoolcontent.com"


@dataclass(frozen=True)
class Retention:
    """How long a run's files (upload, output, reports) are kept: ``[retention]`` and ``[flows.retention]``.

    A settled run's files go once it is older than ``keep_days`` (since it finished)
    *and* not among the account's last ``keep_runs`` runs; a limit left out (None)
    does not hold anything back, and with neither set nothing is removed. The run's
    record and issues always stay (see :mod:`rostergate.runs.retention`).
    """

    keep_days: int | None = None
    keep_runs: int | None = None

    @property
    def enabled(self) -> bool:
        return self.keep_days is not None or self.keep_runs is not None


@dataclass(frozen=True)
class Flow:
    """``[[flows]]``: what the uploads of one account become, and where they are delivered."""

    account: str
    downstream: Downstream
    input: InputFormat = "auto"
    output: OutputFormat = "asm"
    profile: ProfileName = "strict"
    encoding: EncodingPolicy = "convert"  # UTF-16 / Windows-1252 uploads: convert with a warning, or reject
    mapping: ColumnMapping | None = None  # [flows.mapping], parsed by the converter's own parser
    safeguards: Thresholds = field(default_factory=Thresholds)  # [flows.safeguards]
    watch: Path | None = None  # watch mode: ZIPs another SFTP server drops here start runs too
    watch_settle_seconds: float = 2.0
    retention: Retention | None = None  # [flows.retention]; None: the server default ([retention])
    # Alerts: the server's [alerts] with this flow's [flows.alerts] over it; [flows.schedule]'s deadline.
    alerts: AlertSettings = field(default_factory=AlertSettings)
    schedule: Schedule | None = None  # [flows.schedule]


def cores() -> int:
    """The CPUs this process may run on (its affinity, as a container or ``taskset`` sets it), at least one."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class WorkerSettings:
    """``[server.workers]``: the processes that do a run's CPU work (see :mod:`rostergate.runs.workers`)."""

    # Runs of different accounts at the same time: one per core by default (one account's runs are
    # always processed one after the other).
    processes: int = field(default_factory=lambda: min(cores(), MAX_WORKER_PROCESSES))
    # RLIMIT_AS of each worker. A 200,000-student OneRoster run peaks at about 2.2 GB of
    # address space (1.0 GB resident); most of it is reserved, not used, by mimalloc and glibc.
    max_memory_mb: int = 8192
    max_run_seconds: float = 600.0


@dataclass(frozen=True)
class ServerSettings:
    listen_host: str = "127.0.0.1"
    listen_port: int = 2222
    public_host: str = "localhost"
    host_key: Path = Path("var/ssh_host_ed25519_key")
    data_dir: Path = Path("var")
    metrics_listen: str | None = None  # "127.0.0.1:9464" serves Prometheus metrics
    sftp: SftpSettings = field(default_factory=SftpSettings)  # limits, defender, algorithms
    workers: WorkerSettings = field(default_factory=WorkerSettings)
    # On SIGTERM: how long uploads and runs in progress may take to finish before the daemon stops anyway.
    stop_grace_seconds: float = 60.0
    # SFTP server processes sharing the listen port (SO_REUSEPORT); 1 serves in the daemon's own process.
    sftp_processes: int = 1


@dataclass(frozen=True)
class Settings:
    server: ServerSettings
    flows: tuple[Flow, ...] = ()
    source: Path | None = None  # the file the settings came from; None = embedded defaults
    demo: bool = False  # embedded defaults: create the demo account on start
    retention: Retention = field(default_factory=Retention)  # [retention]: the default of every flow
    retention_interval_seconds: float = 3600.0  # how often serve enforces it
    alerts: AlertSettings = field(default_factory=AlertSettings)  # [alerts]: accounts without a flow get these
    dispatch: DispatchSettings = field(default_factory=DispatchSettings)  # [alerts]: the dispatcher's keys

    def flow_for(self, account: str) -> Flow | None:
        return next((f for f in self.flows if f.account == account), None)

    def retention_for(self, account: str) -> Retention:
        """The account's flow's ``[flows.retention]`` (its keys over the server's), else ``[retention]``."""
        flow = self.flow_for(account)
        return flow.retention if flow is not None and flow.retention is not None else self.retention

    @property
    def retention_configured(self) -> bool:
        """Whether ``[retention]`` or any flow's ``[flows.retention]`` removes anything."""
        return self.retention.enabled or any(f.retention is not None and f.retention.enabled for f in self.flows)

    def alerts_for(self, account: str) -> AlertSettings:
        """Where ``account``'s alerts go: its flow's, else the server's ``[alerts]``."""
        flow = self.flow_for(account)
        return flow.alerts if flow is not None else self.alerts

    @property
    def data_dir(self) -> Path:
        return self.server.data_dir


@dataclass(frozen=True)
class ConfigSource:
    """Where the settings come from: a file, or (``path`` None) the embedded demo defaults."""

    path: Path | None
    reason: str  # what chose it: "--config", "$ROSTERGATE_CONFIG", "--demo", or the default location

    def describe(self) -> str:
        """One line for stderr, so an operator always knows which configuration a command used."""
        if self.path is None:
            return "using the embedded demo defaults (--demo): listen 127.0.0.1:2222, state under ./var"
        return f"using configuration {self.path} ({self.reason})"


def discover(explicit: Path | None = None, demo: bool = False, environ: Mapping[str, str] | None = None,
             system: Path = SYSTEM_CONFIG, local: Path = Path(DEFAULT_CONFIG_NAME)) -> ConfigSource:
    """Choose the configuration: ``--config``, ``$ROSTERGATE_CONFIG``, ``system``, ``local``; ``--demo`` on request.

    Raises :class:`ConfigError` when none is found, saying how to give one.
    """
    if explicit is not None and demo:
        raise ConfigError(["--demo: cannot be combined with --config (the demo uses the embedded defaults)"])
    if explicit is not None:
        return ConfigSource(Path(explicit), "--config")
    if demo:
        return ConfigSource(None, "--demo")
    env = os.environ if environ is None else environ
    if env.get(CONFIG_VARIABLE):
        return ConfigSource(Path(env[CONFIG_VARIABLE]), f"${CONFIG_VARIABLE}")
    for candidate in (system, local):
        try:
            found = candidate.exists()
        except PermissionError:  # it is there; reading it will say what is wrong
            found = True
        if found:
            return ConfigSource(candidate, "found at the default location")
    raise ConfigError([
        f"configuration: none found (--config, ${CONFIG_VARIABLE}, {system}, ./{local}); "
        "write one with 'rostergate init DIR', or try the embedded demo with 'rostergate --demo ...'"
    ])


def load_source(source: ConfigSource) -> Settings:
    """The settings of ``source`` (see :func:`discover`)."""
    return embedded_defaults() if source.path is None else load(source.path)


def load(path: Path) -> Settings:
    """Load settings from the TOML file ``path``; raises :class:`ConfigError` naming every wrong key."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not UTF-8 text"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    credentials = os.environ.get(CREDENTIALS_VARIABLE) or str(SERVICE_CREDENTIALS)
    return parse({key: _with_credentials(value, credentials) for key, value in raw.items()},
                 base=path.parent, source=path)


def _with_credentials(value: object, directory: str) -> object:
    """``value`` with ``${CREDENTIALS_DIRECTORY}`` (or ``$CREDENTIALS_DIRECTORY``) in its strings replaced."""
    if isinstance(value, str):
        for placeholder in ("${" + CREDENTIALS_VARIABLE + "}", "$" + CREDENTIALS_VARIABLE):
            value = value.replace(placeholder, directory)
        return value
    if isinstance(value, dict):
        return {key: _with_credentials(item, directory) for key, item in value.items()}
    if isinstance(value, list):
        return [_with_credentials(item, directory) for item in value]
    return value


def credential_out_of_reach(path: Path) -> bool:
    """``path`` is one of the service's credentials, looked at from outside the service while it is stopped.

    systemd hands credentials over (``LoadCredential=``) only to the running service, whose own
    ``check-config`` (``ExecStartPre=``) checks them; an operator's command such as
    ``accounts list`` must not fail for want of them.
    """
    return (not os.environ.get(CREDENTIALS_VARIABLE) and path.is_relative_to(SERVICE_CREDENTIALS)
            and not SERVICE_CREDENTIALS.exists())


def embedded_defaults() -> Settings:
    """The settings of the quick start: everything under ./var, a demo flow to ./var/outbox."""
    data_dir = Path("var")
    outbox = (data_dir / "outbox").resolve()
    demo_flow = Flow(
        account="demo",
        input="auto",
        output="asm",
        profile="asm",
        downstream=Downstream(url=outbox.as_uri(), scheme="file", path=str(outbox)),
    )
    server = ServerSettings(data_dir=data_dir, host_key=data_dir / "ssh_host_ed25519_key")
    return Settings(server=server, flows=(demo_flow,), source=None, demo=True)


class _Problems:
    """Collects ``key: reason`` lines while parsing."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, key: str, reason: str) -> None:
        self.items.append(f"{key}: {reason}")


_SERVER_KEYS = {"listen", "public_host", "host_key", "data_dir", "limits", "defender", "algorithms",
                "metrics_listen", "workers", "stop_grace_seconds", "sftp_processes"}
_FLOW_KEYS = {"account", "input", "output", "profile", "encoding", "downstream", "mapping", "safeguards", "watch",
              "watch_settle_seconds", "retention", "alerts", "schedule"}
_DOWNSTREAM_KEYS = {
    "url", "password_file", "key_file", "host_key", "known_hosts", "remote_name",
    "connect_timeout", "max_attempts", "retry_base_seconds", "retry_max_seconds", "temp_name", "verify",
}


Table = dict[str, object]  # a TOML table as tomllib returns it


def parse(raw: Mapping[str, object], base: Path = Path("."), source: Path | None = None) -> Settings:
    """Turn a parsed TOML document into :class:`Settings`; relative paths resolve against ``base``."""
    problems = _Problems()
    for key in raw:
        if key not in ("server", "flows", "alerts", "retention"):
            problems.add(key, "unknown section (expected [server], [alerts], [retention] or [[flows]])")
    server = _parse_server(raw.get("server", {}), base, problems)
    alert_defaults, alerts, dispatch = _parse_alerts(raw.get("alerts", {}), base, problems)
    retention, interval = Retention(), 3600.0
    if "retention" in raw:
        retention, interval = _parse_retention(raw["retention"], "retention", Retention(), problems, server_wide=True)
    flows_raw = raw.get("flows", [])
    flows: list[Flow] = []
    if not isinstance(flows_raw, list):
        problems.add("flows", "must be an array of tables ([[flows]])")
        flows_raw = []
    seen: set[str] = set()
    for index, table in enumerate(flows_raw):
        flow = _parse_flow(table, f"flows[{index}]", base, problems, retention)
        account = table.get("account") if isinstance(table, dict) else None
        if isinstance(account, str) and account:
            if account in seen:
                problems.add(f"flows[{index}].account", f"account '{account}' already has a flow")
            seen.add(account)
        if flow is not None and isinstance(table, dict):
            flows.append(_with_flow_alerts(flow, table, f"flows[{index}]", base, alert_defaults, problems))
    if problems.items:
        raise ConfigError(problems.items)
    return Settings(server=server, flows=tuple(flows), source=source, alerts=alerts, dispatch=dispatch,
                    retention=retention, retention_interval_seconds=interval)


_RETENTION_KEYS = ("keep_days", "keep_runs")


def _parse_retention(table: object, prefix: str, default: Retention, problems: _Problems,
                     server_wide: bool = False) -> tuple[Retention, float]:
    """``[retention]`` (with ``interval_seconds``) or ``[flows.retention]`` (its keys over ``default``).

    ``keep_days`` and ``keep_runs`` are whole numbers >= 0, or ``false`` to lift that
    limit where the server default sets it.
    """
    interval = 3600.0
    if not isinstance(table, dict):
        problems.add(prefix, "must be a table")
        return default, interval
    allowed = (*_RETENTION_KEYS, "interval_seconds") if server_wide else _RETENTION_KEYS
    for key in table:
        if key not in allowed:
            problems.add(f"{prefix}.{key}", f"unknown key (expected {', '.join(allowed)})")
    values: dict[str, int | None] = {key: getattr(default, key) for key in _RETENTION_KEYS}
    for key in _RETENTION_KEYS:
        if key not in table:
            continue
        value = table[key]
        if value is False:
            values[key] = None
        elif isinstance(value, bool) or not isinstance(value, int) or value < 0:
            problems.add(f"{prefix}.{key}", f"must be a whole number >= 0 (or false: no such limit), got {value!r}")
        else:
            values[key] = value
    if "interval_seconds" in table:
        interval = _seconds(table, "interval_seconds", interval, prefix, problems,
                            "must be a finite number of seconds >= 1", minimum=1)
    return Retention(values["keep_days"], values["keep_runs"]), interval


def _parse_alerts(table: object, base: Path, problems: _Problems) -> tuple[dict[str, Any], AlertSettings,
                                                                         DispatchSettings]:
    """``[alerts]``: the keys every flow inherits, the server default they make, and the dispatcher's."""
    defaults, found = parse_target(table, "alerts", base, server=True)
    problems.items.extend(found)
    settings, found = merge_alerts({}, defaults, "alerts")
    problems.items.extend(found)
    dispatch, found = parse_dispatch(table if isinstance(table, dict) else {}, "alerts")
    problems.items.extend(found)
    return defaults, settings, dispatch


def _with_flow_alerts(flow: Flow, table: dict[str, Any], prefix: str, base: Path, defaults: dict[str, Any],
                      problems: _Problems) -> Flow:
    """``flow`` with its alert settings (``[flows.alerts]`` over ``[alerts]``) and ``[flows.schedule]``."""
    overrides, found = parse_target(table.get("alerts", {}), f"{prefix}.alerts", base, server=False)
    problems.items.extend(found)
    alerts = AlertSettings()
    if overrides or defaults:
        alerts, found = merge_alerts(defaults, overrides, f"{prefix}.alerts" if overrides else "alerts")
        if overrides:  # the server default's own gaps are reported once, for [alerts]
            problems.items.extend(found)
    schedule = None
    if "schedule" in table:
        schedule, found = parse_flow_schedule(table["schedule"], f"{prefix}.schedule")
        problems.items.extend(found)
    return replace(flow, alerts=alerts, schedule=schedule)


REMOTE_NAME_FIELDS = ("account", "run_id")


def remote_name_problems(key: str, template: str) -> list[str]:
    """The delivered file's name template uses only ``{account}`` and ``{run_id}`` (checked at load,
    so a misspelt placeholder stops ``serve``, a reload and ``check-config`` rather than every run)."""
    bad = f"{key}: {template!r} is not a valid name template; write a literal brace as {{{{ or }}}}"
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]
    except ValueError:
        return [bad]
    unknown = [field for field in fields if field not in REMOTE_NAME_FIELDS]
    if unknown:
        return [f"{key}: unknown placeholder {{{unknown[0]}}}; use {{account}} and {{run_id}}"]
    try:
        template.format(account="a", run_id="r")
    except (ValueError, KeyError, IndexError, AttributeError):
        return [bad]
    return []


def _resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _parse_server(table: object, base: Path, problems: _Problems) -> ServerSettings:
    if not isinstance(table, dict):
        problems.add("server", "must be a table")
        return ServerSettings()
    for key in table:
        if key not in _SERVER_KEYS:
            problems.add(f"server.{key}", "unknown key")
    host, port = "127.0.0.1", 2222
    listen = table.get("listen", "127.0.0.1:2222")
    if not isinstance(listen, str) or ":" not in listen:
        problems.add("server.listen", f"expected 'HOST:PORT', got {listen!r}")
    else:
        host, _, port_text = listen.rpartition(":")
        host = host.strip("[]")
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            problems.add("server.listen", f"port must be 1-65535, got {port_text!r}")
        else:
            port = int(port_text)
    data_dir = _resolve(base, _string(table, "data_dir", "var", "server", problems))
    host_key_default = str(data_dir / "ssh_host_ed25519_key")
    host_key = _resolve(base, _string(table, "host_key", host_key_default, "server", problems))
    public_host = _string(table, "public_host", "localhost", "server", problems)
    metrics_listen = table.get("metrics_listen")
    if metrics_listen is not None and (
        not isinstance(metrics_listen, str) or not metrics_listen.rpartition(":")[2].isdigit()
    ):
        problems.add("server.metrics_listen", f"expected 'HOST:PORT', got {metrics_listen!r}")
        metrics_listen = None
    grace = _seconds(table, "stop_grace_seconds", 60.0, "server", problems, "must be a finite number of seconds >= 0",
                     minimum=0.0)
    sftp_processes = _whole(table, "sftp_processes", 1, "server", problems, 1, MAX_SFTP_PROCESSES)
    try:
        sftp = parse_sftp_settings(table, "server")
    except ConfigError as exc:
        problems.items.extend(exc.problems)
        sftp = SftpSettings()
    return ServerSettings(
        listen_host=host, listen_port=port, public_host=public_host,
        host_key=host_key, data_dir=data_dir, metrics_listen=metrics_listen, sftp=sftp,
        workers=_parse_workers(table.get("workers", {}), "server.workers", problems),
        stop_grace_seconds=grace, sftp_processes=sftp_processes,
    )


# Below this a worker cannot even import pandas and pyarrow (about 1 GB of address space).
MIN_WORKER_MEMORY_MB = 256
MAX_WORKER_PROCESSES = 64
MAX_SFTP_PROCESSES = 64


def _parse_workers(table: object, prefix: str, problems: _Problems) -> WorkerSettings:
    """``[server.workers]``: whole numbers for ``processes`` and ``max_memory_mb``, finite positive seconds."""
    base = WorkerSettings()
    if not isinstance(table, dict):
        problems.add(prefix, "must be a table")
        return base
    for key in table:
        if key not in ("processes", "max_memory_mb", "max_run_seconds"):
            problems.add(f"{prefix}.{key}", "unknown key (expected processes, max_memory_mb, max_run_seconds)")
    return WorkerSettings(
        _whole(table, "processes", base.processes, prefix, problems, 1, MAX_WORKER_PROCESSES),
        _whole(table, "max_memory_mb", base.max_memory_mb, prefix, problems, MIN_WORKER_MEMORY_MB),
        _seconds(table, "max_run_seconds", base.max_run_seconds, prefix, problems,
                 "must be a finite number of seconds > 0"),
    )


def _whole(table: Table, key: str, default: int, prefix: str, problems: _Problems, low: int,
           high: int | None = None) -> int:
    """``table[key]``, a whole number from ``low`` to ``high`` (no bool), else ``default`` and a problem."""
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        limits = f"from {low} to {high}" if high is not None else f">= {low}"
        problems.add(f"{prefix}.{key}", f"must be a whole number {limits}, got {value!r}")
        return default
    return value


def _seconds(table: Table, key: str, default: float, prefix: str, problems: _Problems, reason: str,
             minimum: float | None = None) -> float:
    """``table[key]`` as a float: finite, and above 0 (or at least ``minimum``), else ``default`` and a problem.

    TOML allows ``nan`` and ``inf``, and ``true`` is an int to Python: no duration or count may be one.
    """
    value = table.get(key, default)
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or (value < minimum if minimum is not None else value <= 0)):
        problems.add(f"{prefix}.{key}", f"{reason}, got {value!r}")
        return default
    return float(value)


def _string(table: Table, key: str, default: str, prefix: str, problems: _Problems) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or not value:
        problems.add(f"{prefix}.{key}", f"must be a non-empty string, got {value!r}")
        return default
    return value


def _choice(table: Table, key: str, choices: tuple[Choice, ...], prefix: str, problems: _Problems) -> Choice:
    """``table[key]`` when it is one of ``choices`` (default: the first), else the first and a problem."""
    value = table.get(key, choices[0])
    for choice in choices:
        if value == choice:
            return choice
    problems.add(f"{prefix}.{key}", f"must be one of {', '.join(choices)}; got {value!r}")
    return choices[0]


def _parse_flow(table: object, prefix: str, base: Path, problems: _Problems,
                default_retention: Retention = Retention()) -> Flow | None:
    """The flow of ``table``; None when it cannot be built (``problems`` then says why)."""
    if not isinstance(table, dict):
        problems.add(prefix, "must be a table")
        return None
    for key in table:
        if key not in _FLOW_KEYS:
            problems.add(f"{prefix}.{key}", "unknown key")
    account = table.get("account")
    if not isinstance(account, str) or not account:
        problems.add(f"{prefix}.account", "required: the file account whose uploads start this flow")
        return None
    downstream = None
    if "downstream" in table:
        downstream = _parse_downstream(table["downstream"], f"{prefix}.downstream", base, problems)
    else:
        problems.add(f"{prefix}.downstream", "required: where this flow delivers ([flows.downstream] url = ...)")
    watch = None
    if "watch" in table:
        if not isinstance(table["watch"], str) or not table["watch"]:
            problems.add(f"{prefix}.watch", "must be the path of a folder to watch")
        else:
            watch = _resolve(base, table["watch"])
    settle = _seconds(table, "watch_settle_seconds", 2.0, prefix, problems,
                      "must be a finite number of seconds >= 0", minimum=0.0)
    safeguards = Thresholds()
    if "safeguards" in table:
        safeguards, safeguard_problems = parse_thresholds(table["safeguards"], f"{prefix}.safeguards")
        problems.items.extend(safeguard_problems)
    mapping = None
    if "mapping" in table:
        mapping, mapping_problems = parse_mapping(table["mapping"], f"{prefix}.mapping")
        problems.items.extend(mapping_problems)
    retention = None
    if "retention" in table:
        retention, _ = _parse_retention(table["retention"], f"{prefix}.retention", default_retention, problems)
    choices = (_choice(table, "input", INPUT_FORMATS, prefix, problems),
               _choice(table, "output", OUTPUT_FORMATS, prefix, problems),
               _choice(table, "profile", PROFILES, prefix, problems),
               _choice(table, "encoding", ENCODING_POLICIES, prefix, problems))
    if downstream is None:  # required; its problems are listed
        return None
    return Flow(
        account=account,
        downstream=downstream,
        input=choices[0],
        output=choices[1],
        profile=choices[2],
        encoding=choices[3],
        mapping=mapping,
        safeguards=safeguards,
        watch=watch,
        watch_settle_seconds=settle,
        retention=retention,
    )


def _parse_downstream(table: object, prefix: str, base: Path, problems: _Problems) -> Downstream | None:
    if not isinstance(table, dict):
        problems.add(prefix, "must be a table")
        return None
    for key in table:
        if key not in _DOWNSTREAM_KEYS:
            problems.add(f"{prefix}.{key}", "unknown key")
    url = table.get("url")
    if not isinstance(url, str):
        problems.add(f"{prefix}.url", "required: sftp://user@host:22/path or file:///path")
        return None
    parts = urlsplit(url)
    positive = "must be a finite positive number"
    connect_timeout = _seconds(table, "connect_timeout", 15.0, prefix, problems, positive)
    max_attempts = _whole(table, "max_attempts", 5, prefix, problems, 1)
    retry_base_seconds = _seconds(table, "retry_base_seconds", 30.0, prefix, problems, positive)
    retry_max_seconds = _seconds(table, "retry_max_seconds", 3600.0, prefix, problems, positive)
    remote_name = table.get("remote_name", "{account}-{run_id}.zip")
    if not isinstance(remote_name, str) or "/" in remote_name:
        problems.add(f"{prefix}.remote_name", "must be a file name template without '/'")
        remote_name = "{account}-{run_id}.zip"
    for problem in remote_name_problems(f"{prefix}.remote_name", remote_name):
        problems.items.append(problem)
    folder = Downstream(url=url, scheme="file", path=unquote(parts.path), remote_name=remote_name,
                        connect_timeout=connect_timeout, max_attempts=max_attempts,
                        retry_base_seconds=retry_base_seconds, retry_max_seconds=retry_max_seconds)
    if parts.scheme == "file":
        for key in ("temp_name", "verify"):
            if key in table:
                problems.add(f"{prefix}.{key}", "applies to sftp:// downstreams only: a folder delivery always "
                                                "writes a temporary file, fsyncs it, checks its size and renames it")
        return folder
    if parts.scheme != "sftp":
        problems.add(f"{prefix}.url", f"scheme must be sftp:// or file://, got {parts.scheme or 'none'!r}")
        return None
    if not parts.hostname:
        problems.add(f"{prefix}.url", "needs a host: sftp://user@host:22/path")
        return None
    if not parts.username:
        problems.add(f"{prefix}.url", "needs a user name: sftp://user@host:22/path")
    if parts.password:
        problems.add(f"{prefix}.url", "must not contain a password; use password_file")
    try:
        port = parts.port or 22
    except ValueError:
        problems.add(f"{prefix}.url", "port must be 1-65535")
        port = 22
    password_file: Path | None = None
    key_file: Path | None = None
    known_hosts: Path | None = None
    for key in ("password_file", "key_file", "known_hosts"):
        if key in table:
            value = table[key]
            if not isinstance(value, str) or not value:
                problems.add(f"{prefix}.{key}", "must be a path")
                continue
            resolved = _resolve(base, value)
            if not resolved.is_file() and not credential_out_of_reach(resolved):
                problems.add(f"{prefix}.{key}", f"file not found: {resolved}")
            if key == "password_file":
                password_file = resolved
            elif key == "key_file":
                key_file = resolved
            else:
                known_hosts = resolved
    if password_file is None and key_file is None:
        problems.add(prefix, "needs password_file or key_file to log in downstream")
    host_key = _host_key(table.get("host_key"), f"{prefix}.host_key", problems)
    if host_key is None and known_hosts is None:
        problems.add(prefix, "needs host_key or known_hosts: the downstream host key must be pinned")
    temp_name, verify = _delivery_mode(table, parts.hostname, prefix, problems)
    return dataclasses.replace(
        folder, scheme="sftp", host=parts.hostname, port=port, username=unquote(parts.username or ""),
        path=unquote(parts.path) or "/", password_file=password_file, key_file=key_file,
        host_key=host_key, known_hosts=known_hosts, temp_name=temp_name, verify=verify,
    )


def _host_key(value: object, key: str, problems: _Problems) -> str | None:
    """The pinned ``host_key`` line when given and well formed, else None.

    Its shape is checked here without paramiko (every CLI command loads the configuration);
    ``check-config`` and ``serve`` parse it into a key too (:func:`rostergate.checks.flow_problems`).
    """
    if value is None:
        return None
    try:
        check_key_line(value if isinstance(value, str) else "")
    except ValueError as exc:
        problems.add(key, f"expected an OpenSSH public key line 'ssh-ed25519 AAAA...': {exc}")
        return None
    assert isinstance(value, str)
    return value


def _delivery_mode(table: Table, host: str, prefix: str, problems: _Problems) -> tuple[bool, VerifyMode]:
    """``temp_name`` and ``verify`` with their defaults: Apple's drop box gets no rename and no stat."""
    temp_name = table.get("temp_name", host.lower() != APPLE_DROP_BOX_HOST)
    if not isinstance(temp_name, bool):
        problems.add(f"{prefix}.temp_name", f"must be true or false, got {temp_name!r}")
        temp_name = True
    if "verify" not in table:
        return temp_name, "stat" if temp_name else "size-on-handle"
    return temp_name, _choice(table, "verify", VERIFY_MODES, prefix, problems)  # a wrong value: "stat"
