"""check-config --connect logs in as a delivery does, against a real OpenSSH sshd on loopback, and writes nothing."""

from __future__ import annotations

from rostergate import checks, config
from tests.conftest import OpenSSHDownstream


def _downstream(sshd: OpenSSHDownstream, **replace: str) -> config.Downstream:
    toml = sshd.flow_toml("a")
    for old, new in replace.items():
        toml = toml.replace(old, new)
    import tomllib

    return config.parse(tomllib.loads(toml), base=sshd.root).flows[0].downstream


def test_a_reachable_downstream_with_its_folder_has_no_problem(sshd):
    assert checks.probe("flows[0].downstream", _downstream(sshd)) == []
    assert list(sshd.dropbox.iterdir()) == []  # nothing written


def test_a_missing_folder_and_a_wrong_host_key_are_named(sshd):
    missing = _downstream(sshd, **{str(sshd.dropbox): str(sshd.dropbox / "nope")})
    assert checks.probe("flows[0].downstream", missing) == [
        f"flows[0].downstream.url: the folder {sshd.dropbox / 'nope'} does not exist on "
        f"{sshd.user}@127.0.0.1:{sshd.port}"]
    other_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEbYm0+g2pEGX9DGNB/nWoHAfZf2BL7FZDafdkprrCbK"
    wrong = _downstream(sshd, **{sshd.host_key_line: other_key})
    [problem] = checks.probe("flows[0].downstream", wrong)
    assert problem.startswith("flows[0].downstream: host key mismatch")


def test_an_unusable_key_file_is_named_not_reported_as_unreachable(sshd, tmp_path):
    broken = tmp_path / "broken_key"
    broken.write_text("not a key\n")
    [problem] = checks.probe("flows[0].downstream", _downstream(sshd, **{str(sshd.client_key): str(broken)}))
    assert "key_file" in problem and "cannot be used as a private key" in problem
