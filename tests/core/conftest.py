"""The command line in this process: click's CliRunner, for CLI tests that need no daemon."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from click.testing import CliRunner, Result

from rostergate.cli import main


@pytest.fixture
def rostergate(tmp_path, monkeypatch) -> Callable[..., Result]:
    """``rostergate(*args, color=False)``: run the command line with ``args`` from ``tmp_path`` (the working
    directory, where ``--demo`` keeps its state) and return click's :class:`Result` (``exit_code``,
    ``stdout``, ``stderr``). An exception the CLI does not turn into an exit code fails the test rather
    than passing as exit code 1. ``color=True`` keeps what is written byte for byte (click otherwise
    strips ANSI sequences off a terminal, which would hide an escape the CLI failed to neutralise)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ROSTERGATE_CONFIG", raising=False)

    def run(*args: str, color: bool = False) -> Result:
        return CliRunner().invoke(main, list(args), catch_exceptions=False, color=color)

    return run
