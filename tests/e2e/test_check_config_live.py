"""``check-config`` while the service runs: the addresses the running daemon holds are its own, not a problem."""

from __future__ import annotations

import socket

import pytest

from tests.conftest import free_port, local_flow, make_keypair

pytestmark = pytest.mark.e2e


def test_check_config_of_the_running_service_accepts_its_own_addresses(daemon_factory, tmp_path):
    """Its SSH port (known by its banner) and its metrics port (by its metric names) are the daemon's."""
    metrics = free_port()
    daemon = daemon_factory(local_flow("district-a", tmp_path / "outbox"),
                            f'metrics_listen = "127.0.0.1:{metrics}"').start()
    key = make_keypair(tmp_path)
    daemon.cli("accounts", "create", "district-a", "--no-password", "--public-key", f"{key}.pub")
    result = daemon.cli("check-config", check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("configuration OK")
    # Stopped, the same ports are free: still OK. Taken by something that is not rostergate: refused.
    daemon.stop()
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", daemon.port))
        taken.listen()
        result = daemon.cli("check-config", check=False)
    assert result.returncode == 2
    assert [line for line in result.stderr.splitlines() if line.startswith("config error: ")] == [
        f"config error: server.listen: cannot listen on 127.0.0.1:{daemon.port}: the address is already in use "
        "(another rostergate, or an sshd?); choose another port or stop it"]

