"""The systemd unit, its drop-in and the sysusers file as systemd's own tools read them.

``systemd-analyze verify`` must find nothing to say, ``systemd-analyze security --offline=true``
must rate the unit below 2.0 (with and without the port-22 drop-in), and ``systemd-sysusers``
must create the user the unit runs as. The unit must also agree with the code: where the
configuration and the secrets are, how long a stop may take. Skipped only where systemd's tools
are not installed, and failed for that in CI (scripts/install-system-deps installs them).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from rostergate import config, scaffold
from tests.conftest import ROOT, require_tool

DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "rostergate.service"
DROP_IN = DEPLOY / "listen-below-1024.conf"
SYSUSERS = DEPLOY / "rostergate.sysusers.conf"
INSTALLED = "/opt/rostergate/bin/rostergate"
# systemd-analyze security's exposure, in tenths (--threshold takes 0-100): below 2.0.
THRESHOLD = 19



@pytest.fixture
def analyze() -> str:
    """systemd-analyze (Debian package: systemd)."""
    return require_tool("systemd-analyze")


def directives(path: Path) -> dict[str, list[str]]:
    """``Key=value`` lines of a unit file, every value of a repeated key in order."""
    found: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def one(path: Path, key: str) -> str:
    values = directives(path)[key]
    assert len(values) == 1, f"{key} appears {len(values)} times in {path.name}"
    return values[0]


def seconds(value: str) -> float:
    """A systemd time span such as ``90s``, ``5min`` or ``1min 30s`` in seconds."""
    units = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value))


@pytest.fixture
def unit_dir(tmp_path: Path) -> Path:
    """The unit as installed: a copy whose ExecStart points at an executable that exists here
    (verify checks that it does), its drop-in next to it only when a test adds it."""
    fake = tmp_path / "bin" / "rostergate"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    folder = tmp_path / "system"
    folder.mkdir()
    (folder / UNIT.name).write_text(UNIT.read_text().replace(INSTALLED, str(fake)))
    return folder


def with_drop_in(folder: Path) -> Path:
    drop_ins = folder / f"{UNIT.name}.d"
    drop_ins.mkdir()
    shutil.copyfile(DROP_IN, drop_ins / DROP_IN.name)
    return folder


def exposure(analyze: str, unit: Path) -> float:
    result = subprocess.run([analyze, "security", "--offline=true", f"--threshold={THRESHOLD}",
                             "--no-pager", str(unit)], capture_output=True, text=True, timeout=60, cwd=unit.parent)
    found = re.search(r"Overall exposure level for rostergate\.service: (\d+\.\d)", result.stdout)
    assert found, result.stdout + result.stderr
    assert result.returncode == 0, f"rated {found.group(1)}, not below 2.0:\n{result.stdout}"
    return float(found.group(1))


@pytest.mark.parametrize("drop_in", [False, True], ids=["unit", "unit+listen-below-1024"])
def test_systemd_analyze_verify_has_nothing_to_say(analyze, unit_dir, drop_in):
    if drop_in:
        with_drop_in(unit_dir)
    result = subprocess.run([analyze, "verify", "--man=no", str(unit_dir / UNIT.name)],
                            capture_output=True, text=True, timeout=60, cwd=unit_dir)
    assert result.returncode == 0, result.stderr
    # An unknown key or a value systemd cannot parse is only a warning (exit 0): none is allowed.
    assert [line for line in result.stderr.splitlines() if "rostergate" in line] == []


def test_security_exposure_is_below_2_even_with_the_port_22_drop_in(analyze, unit_dir):
    alone = exposure(analyze, unit_dir / UNIT.name)
    assert alone < 2.0
    assert alone <= exposure(analyze, with_drop_in(unit_dir) / UNIT.name) < 2.0


def test_sysusers_creates_the_user_the_unit_runs_as(tmp_path):
    sysusers = require_tool("systemd-sysusers")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    subprocess.run([sysusers, f"--root={root}", str(SYSUSERS)], check=True, capture_output=True,
                   timeout=60)
    users = {line.split(":")[0]: line.split(":") for line in (root / "etc" / "passwd").read_text().splitlines()}
    groups = {line.split(":")[0] for line in (root / "etc" / "group").read_text().splitlines()}
    user = one(UNIT, "User")
    assert user in users and one(UNIT, "Group") in groups
    uid, home, shell = int(users[user][2]), users[user][5], users[user][6]
    assert uid < 1000, "a system user"
    assert home == f"/var/lib/{one(UNIT, 'StateDirectory')}" and shell == "/usr/sbin/nologin"


def test_unit_speaks_the_daemons_protocol_and_waits_for_its_drain():
    assert one(UNIT, "Type") == "notify" and one(UNIT, "NotifyAccess") == "main"
    assert seconds(one(UNIT, "WatchdogSec")) > 0
    assert one(UNIT, "ExecReload") == "/bin/kill -HUP $MAINPID"
    # SIGTERM to the daemon alone: its workers must finish the runs it drains.
    assert one(UNIT, "KillMode") == "mixed"
    assert seconds(one(UNIT, "TimeoutStopSec")) >= config.ServerSettings().stop_grace_seconds + 15


def test_unit_paths_are_the_ones_the_code_uses():
    command = f"{INSTALLED} --config {config.SYSTEM_CONFIG}"
    assert one(UNIT, "ExecStart") == f"{command} serve"
    assert one(UNIT, "ExecStartPre") == f"{command} check-config"
    assert config.SYSTEM_CONFIG.parent == Path("/etc") / one(UNIT, "ConfigurationDirectory")
    # Every file in the secrets folder `rostergate init` makes is a credential of this service.
    name, _, folder = one(UNIT, "LoadCredential").partition(":")
    assert Path(folder) == config.SYSTEM_CONFIG.parent / scaffold.SECRETS_DIR and name == "secret"
    assert Path("/run/credentials") / UNIT.name == config.SERVICE_CREDENTIALS


def test_only_the_drop_in_grants_a_capability():
    unit = directives(UNIT)
    assert unit["CapabilityBoundingSet"] == [""] and unit["AmbientCapabilities"] == [""]
    drop_in = directives(DROP_IN)
    assert drop_in["AmbientCapabilities"] == drop_in["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]
    assert drop_in["PrivateUsers"] == ["no"]  # a capability in a private user namespace binds nothing


def test_the_package_ships_the_very_deploy_files():
    share = ROOT / "src" / "rostergate" / "share"
    for path in (UNIT, DROP_IN, SYSUSERS, ROOT / "config.example.toml"):
        assert scaffold.packaged(path.name) == path.read_text()
    assert {p.name for p in share.iterdir()} == {UNIT.name, DROP_IN.name, SYSUSERS.name, "config.example.toml"}


def test_the_install_guide_uses_the_shipped_files_and_the_units_paths():
    guide = (ROOT / "docs" / "install.md").read_text()
    shipped = {p.name for p in (ROOT / "src" / "rostergate" / "share").iterdir()}
    named = set(re.findall(r"\$share/([\w.\-]+)", guide))
    assert named and named <= shipped, named - shipped
    assert INSTALLED in guide and str(config.SYSTEM_CONFIG) in guide
    credential = one(UNIT, "LoadCredential").partition(":")[0]
    assert f"${{CREDENTIALS_DIRECTORY}}/{credential}_district-a.pass" in guide
