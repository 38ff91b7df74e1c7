"""TOML configuration → typed, validated settings.

Every error names the key it is about (``flows[0].downstream.url: ...``) and
all errors of a file are reported together, so ``check-config`` shows the whole
list at once. Without a file, :func:`load` returns the embedded defaults: listen
on 127.0.0.1:2222, all state under ``./var``, and a ``demo`` account whose flow
delivers into a local folder (no other server needed).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

DEFAULT_CONFIG_NAME = "rostergate.toml"
INPUT_FORMATS = ("auto", "asm", "oneroster")
OUTPUT_FORMATS = ("asm", "same")
PROFILES = ("strict", "asm")


class ConfigError(Exception):
    """The configuration is wrong; ``problems`` holds one ``key: reason`` per mistake."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class Downstream:
    """Where a flow delivers: ``sftp://user@host:port/dir`` or ``file:///dir`` (a local folder)."""

    url: str
    scheme: str
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


@dataclass(frozen=True)
class Flow:
    account: str
    input: str = "auto"
    output: str = "asm"
    profile: str = "strict"
    encoding: str = "convert"  # UTF-16 / Windows-1252 uploads: convert with a warning, or reject
    downstream: Downstream | None = None
    mapping: Any = None  # rostergate.formats.mapping.Mapping, parsed by the converter's own parser
    safeguards: Any = None  # rostergate.safeguard.Thresholds
    watch: Path | None = None  # watch mode: ZIPs another SFTP server drops here start runs too
    watch_settle_seconds: float = 2.0


@dataclass(frozen=True)
class ServerSettings:
    listen_host: str = "127.0.0.1"
    listen_port: int = 2222
    public_host: str = "localhost"
    host_key: Path = Path("var/ssh_host_ed25519_key")
    data_dir: Path = Path("var")
    metrics_listen: str | None = None  # "127.0.0.1:9464" serves Prometheus metrics
    sftp: Any = None  # rostergate.sftp.settings.SftpSettings


@dataclass(frozen=True)
class Settings:
    server: ServerSettings
    flows: tuple[Flow, ...] = ()
    source: Path | None = None  # the file the settings came from; None = embedded defaults
    demo: bool = False  # embedded defaults: create the demo account on start

    def flow_for(self, account: str) -> Flow | None:
        return next((f for f in self.flows if f.account == account), None)

    @property
    def data_dir(self) -> Path:
        return self.server.data_dir


def load(path: Path | None) -> Settings:
    """Load settings from ``path``; without one, ``./rostergate.toml`` if present, else defaults."""
    if path is None:
        candidate = Path(DEFAULT_CONFIG_NAME)
        if not candidate.exists():
            return embedded_defaults()
        path = candidate
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None
    return parse(raw, base=path.parent, source=path)


def embedded_defaults() -> Settings:
    """The settings of the quick start: everything under ./var, a demo flow to ./var/outbox."""
    from rostergate.sftp.settings import SftpSettings

    data_dir = Path("var")
    outbox = (data_dir / "outbox").resolve()
    from rostergate.safeguard import Thresholds

    demo_flow = Flow(
        account="demo",
        safeguards=Thresholds(),
        input="auto",
        output="asm",
        profile="asm",
        downstream=Downstream(url=outbox.as_uri(), scheme="file", path=str(outbox)),
    )
    server = ServerSettings(data_dir=data_dir, host_key=data_dir / "ssh_host_ed25519_key", sftp=SftpSettings())
    return Settings(server=server, flows=(demo_flow,), source=None, demo=True)


class _Problems:
    """Collects ``key: reason`` lines while parsing."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, key: str, reason: str) -> None:
        self.items.append(f"{key}: {reason}")


_SERVER_KEYS = {"listen", "public_host", "host_key", "data_dir", "limits", "defender", "algorithms",
                "metrics_listen"}
ENCODING_POLICIES = ("convert", "reject")
_FLOW_KEYS = {"account", "input", "output", "profile", "encoding", "downstream", "mapping", "safeguards", "watch",
              "watch_settle_seconds"}
_DOWNSTREAM_KEYS = {
    "url", "password_file", "key_file", "host_key", "known_hosts", "remote_name",
    "connect_timeout", "max_attempts", "retry_base_seconds", "retry_max_seconds",
}


def parse(raw: dict, base: Path = Path("."), source: Path | None = None) -> Settings:
    """Turn a parsed TOML document into :class:`Settings`; relative paths resolve against ``base``."""
    problems = _Problems()
    for key in raw:
        if key not in ("server", "flows"):
            problems.add(key, "unknown section (expected [server] or [[flows]])")
    server = _parse_server(raw.get("server", {}), base, problems)
    flows_raw = raw.get("flows", [])
    flows: list[Flow] = []
    if not isinstance(flows_raw, list):
        problems.add("flows", "must be an array of tables ([[flows]])")
        flows_raw = []
    seen: set[str] = set()
    for index, table in enumerate(flows_raw):
        flow = _parse_flow(table, f"flows[{index}]", base, problems)
        if flow is None:
            continue
        if flow.account in seen:
            problems.add(f"flows[{index}].account", f"account '{flow.account}' already has a flow")
        seen.add(flow.account)
        flows.append(flow)
    if problems.items:
        raise ConfigError(problems.items)
    return Settings(server=server, flows=tuple(flows), source=source)


def _resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _parse_server(table: Any, base: Path, problems: _Problems) -> ServerSettings:
    from rostergate.sftp.settings import SftpSettings, parse_sftp_settings

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
    try:
        sftp = parse_sftp_settings(table, "server")
    except ConfigError as exc:
        problems.items.extend(exc.problems)
        sftp = SftpSettings()
    return ServerSettings(
        listen_host=host, listen_port=port, public_host=public_host,
        host_key=host_key, data_dir=data_dir, metrics_listen=metrics_listen, sftp=sftp,
    )


def _string(table: dict, key: str, default: str, prefix: str, problems: _Problems) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or not value:
        problems.add(f"{prefix}.{key}", f"must be a non-empty string, got {value!r}")
        return default
    return value


def _choice(table: dict, key: str, choices: tuple[str, ...], prefix: str, problems: _Problems) -> str:
    value = table.get(key, choices[0])
    if value not in choices:
        problems.add(f"{prefix}.{key}", f"must be one of {', '.join(choices)}; got {value!r}")
        return choices[0]
    return value


def _parse_flow(table: Any, prefix: str, base: Path, problems: _Problems) -> Flow | None:
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
    settle = table.get("watch_settle_seconds", 2.0)
    if not isinstance(settle, (int, float)) or isinstance(settle, bool) or settle < 0:
        problems.add(f"{prefix}.watch_settle_seconds", f"must be a number of seconds >= 0, got {settle!r}")
        settle = 2.0
    from rostergate.safeguard import Thresholds, parse_thresholds

    safeguards = Thresholds()
    if "safeguards" in table:
        safeguards, safeguard_problems = parse_thresholds(table["safeguards"], f"{prefix}.safeguards")
        problems.items.extend(safeguard_problems)
    mapping = None
    if "mapping" in table:
        mapping = _parse_mapping(table["mapping"], f"{prefix}.mapping", problems)
    return Flow(
        account=account,
        input=_choice(table, "input", INPUT_FORMATS, prefix, problems),
        output=_choice(table, "output", OUTPUT_FORMATS, prefix, problems),
        profile=_choice(table, "profile", PROFILES, prefix, problems),
        encoding=_choice(table, "encoding", ENCODING_POLICIES, prefix, problems),
        downstream=downstream,
        mapping=mapping,
        safeguards=safeguards,
        watch=watch,
        watch_settle_seconds=float(settle),
    )


def _parse_mapping(table: Any, prefix: str, problems: _Problems) -> Any:
    try:
        from rostergate.formats.mapping import parse_mapping
    except ImportError:  # the converter's mapping parser is not installed yet
        problems.add(prefix, "mapping options are not supported by this build")
        return None
    try:
        return parse_mapping(table, prefix)
    except ConfigError as exc:
        problems.items.extend(exc.problems)
        return None


def _parse_downstream(table: Any, prefix: str, base: Path, problems: _Problems) -> Downstream | None:
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
    numbers = {}
    for key, default in (("connect_timeout", 15.0), ("max_attempts", 5), ("retry_base_seconds", 30.0),
                         ("retry_max_seconds", 3600.0)):
        value = table.get(key, default)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            problems.add(f"{prefix}.{key}", f"must be a positive number, got {value!r}")
            value = default
        numbers[key] = value
    remote_name = table.get("remote_name", "{account}-{run_id}.zip")
    if not isinstance(remote_name, str) or "/" in remote_name:
        problems.add(f"{prefix}.remote_name", "must be a file name template without '/'")
        remote_name = "{account}-{run_id}.zip"
    common = dict(
        url=url, remote_name=remote_name,
        connect_timeout=float(numbers["connect_timeout"]),
        max_attempts=int(numbers["max_attempts"]),
        retry_base_seconds=float(numbers["retry_base_seconds"]),
        retry_max_seconds=float(numbers["retry_max_seconds"]),
    )
    if parts.scheme == "file":
        return Downstream(scheme="file", path=unquote(parts.path), **common)
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
    password_file = key_file = known_hosts = None
    for key in ("password_file", "key_file", "known_hosts"):
        if key in table:
            value = table[key]
            if not isinstance(value, str) or not value:
                problems.add(f"{prefix}.{key}", "must be a path")
                continue
            resolved = _resolve(base, value)
            if not resolved.is_file():
                problems.add(f"{prefix}.{key}", f"file not found: {resolved}")
            if key == "password_file":
                password_file = resolved
            elif key == "key_file":
                key_file = resolved
            else:
                known_hosts = resolved
    if password_file is None and key_file is None:
        problems.add(prefix, "needs password_file or key_file to log in downstream")
    host_key = table.get("host_key")
    if host_key is not None:
        from rostergate.forward import parse_host_key

        try:
            parse_host_key(host_key if isinstance(host_key, str) else "")
        except ValueError as exc:
            problems.add(f"{prefix}.host_key", f"expected an OpenSSH public key line 'ssh-ed25519 AAAA...': {exc}")
            host_key = None
    if host_key is None and known_hosts is None:
        problems.add(prefix, "needs host_key or known_hosts: the downstream host key must be pinned")
    return Downstream(
        scheme="sftp", host=parts.hostname, port=port, username=unquote(parts.username or ""),
        path=unquote(parts.path) or "/", password_file=password_file, key_file=key_file,
        host_key=host_key, known_hosts=known_hosts, **common,
    )
