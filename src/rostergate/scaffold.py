"""``rostergate init``: a commented configuration and an owner-only state directory.

The configuration is the packaged ``config.example.toml`` (every key explained)
with the state directory filled in and its ``[[flows]]`` entries commented out,
so it passes ``check-config`` as written and serves no district until one is
added. The state directory is created ``0700``, owned by the service user when
one is named, so the service can use it and nobody else can read it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from rostergate.store import user_name

CONFIG_NAME = "rostergate.toml"
SECRETS_DIR = "secrets"
_FLOWS = re.compile(r"^\s*\[\[flows\]\]")


@dataclass(frozen=True)
class Owner:
    """Who the state directory is for: the service user (``uid``) and its group."""

    name: str
    uid: int
    gid: int


@dataclass(frozen=True)
class Site:
    config: Path
    data_dir: Path
    owner: str


def packaged(name: str) -> str:
    """A file the package carries in ``rostergate/share`` (the example config, the systemd unit)."""
    return (resources.files("rostergate") / "share" / name).read_text(encoding="utf-8")


def render(example: str, config: Path, data_dir: Path) -> str:
    """The example configuration for this site: its paths filled in, its flows commented out."""
    out = [
        f"# Written by 'rostergate init'. Check it with: rostergate --config {config} check-config",
        "# Add one [[flows]] entry per district (see the commented example at the end).",
    ]
    in_flows = False
    for line in example.splitlines()[1:]:
        in_flows = in_flows or bool(_FLOWS.match(line))
        if in_flows and line.strip() and not line.lstrip().startswith("#"):
            line = "# " + line
        elif line.startswith("data_dir = "):
            line = f'data_dir = "{data_dir}"'
        elif line.startswith("host_key = "):
            line = f'host_key = "{data_dir / "ssh_host_ed25519_key"}"'
        out.append(line)
    return "\n".join(out) + "\n"


def init_site(directory: Path, data_dir: Path | None = None, owner: Owner | None = None,
              replace: bool = False) -> Site:
    """Write ``directory/rostergate.toml`` and create the state directory (and ``directory/secrets``).

    With ``owner`` (root only): the state directory belongs to it, the
    configuration is ``0640`` for its group and ``directory`` ``0750``. Without:
    everything belongs to the caller, owner-only. Raises ``FileExistsError`` when
    the configuration exists and ``replace`` is false.
    """
    directory = directory.absolute()
    data_dir = (data_dir or directory / "var").absolute()
    config = directory / CONFIG_NAME
    if not directory.exists():
        directory.mkdir(parents=True, mode=0o700)
        if owner is not None:
            os.chown(directory, 0, owner.gid)
            directory.chmod(0o750)
    text = render(packaged("config.example.toml"), config, data_dir)
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | (os.O_TRUNC if replace else os.O_EXCL)
    fd = os.open(config, flags, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        if owner is not None:  # the service reads it; only root changes it
            os.fchown(fd, 0, owner.gid)
            os.fchmod(fd, 0o640)
        else:
            os.fchmod(fd, 0o600)
        handle.write(text)
    secrets = directory / SECRETS_DIR  # downstream passwords; the unit hands them over with LoadCredential=
    secrets.mkdir(mode=0o700, exist_ok=True)
    secrets.chmod(0o700)
    data_dir.mkdir(parents=True, mode=0o700, exist_ok=True)
    if owner is not None:
        os.chown(data_dir, owner.uid, owner.gid)
    data_dir.chmod(0o700)
    return Site(config, data_dir, owner.name if owner else user_name())
