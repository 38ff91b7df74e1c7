"""Commands only: parse, call, print (tables for people, JSON with ``--json``).

Exit codes: 0 success, 1 a refused request or an invalid upload, 2 unreadable
input or a broken configuration. No user error ends in a traceback:
:class:`RostergateGroup` is the one place that turns our errors and the
operating system's into one line each (``error: ...`` / ``config error: key: ...``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, NotRequired, TypedDict, cast

import click

from rostergate import config as config_module
from rostergate import store, timeutil
from rostergate.errors import AccountError, ConfigError, RostergateError, RunError
from rostergate.printable import json_safe, printable
from rostergate.runstatus import RunStatus

if TYPE_CHECKING:  # imported where used, so that a command loads only what it needs
    from datetime import datetime

    from rostergate.accountrecords import Account, AccountRecords
    from rostergate.accounts import AccountStore
    from rostergate.formats.read.text import EncodingPolicy
    from rostergate.history import Actor, History, Run
    from rostergate.runs.lifecycle import Lifecycle


class Context:
    """Lazily finds and loads the settings and opens the store, so ``validate`` needs neither."""

    def __init__(self, config_path: Path | None, demo: bool = False, log_level: str = "info"):
        self.config_path = config_path
        self.demo = demo
        self.log_level = log_level
        # `serve` logs it instead (one JSON object a line)
        self.announce: Callable[[str], None] = lambda line: say(line, err=True)
        self._source: config_module.ConfigSource | None = None
        self._settings: config_module.Settings | None = None
        self._conn: sqlite3.Connection | None = None

    @property
    def source(self) -> config_module.ConfigSource:
        """The configuration in use; a discovered one is named on stderr (stdout stays the command's)."""
        if self._source is None:
            self._source = config_module.discover(self.config_path, self.demo)
            if self._source.reason != "--config":
                self.announce(self._source.describe())
        return self._source

    @property
    def settings(self) -> config_module.Settings:
        if self._settings is None:
            self._settings = config_module.load_source(self.source)
        return self._settings

    def configure_logging(self) -> None:
        """Set up structlog and the standard library's loggers at ``--log-level`` (:mod:`rostergate.logs`)."""
        from rostergate import logs

        logs.configure(level=logs.LEVELS[self.log_level])

    def reload(self) -> config_module.Settings:
        """The settings read again from the same place (``serve`` on SIGHUP)."""
        return config_module.load_source(self.source)

    def state_dir(self) -> Path:
        """The state directory, refused to root when it belongs to the service user."""
        store.refuse_foreign_state(self.settings.data_dir)
        return self.settings.data_dir

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            data_dir = self.state_dir()
            try:
                self._conn = store.connect(data_dir)
            except OSError as exc:
                reason = exc.strerror or exc
                raise ConfigError([f"server.data_dir: cannot create or open {data_dir}: {reason}"]) from None
        return self._conn

    def accounts(self) -> AccountStore:
        from rostergate.accounts import AccountStore

        return AccountStore(self.conn, self.settings.data_dir)

    def account_records(self) -> AccountRecords:
        """The accounts for reading only: no password hashing or key parsing is loaded."""
        from rostergate.accountrecords import AccountRecords

        return AccountRecords(self.conn, self.settings.data_dir)

    def history(self) -> Any:  # History: Any until its show/stats JSON dicts get TypedDicts
        from rostergate.history import History

        return History(self.conn)

    def lifecycle(self) -> Lifecycle:
        from rostergate.runs.lifecycle import Lifecycle

        return Lifecycle(self.history(), self.accounts().home)


pass_context = click.make_pass_decorator(Context)


def say(message: object = "", err: bool = False, nl: bool = True) -> None:
    """Print for a person: tenant-supplied text (upload names, values) cannot drive the terminal."""
    click.echo(printable(str(message), keep_newlines=True), err=err, nl=nl)


def emit_json(data: object) -> None:
    click.echo(json_safe(json.dumps(data, indent=2, ensure_ascii=False)))


def table(rows: list[list[str]], headers: list[str]) -> None:
    """Print ``rows`` under ``headers`` in left-aligned columns (one write: ``runs list`` prints 1000 lines)."""
    cells = [[printable(str(v)) for v in row] for row in [headers, *rows]]
    widths = [max(len(x) for x in column) for column in zip(*cells)]
    click.echo("\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells))


@contextmanager
def account_errors() -> Iterator[None]:
    """Turn a refused account request into ``error: ...`` and exit code 1."""
    try:
        yield
    except AccountError as exc:
        fail(str(exc))


@contextmanager
def run_errors() -> Iterator[None]:
    """Turn a refused run request (no such run, or its status does not allow it) into ``error: ...``, exit 1."""
    try:
        yield
    except RunError as exc:
        fail(str(exc))


def audited(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--by NAME`` and ``--reason TEXT`` for a command the audit trail records (``rostergate audit``)."""
    command = click.option("--reason", help="Why: kept in the audit trail (never write a secret here).")(command)
    return click.option("--by", "by", metavar="NAME",
                        help="Who decides, for the audit trail (default: the user running this command).")(command)


def actor(by: str | None, reason: str | None) -> Actor:
    """The audit trail's who and why of this command."""
    from rostergate.history import Actor

    for option, value, limit in (("--by", by, 100), ("--reason", reason, 1000)):
        if value is not None and (not value.strip() or len(value) > limit):
            fail(f"{option}: give 1 to {limit} characters", 2)
    return Actor.current(by.strip() if by else None, reason.strip() if reason else None)


def fail(message: str, code: int = 1) -> NoReturn:
    say(f"error: {message}", err=True)
    sys.exit(code)


def _os_error(exc: OSError) -> str:
    """``path: reason`` of an operating system error, without Python's ``[Errno N]``."""
    reason = exc.strerror or str(exc)
    names = [str(name) for name in (exc.filename, exc.filename2) if name is not None]
    return f"{' -> '.join(names)}: {reason}" if names else reason


def new_file_in_existing_folder(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """An output file option: its folder must exist and be writable, checked before any work is done."""
    if value is None:
        return None
    folder = value.parent
    if not folder.is_dir():
        raise click.BadParameter(f"{value}: the folder {folder} does not exist", ctx, param)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise click.BadParameter(f"{value}: the folder {folder} is not writable by this user", ctx, param)
    return value


class RostergateCommand(click.Command):
    """A command whose log lines go where :mod:`rostergate.logs` says: it is set up before the command runs.

    ``logs=False`` marks a command that only reads the store and prints (``runs list``): it skips
    that set-up and never loads structlog (tests/core/test_cli_startup.py checks it), so it starts
    faster; without structlog loaded nothing it runs can write a log line to stdout.
    """

    def __init__(self, *args: Any, logs: bool = True, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.logs = logs

    def invoke(self, ctx: click.Context) -> Any:
        if self.logs:
            context = ctx.find_object(Context)
            assert context is not None, "main() makes the Context before any command runs"
            context.configure_logging()
        return super().invoke(ctx)


class RostergateGroup(click.Group):
    """The command group whose :meth:`invoke` turns every user error into one line and an exit code."""

    command_class = RostergateCommand
    group_class = type  # its groups (accounts, runs) are RostergateGroups, their commands RostergateCommands

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            for problem in exc.problems:
                say(f"config error: {problem}", err=True)
            sys.exit(2)
        except AccountError as exc:
            fail(str(exc), 1)
        except RostergateError as exc:
            fail(str(exc), 2)
        except sqlite3.Error as exc:
            fail(f"the state store cannot be used: {exc}", 2)
        except OSError as exc:
            fail(_os_error(exc), 2)


@click.group(cls=RostergateGroup)
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="TOML configuration. Default: $ROSTERGATE_CONFIG, then /etc/rostergate/rostergate.toml, "
                   "then ./rostergate.toml (the one used is named on stderr).")
@click.option("--demo", is_flag=True,
              help="Use the embedded demo defaults: listen 127.0.0.1:2222, state under ./var, a 'demo' account.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True, help="The least severe log lines written to stderr.")
@click.version_option(package_name="rostergate")
@click.pass_context
def main(ctx: click.Context, config_path: Path | None, demo: bool, log_level: str) -> None:
    """rostergate: SFTP intake, validation, conversion and forwarding of rostering data."""
    # Student data and secrets: whatever any command (serve included) creates is owner-only,
    # whatever umask the shell or the unit started us with.
    os.umask(0o077)
    ctx.obj = Context(config_path, demo, log_level)  # logging is set up by each command (RostergateCommand)


# -- serve / check-config / init ---------------------------------------------------
@main.command()
@pass_context
def serve(ctx: Context) -> None:
    """Run the SFTP server and the pipeline: SIGHUP reloads, SIGTERM drains and stops (twice: at once)."""
    import asyncio

    from rostergate import logs
    from rostergate.daemon import serve as run_daemon

    if not logs.is_json():
        ctx.state_dir()
        asyncio.run(run_daemon(ctx.settings, ctx.reload))
        return
    _serve_logged(ctx, run_daemon)


def _serve_logged(ctx: Context, run_daemon: Any) -> None:
    """``serve`` whose every stderr line is a JSON object: what stops it is logged, not printed
    (the exit codes are those of :class:`RostergateGroup`; anything else exits 1 with its traceback
    as the ``exception`` field)."""
    import asyncio

    import structlog

    log = structlog.get_logger("rostergate.daemon")
    ctx.announce = lambda line: log.info("config_source", message=line)
    try:
        ctx.state_dir()
        asyncio.run(run_daemon(ctx.settings, ctx.reload))
    except ConfigError as exc:
        log.error("serve_refused", problems=[f"config error: {p}" for p in exc.problems])
        sys.exit(2)
    except (RostergateError, sqlite3.Error, OSError) as exc:
        message = _os_error(exc) if isinstance(exc, OSError) else str(exc)
        log.error("serve_refused", problems=[f"error: {message}"])
        sys.exit(1 if isinstance(exc, AccountError) else 2)
    except Exception:  # noqa: BLE001 - the last word of a crashing daemon is a JSON line, traceback included
        log.critical("serve_crashed", exc_info=True)
        sys.exit(1)


@main.command("check-config")
@click.option("--connect", is_flag=True,
              help="Also log in to each SFTP downstream and check that its folder exists (nothing is written).")
@pass_context
def check_config(ctx: Context, connect: bool) -> None:
    """Check the configuration and everything serve would fail on; one line per problem (exit 2 if any)."""
    from rostergate import checks

    settings = ctx.settings
    ctx.state_dir()
    problems = checks.run(settings, connect=connect)
    if problems:
        raise ConfigError(problems)
    where = settings.source or "embedded defaults"
    say(f"configuration OK ({where}): {len(settings.flows)} flow(s), "
        f"listen {settings.server.listen_host}:{settings.server.listen_port}")


@main.command()
@click.argument("directory", default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="The state directory to create (default: DIRECTORY/var), e.g. /var/lib/rostergate.")
@click.option("--user", "owner", metavar="USER",
              help="Give the state directory to this user (the service's, e.g. rostergate); needs root.")
@click.option("--force", is_flag=True, help="Replace an existing DIRECTORY/rostergate.toml.")
def init(directory: Path, data_dir: Path | None, owner: str | None, force: bool) -> None:
    """Write a commented DIRECTORY/rostergate.toml and create its owner-only state directory."""
    import pwd

    from rostergate.scaffold import CONFIG_NAME, Owner, init_site

    service_user = None
    if owner is not None:
        try:
            entry = pwd.getpwnam(owner)
        except KeyError:
            raise click.BadParameter(f"no user {owner!r}; create it first (systemd-sysusers, see docs/install.md)",
                                     param_hint="--user") from None
        if os.geteuid() != 0:
            raise click.BadParameter("only root can give the state directory to another user", param_hint="--user")
        service_user = Owner(owner, entry.pw_uid, entry.pw_gid)
    if (directory / CONFIG_NAME).exists() and not force:
        fail(f"{directory / CONFIG_NAME} already exists; edit it, or give --force to replace it", 1)
    site = init_site(directory, data_dir, service_user, replace=force)
    say(f"wrote {site.config}")
    say(f"state directory {site.data_dir} (mode 0700, owner {site.owner})")
    say(f"next: add a [[flows]] entry, then: rostergate --config {site.config} check-config")


# -- accounts --------------------------------------------------------------------
@main.group()
def accounts() -> None:
    """Tenant file accounts."""


class Credentials(TypedDict):
    """What a tenant needs to connect (``accounts create/show/password --json``)."""

    name: str
    host: str
    port: int
    username: str
    public_keys: list[str]
    host_key_fingerprint: str | None
    disabled: bool
    password: NotRequired[str]  # only when it was just set: it is never stored in clear


def _credentials(ctx: Context, account: Account, password: str | None) -> Credentials:
    from rostergate.sftp.server import host_key_fingerprint

    server = ctx.settings.server
    data: Credentials = {
        "name": account.name,
        "host": server.public_host,
        "port": server.listen_port,
        "username": account.name,
        "public_keys": list(account.public_keys),
        "host_key_fingerprint": host_key_fingerprint(server.host_key),
        "disabled": account.disabled,
    }
    if password is not None:
        data["password"] = password
    return data


def _print_credentials(data: Credentials) -> None:
    say(f"account:   {data['name']}")
    say(f"host:      {data['host']}")
    say(f"port:      {data['port']}")
    say(f"username:  {data['username']}")
    if "password" in data:
        say(f"password:  {data['password']}   (shown only now; store it safely)")
    for key in data["public_keys"]:
        say(f"key:       {key[:60]}...")
    say(f"host key:  {data['host_key_fingerprint'] or 'generated on first start of serve'}")


def _read_keys(files: tuple[Path, ...]) -> str:
    try:
        return "\n".join(Path(f).read_text(encoding="utf-8") for f in files)
    except OSError as exc:
        fail(f"cannot read public key file: {exc}", 2)
        raise  # unreachable


@accounts.command("create")
@click.argument("name")
@click.option("--public-key", "public_keys", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="An OpenSSH public key or authorized_keys file; may be repeated.")
@click.option("--no-password", is_flag=True, help="Key-only account: no password is generated.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the documented shape) instead of text.")
@audited
@pass_context
def accounts_create(ctx: Context, name: str, public_keys: tuple[Path, ...], no_password: bool, as_json: bool,
                    by: str | None, reason: str | None) -> None:
    """Create a file account; prints its connection details and, once, its password."""
    with account_errors():
        account, password = ctx.accounts().create(name, _read_keys(public_keys), with_password=not no_password,
                                                  by=actor(by, reason))
    data = _credentials(ctx, account, password)
    emit_json(data) if as_json else _print_credentials(data)


@accounts.command("list", logs=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the documented shape) instead of text.")
@pass_context
def accounts_list(ctx: Context, as_json: bool) -> None:
    """List file accounts."""
    flows = {f.account for f in ctx.settings.flows}
    items = ctx.account_records().list()
    if as_json:
        emit_json([
            {"name": a.name, "password": a.has_password, "public_keys": len(a.public_keys),
             "disabled": a.disabled, "flow": a.name in flows, "created_at": a.created_at}
            for a in items
        ])
        return
    table([[a.name, "yes" if a.has_password else "no", str(len(a.public_keys)),
            "disabled" if a.disabled else "enabled", "yes" if a.name in flows else "no", a.created_at]
           for a in items], ["NAME", "PASSWORD", "KEYS", "STATE", "FLOW", "CREATED"])


@accounts.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the documented shape) instead of text.")
@pass_context
def accounts_show(ctx: Context, name: str, as_json: bool) -> None:
    """Show an account's connection details (never its password)."""
    account = ctx.accounts().get(name)
    if account is None:
        fail(f"account {name!r} does not exist")
    data = _credentials(ctx, account, None)
    emit_json(data) if as_json else _print_credentials(data)


@accounts.command("regenerate-password")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the documented shape) instead of text.")
@audited
@pass_context
def accounts_regenerate(ctx: Context, name: str, as_json: bool, by: str | None, reason: str | None) -> None:
    """Replace the account's password with a new generated one (shown once)."""
    with account_errors():
        account, password = ctx.accounts().regenerate_password(name, by=actor(by, reason))
    data = _credentials(ctx, account, password)
    emit_json(data) if as_json else _print_credentials(data)


@accounts.command("set-key")
@click.argument("name")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@audited
@pass_context
def accounts_set_key(ctx: Context, name: str, file: Path, by: str | None, reason: str | None) -> None:
    """Replace the account's public keys with those in FILE (authorized_keys format)."""
    with account_errors():
        account = ctx.accounts().set_keys(name, _read_keys((file,)), by=actor(by, reason))
    say(f"account {account.name}: {len(account.public_keys)} public key(s) set")


@accounts.command("disable")
@click.argument("name")
@audited
@pass_context
def accounts_disable(ctx: Context, name: str, by: str | None, reason: str | None) -> None:
    """Refuse logins for the account (its files and history stay)."""
    with account_errors():
        ctx.accounts().set_disabled(name, True, by=actor(by, reason))
    say(f"account {name} disabled")


@accounts.command("enable")
@click.argument("name")
@audited
@pass_context
def accounts_enable(ctx: Context, name: str, by: str | None, reason: str | None) -> None:
    """Allow logins for a disabled account again."""
    with account_errors():
        ctx.accounts().set_disabled(name, False, by=actor(by, reason))
    say(f"account {name} enabled")


@accounts.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Delete without asking (off a terminal nobody is asked anyway).")
@audited
@pass_context
def accounts_delete(ctx: Context, name: str, yes: bool, by: str | None, reason: str | None) -> None:
    """Delete the account and its home (uploads, reports); refused while a flow uses it. Asks first on a terminal.

    Off a terminal (a script, as the command's contract has always allowed) it deletes without
    asking; the audit trail records who did it either way.
    """
    who = actor(by, reason)
    accounts = ctx.accounts()
    flows = {f.account for f in ctx.settings.flows}
    with account_errors():
        accounts.check_deletable(name, flows)
    question = printable(f"Delete account {name} and its home {accounts.home(name)} (uploads and reports)? "
                         "This cannot be undone")
    if not yes and sys.stdin.isatty() and not click.confirm(question, default=False):
        fail(f"account {name} kept", 1)
    with account_errors():
        accounts.delete(name, flows, by=who)
    say(f"account {name} deleted")


# -- runs ------------------------------------------------------------------------
# What an unfiltered `runs list` shows: a history of a million runs answers at once (the
# runs_received index is walked from its newest end and the walk stops here).
RUNS_LIST_DEFAULT_LIMIT = 1000


@main.group()
def runs() -> None:
    """Run history: list, show, and operator decisions."""


@runs.command("list", logs=False)
@click.option("--account", help="Only this account's runs.")
@click.option("--status", type=click.Choice([status.value for status in RunStatus]), help="Only runs with this status.")
@click.option("--since", help="Only runs received since: 24h, 7d, 30m or an ISO date/time.")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help=f"At most this many runs (newest first); default {RUNS_LIST_DEFAULT_LIMIT}.")
@click.option("--all", "every", is_flag=True, help="Every run that matches, however many.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the documented shape) instead of text.")
@pass_context
def runs_list(ctx: Context, account: str | None, status: str | None, since: str | None, limit: int | None,
              every: bool, as_json: bool) -> None:
    """List runs, newest first (the newest 1000 unless --limit or --all says otherwise)."""
    if every and limit:
        fail("--limit and --all: give one of them", 2)
    default = not every and limit is None
    wanted = None if every else limit or RUNS_LIST_DEFAULT_LIMIT
    items = ctx.history().list(account=account, status=status, since=_since(since),
                               limit=wanted + 1 if default and wanted else wanted)
    if default and len(items) > RUNS_LIST_DEFAULT_LIMIT:
        items = items[:RUNS_LIST_DEFAULT_LIMIT]
        say(f"(the newest {RUNS_LIST_DEFAULT_LIMIT} runs; there are more: --limit N or --all)", err=True)
    if as_json:
        emit_json([r.to_dict() for r in items])
        return
    table([[r.id, r.account, r.status, r.input_format or "-", r.received_at, r.finished_at or "-", r.upload_name]
           for r in items], ["ID", "ACCOUNT", "STATUS", "FORMAT", "RECEIVED", "FINISHED", "UPLOAD"])


def _since(text: str | None) -> datetime | None:
    """``--since`` as a UTC datetime, or None; exits 2 naming the accepted forms."""
    if not text:
        return None
    try:
        return timeutil.parse_since(text)
    except ValueError:
        fail(f"--since {text!r}: use 24h, 7d, 30m or an ISO date such as 2026-11-01", 2)


@runs.command("show", logs=False)
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the documented shape) instead of text.")
@pass_context
def runs_show(ctx: Context, run_id: str, as_json: bool) -> None:
    """Show one run with its upload's SHA-256, steps, issues and delivery receipts."""
    from rostergate.formats.issues import Issue

    data = ctx.history().show(run_id)
    if data is None:
        fail(f"run {run_id!r} does not exist")
    if as_json:
        emit_json(data)
        return
    for key in ("id", "account", "status", "upload_name", "input_format", "received_at", "finished_at", "sha256"):
        say(f"{key + ':':<14}{data[key] or '-'}")
    if data["purged_at"]:
        say(f"{'purged_at:':<14}{data['purged_at']}  (retention removed its upload, output and reports)")
    if data["deliveries"]:
        say("deliveries:")
    for d in data["deliveries"]:
        say(f"  {d['destination']}  {d['status']}  attempts {d['attempts']}  {d['remote'] or '-'}")
        if d["status"] == "delivered":
            say(f"    {d['size']} bytes  sha256 {d['sha256']}  {d['finished_at']}")
    say("steps:")
    for step in data["steps"]:
        say(f"  {step['name']:<13} {step['status']:<8} {step['message'] or ''}")
    if data["issues"]:
        say(f"issues ({len(data['issues'])}):")
        for issue in data["issues"]:
            say(f"  {issue['severity']:<8}{Issue(**issue).to_text()}")


@runs.command("stats", logs=False)
@click.option("--since", help="Only runs received since: 24h, 7d, 30m or an ISO date/time.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the documented shape) instead of text.")
@pass_context
def runs_stats(ctx: Context, since: str | None, as_json: bool) -> None:
    """Counts of runs per status and per account; each account's last upload and delivery, and whether it is late."""
    from rostergate.alerts.states import account_states

    history = ctx.history()
    data = history.stats(_since(since))
    states = account_states(ctx.settings, history, ctx.account_records(), timeutil.now())
    data["accounts"] = {state.account: state.to_dict() for state in states}
    if as_json:
        emit_json(data)
        return
    say(f"total: {data['total']}")
    table([[s, str(n)] for s, n in sorted(data["by_status"].items())], ["STATUS", "RUNS"])
    if states:
        say()
        table([[st.account, st.last_upload or "never", st.last_delivery or "never", st.expect_upload or "-",
                f"LATE (deadline {st.missed_deadline})" if st.late else ("on time" if st.expect_upload else "-")]
               for st in states], ["ACCOUNT", "LAST UPLOAD", "LAST DELIVERY", "EXPECTED", "DEADLINE"])


@runs.command("approve")
@click.argument("run_id")
@audited
@pass_context
def runs_approve(ctx: Context, run_id: str, by: str | None, reason: str | None) -> None:
    """Deliver a held run as it is (see what it changes first: runs diff RUN_ID)."""
    with run_errors():
        ctx.lifecycle().approve(run_id, by=actor(by, reason))
    say(f"run {run_id} approved; it will be delivered shortly")


@runs.command("reject")
@click.argument("run_id")
@audited
@pass_context
def runs_reject(ctx: Context, run_id: str, by: str | None, reason: str | None) -> None:
    """Discard a held run: it is never delivered."""
    with run_errors():
        ctx.lifecycle().reject(run_id, by=actor(by, reason))
    say(f"run {run_id} discarded")


def _existing_run(history: History, run_id: str) -> Run:
    run = history.get(run_id)
    if run is None:
        fail(f"run {run_id!r} does not exist (see 'rostergate runs list')")
    return run


@runs.command("diff")
@click.argument("run_id")
@click.option("--show-values", is_flag=True, help="Also each changed value, before and now (roster data).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the documented shape) instead of text.")
@pass_context
def runs_diff(ctx: Context, run_id: str, show_values: bool, as_json: bool) -> None:
    """What the run changes against the account's last delivery: records added, removed and changed, by id."""
    from rostergate.formats.holdrules import render_diff
    from rostergate.formats.snapshot import render_records
    from rostergate.runs.changes import run_changes

    history = ctx.history()
    run = _existing_run(history, run_id)
    with run_errors():
        data = run_changes(ctx.settings.data_dir, history, run, show_values)
    if as_json:
        emit_json(data)
        return
    compared = cast("dict[str, str | None]", data["compared_with"])  # run_changes: {"run_id", "what"}
    against = f"run {compared['run_id']}" if compared["run_id"] else "no delivery (the first one)"
    say(f"run {run.id} ({run.account}, {run.status}) against {compared['what']}: {against}")
    say(render_diff(data))  # type: ignore[arg-type]
    if data["records"] is not None:
        say("")
        say(render_records(data))  # type: ignore[arg-type]
    if data["note"]:
        say(f"note: {data['note']}")


@runs.command("retry")
@click.argument("run_id")
@audited
@pass_context
def runs_retry(ctx: Context, run_id: str, by: str | None, reason: str | None) -> None:
    """Start a failed run again from its spooled upload."""
    with run_errors():
        ctx.lifecycle().retry(run_id, by=actor(by, reason))
    say(f"run {run_id} queued again")


@runs.command("purge")
@click.option("--dry-run", is_flag=True, help="List what would be removed; remove nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the documented shape) instead of text.")
@audited
@pass_context
def runs_purge(ctx: Context, dry_run: bool, as_json: bool, by: str | None, reason: str | None) -> None:
    """Apply retention now: remove the files of settled runs past [retention] / [flows.retention].

    Uploads, outputs and reports go; run records and their issues stay. Exit 1 when a run was refused.
    """
    from rostergate.runs.retention import purge

    result = purge(ctx.settings, ctx.history(), dry_run=dry_run, by=actor(by, reason))
    if as_json:
        emit_json(result.to_dict())
    else:
        verb = "would remove" if dry_run else "removed"
        for removal in result.removals:
            say(f"{verb} run {removal.run_id} ({removal.account}, {removal.status}): {removal.why}")
            for path in removal.paths:
                say(f"    {path}")
        for refused in result.refused:
            say(f"refused run {refused.run_id} ({refused.account}): {refused.reason}")
        totals = result.totals
        unset = ("" if ctx.settings.retention_configured
                 else " (no retention is configured: [retention] keep_days / keep_runs)")
        say(f"{verb}: {totals['runs']} run(s), {totals['paths']} path(s), {totals['bytes']} bytes{unset}")
    if result.refused:
        sys.exit(1)


# -- audit -----------------------------------------------------------------------
@main.command(logs=False)
@click.option("--account", help="Only this account's entries.")
@click.option("--since", help="Only entries since: 24h, 7d, 30m or an ISO date/time.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many entries (newest first).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the documented shape) instead of text.")
@pass_context
def audit(ctx: Context, account: str | None, since: str | None, limit: int | None, as_json: bool) -> None:
    """Who did what, when and why: run decisions, account changes, purges (newest first)."""
    from rostergate.history import AuditTrail

    entries = AuditTrail(ctx.conn).entries(account=account, since=_since(since), limit=limit)
    if as_json:
        emit_json([e.to_dict() for e in entries])
        return
    table([[e.at, e.action, e.actor if e.actor == e.os_user else f"{e.actor} (as {e.os_user})", e.account or "-",
            e.run_id or "-", e.reason or "-", e.detail or "-"] for e in entries],
          ["AT", "ACTION", "BY", "ACCOUNT", "RUN", "REASON", "DETAIL"])


# -- validate / convert ------------------------------------------------------------
@main.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--format", "format_", type=click.Choice(["auto", "asm", "oneroster"]), default="auto",
              show_default=True, help="The upload's format; auto recognises it.")
@click.option("--profile", type=click.Choice(["strict", "asm"]), default="strict", show_default=True,
              help="strict: the standards as written; asm: what Apple accepts (some rules become warnings).")
@click.option("--encoding", type=click.Choice(["convert", "reject"]), default="convert", show_default=True,
              help="UTF-16 / Windows-1252 files: convert with a warning, or reject.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the documented shape) instead of text.")
def validate(path: Path, format_: str, profile: str, encoding: EncodingPolicy, as_json: bool) -> None:
    """Validate a ZIP or folder; exit 0 valid, 1 invalid, 2 cannot read."""
    from rostergate.formats.validate.entry import cannot_read, validate_path
    from rostergate.formats.validate.report import render_text

    if not path.exists():
        fail(f"{path}: no such file or folder", 2)
    progress: Callable[[str], None] | None = None
    if sys.stderr.isatty() and not as_json:
        def show(message: str) -> None:
            click.echo(f"\r\033[K{message}", err=True, nl=False)
        progress = show
    try:
        result = validate_path(path, format=format_, profile=profile, progress=progress, encoding_policy=encoding)
    except OSError as exc:
        fail(f"{path}: cannot read: {exc.strerror or exc}", 2)
    if progress is not None:
        click.echo("\r\033[K", err=True, nl=False)
    if as_json:
        emit_json(result.to_dict())
    else:
        say(render_text(result), nl=False)
    sys.exit(2 if cannot_read(result) else 0 if result.valid else 1)


@main.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--to", "target", type=click.Choice(["asm"]), default="asm", show_default=True,
              help="The output format (Apple School Manager's six files).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), callback=new_file_in_existing_folder,
              help="The ZIP to write (its folder must exist).")
@click.option("--preview", type=click.IntRange(min=1), default=None, help="Print the first N mapped records per file.")
@click.option("--account", help="Use this account's flow mapping (and validation profile) from the configuration.")
@click.option("--profile", type=click.Choice(["strict", "asm"]), default=None,
              help="The validation the input must pass first. Default: the account's flow's profile, else asm.")
@click.option("--force", is_flag=True,
              help="Convert even input that validation (or the check of the output) rejects; the report is printed.")
@pass_context
def convert(ctx: Context, path: Path, target: str, output: Path | None, preview: int | None,
            account: str | None, profile: str | None, force: bool) -> None:
    """Convert a OneRoster (or ASM) ZIP or folder into Apple School Manager's six files.

    The input is validated first; input that does not pass is refused (exit 1, with the
    report on stderr) unless --force. Exit 2 only when the input cannot be read at all.
    """
    import tempfile

    from rostergate.formats.convert.entry import (
        check_output,
        conversion_summary,
        convert_dir,
        render_preview,
        trace_to_input,
        write_asm_zip,
    )
    from rostergate.formats.read.archive import unpack
    from rostergate.formats.read.detect import detect_format
    from rostergate.formats.validate.entry import UNREADABLE_CODES, validate_dir
    from rostergate.formats.validate.report import render_text

    if output is None and preview is None:
        fail("give -o OUT.zip, --preview N, or both", 2)
    if not path.exists():
        fail(f"{path}: no such file or folder", 2)
    mapping = None
    if account:
        flow = ctx.settings.flow_for(account)
        if flow is None:
            fail(f"no flow for account {account!r} in {ctx.settings.source or 'the embedded defaults'}", 2)
        mapping = flow.mapping
        profile = profile or flow.profile
    with tempfile.TemporaryDirectory(prefix="rostergate-convert-") as scratch:
        source = path
        if path.is_file():
            source = Path(scratch) / "source"
            source.mkdir()
            problems = [i for i in unpack(path, source) if i.severity == "error"]
            if problems:
                for issue in problems:
                    say(issue.to_text(), err=True)
                sys.exit(2 if any(i.code in UNREADABLE_CODES for i in problems) else 1)
        found = detect_format(source)
        if found is None:
            fail(f"{path}: neither OneRoster (manifest.csv) nor the six Apple School Manager files", 1)
        result = validate_dir(source, profile=profile or "asm")
        if result.issues:
            say(render_text(result), nl=False, err=True)
        if not result.valid:
            if not force:
                fail("the input does not pass validation, so nothing was converted (--force converts it anyway)", 1)
            say("warning: converting input that does not pass validation (--force)", err=True)
        if preview is not None:
            say(render_preview(source, found, mapping, preview))
        if output is None:
            return
        conversion = convert_dir(source, found, mapping)
        for issue in conversion.issues:
            say(f"{issue.severity}: {issue.to_text()}", err=True)
        if not conversion.ok:
            sys.exit(1)
        checked = check_output(conversion)
        for issue in trace_to_input(checked, conversion, mapping):
            say(f"{issue.severity}: {issue.to_text()} [{issue.code}]", err=True)
        if not checked.valid and not force:
            fail("the converted files break Apple's rules (above, at the rows they come from); nothing was "
                 "written (--force writes them anyway)", 1)
        write_asm_zip(conversion, output)
        say(conversion_summary(conversion))
        say(f"wrote {output}")


@runs.command("tail", logs=False)
@click.option("--interval", type=click.FloatRange(min=0.1), default=1.0, show_default=True,
              help="Seconds between looks.")
@pass_context
def runs_tail(ctx: Context, interval: float) -> None:
    """Print runs as they arrive and change status, until interrupted."""
    import time

    history = ctx.history()
    seen: dict[str, str] = {r.id: r.status for r in history.list(limit=200)}
    try:
        while True:
            for run in reversed(history.list(limit=200)):
                if seen.get(run.id) != run.status:
                    seen[run.id] = run.status
                    say(f"{timeutil.iso()}  {run.id}  {run.account:<16} {run.status:<10} {run.upload_name}")
            time.sleep(interval)
    except KeyboardInterrupt:
        pass
