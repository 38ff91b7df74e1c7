"""The CLI's user errors, one test per kind: a non-zero exit, one line saying what is wrong, no traceback.

Our own errors print ``error: ...`` or ``config error: KEY: ...``; an option value click refuses
(``IntRange``, ``Choice``, paths) prints click's usage hint and one ``Error: Invalid value for
'--option': ...`` line. Either way exactly one line says what is wrong.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from rostergate.cli import main
from tests.conftest import ONEROSTER_11_VALID, free_port


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def the_error(result: Result, code: int) -> str:
    """The one line that says what is wrong (asserting there is one, the exit code and no traceback)."""
    assert result.exit_code == code, (result.exit_code, result.output, result.stderr)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith(("error: ", "config error: ", "Error: "))]
    # serve logs in JSON off a terminal (one object per line): its refusal is one line with one problem
    refusals = [json.loads(line) for line in result.stderr.splitlines() if '"serve_refused"' in line]
    errors += [problem for refusal in refusals for problem in refusal["problems"]]
    assert len(errors) == 1, result.stderr
    return errors[0]


def write_config(tmp_path: Path, data_dir: Path, port: int | None = None) -> Path:
    config = tmp_path / "rostergate.toml"
    config.write_text(f'[server]\nlisten = "127.0.0.1:{port or free_port()}"\ndata_dir = "{data_dir}"\n'
                      f'host_key = "{tmp_path / "host_key"}"\n')
    return config


# -- option values click checks ----------------------------------------------------------
@pytest.mark.parametrize("args, option", [
    (["runs", "list", "--limit", "0"], "--limit"),
    (["runs", "list", "--status", "finished-ish"], "--status"),
    (["runs", "tail", "--interval", "0"], "--interval"),
    (["convert", str(ONEROSTER_11_VALID), "--preview", "-3"], "--preview"),
    (["validate", str(ONEROSTER_11_VALID), "--profile", "lenient"], "--profile"),
    (["accounts", "create", "a", "--public-key", "/no/such/key.pub"], "--public-key"),
], ids=["limit-0", "status-choice", "interval-0", "preview-negative", "profile-choice", "missing-key-file"])
def test_an_option_value_out_of_range_or_choice_is_refused_before_anything_runs(tmp_path, args, option):
    config = write_config(tmp_path, tmp_path / "var")
    line = the_error(run("--config", str(config), *args), 2)
    assert line.startswith("Error: Invalid value for ") and option in line
    assert not (tmp_path / "var").exists(), "nothing was created for a refused command"


def test_convert_into_a_folder_that_does_not_exist_is_refused_before_converting(tmp_path):
    target = tmp_path / "missing" / "dir" / "asm.zip"
    line = the_error(run("convert", str(ONEROSTER_11_VALID), "-o", str(target)), 2)
    assert line == (f"Error: Invalid value for '-o' / '--output': {target}: the folder {target.parent} "
                    "does not exist")


# -- the configuration and the state directory ---------------------------------------------
def test_a_configuration_file_that_does_not_exist(tmp_path):
    line = the_error(run("--config", str(tmp_path / "absent.toml"), "accounts", "list"), 2)
    assert line == f"config error: {tmp_path / 'absent.toml'}: file not found"


@pytest.mark.parametrize("args", [["accounts", "list"], ["accounts", "create", "district-a"], ["runs", "list"],
                                  ["runs", "stats"], ["runs", "show", "x"]])
def test_store_commands_whose_state_directory_cannot_be_created(tmp_path, args):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    config = write_config(tmp_path, blocker / "var")
    line = the_error(run("--config", str(config), *args), 2)
    assert line == f"config error: server.data_dir: cannot create or open {blocker / 'var'}: Not a directory"


@pytest.mark.skipif(os.geteuid() != 0, reason="the refusal is root's: only root can write into another user's folder")
@pytest.mark.parametrize("args", [["accounts", "list"], ["runs", "list"], ["check-config"], ["serve"]])
def test_root_is_refused_a_state_directory_that_belongs_to_another_user(tmp_path, args):
    data_dir = tmp_path / "var"
    data_dir.mkdir(mode=0o700)
    os.chown(data_dir, 65534, 65534)  # the service user's, as systemd's StateDirectory= makes it
    line = the_error(run("--config", str(write_config(tmp_path, data_dir)), *args), 2)
    assert line.startswith(f"error: server.data_dir: {data_dir} belongs to ")
    assert "not as root, so the service can still use its files" in line
    assert list(data_dir.iterdir()) == [], "root wrote nothing into it"


def test_serve_on_a_port_in_use(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = the_error(run("--config", str(write_config(tmp_path, tmp_path / "var", port)), "serve"), 2)
    assert line == (f"config error: server.listen: cannot listen on 127.0.0.1:{port}: the address is already "
                    "in use (another rostergate, or an sshd?); choose another port or stop it")


# -- refused requests -------------------------------------------------------------------
def test_a_run_or_account_that_does_not_exist(tmp_path):
    config = str(write_config(tmp_path, tmp_path / "var"))
    assert the_error(run("--config", config, "runs", "show", "nope"), 1) == "error: run 'nope' does not exist"
    assert the_error(run("--config", config, "accounts", "show", "nope"), 1) == "error: account 'nope' does not exist"


def test_init_over_an_existing_configuration(tmp_path):
    assert run("init", str(tmp_path / "site")).exit_code == 0
    line = the_error(run("init", str(tmp_path / "site")), 1)
    config = tmp_path / "site" / "rostergate.toml"
    assert line == f"error: {config} already exists; edit it, or give --force to replace it"


def test_an_unreadable_since(tmp_path):
    config = str(write_config(tmp_path, tmp_path / "var"))
    line = the_error(run("--config", config, "runs", "list", "--since", "soon"), 2)
    assert line == "error: --since 'soon': use 24h, 7d, 30m or an ISO date such as 2026-11-01"


# -- help ---------------------------------------------------------------------------------
def _commands(command: click.Command, path: tuple[str, ...] = ("rostergate",)):
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _commands(sub, (*path, name))


def test_every_command_and_option_has_help():
    missing = []
    for path, command in _commands(main):
        if not (command.help or command.short_help):
            missing.append(" ".join(path))
        with click.Context(command, info_name=path[-1]) as ctx:
            missing += [f"{' '.join(path)} {'/'.join(p.opts)}" for p in command.get_params(ctx)
                        if isinstance(p, click.Option) and not (p.help or "").strip()]
    assert missing == []
