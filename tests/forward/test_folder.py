"""Delivery into a local folder (file://): owner-only, fsynced, checked, and classified like SFTP."""

import pytest

from rostergate.config import Downstream
from rostergate.errors import FinalError, RetryableError
from rostergate.forward import forwarder_for


def folder(path) -> Downstream:
    return Downstream(url=path.as_uri(), scheme="file", path=str(path))


def test_local_folder_delivery_is_owner_only(tmp_path, payload, sha256):
    outbox = tmp_path / "outbox"
    forwarder_for(folder(outbox)).deliver(payload, "a.zip", sha256(payload))
    assert (outbox / "a.zip").stat().st_mode & 0o777 == 0o600
    assert [p.name for p in outbox.iterdir()] == ["a.zip"]


def test_folder_delivery_is_fsynced_checked_and_gives_a_receipt(tmp_path, payload, sha256):
    outbox = tmp_path / "outbox"
    receipt = forwarder_for(folder(outbox)).deliver(payload, "a.zip", expected_sha256=sha256(payload))
    assert (receipt.remote, receipt.sha256, receipt.size) == (str(outbox / "a.zip"), sha256(payload),
                                                              payload.stat().st_size)


def test_folder_delivery_to_a_full_disk_is_retryable_and_leaves_nothing(tmpfs, big_payload, sha256):
    outbox = tmpfs("outbox", "64k")
    with pytest.raises(RetryableError, match="is full"):
        forwarder_for(folder(outbox)).deliver(big_payload, "a.zip", sha256(big_payload))
    assert list(outbox.iterdir()) == []


def test_a_read_only_folder_is_final_like_a_refused_sftp_write(tmpfs, payload):
    """EROFS is a refusal (the same table as SFTP's permission denied): retrying cannot help."""
    outbox = tmpfs("outbox", "64k", read_only=True)
    with pytest.raises(FinalError, match=r"refused to open \S+\.a\.zip\.partial \(read-only file system\)"):
        forwarder_for(folder(outbox)).deliver(payload, "a.zip")
    assert list(outbox.iterdir()) == []


def test_bytes_that_are_not_the_checked_ones_are_refused(tmp_path, payload):
    outbox = tmp_path / "outbox"
    with pytest.raises(FinalError, match="not the one that was checked"):
        forwarder_for(folder(outbox)).deliver(payload, "a.zip", expected_sha256="0" * 64)
    assert not outbox.exists() or list(outbox.iterdir()) == []


def test_a_missing_prepared_file_is_final(tmp_path):
    with pytest.raises(FinalError, match="the prepared file gone.zip is missing"):
        forwarder_for(folder(tmp_path / "outbox")).deliver(tmp_path / "gone.zip", "a.zip", expected_sha256="0" * 64)


def test_what_a_crash_left_in_the_folder_is_removed(tmp_path, payload, sha256):
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    forwarder = forwarder_for(folder(outbox))
    left = outbox / ".other-run.zip.partial"
    left.write_bytes(b"cut short")
    (outbox / ".a.zip.partial").write_bytes(b"own earlier attempt" * 100)
    elsewhere = tmp_path / "x.zip"
    elsewhere.write_bytes(b"not ours")
    assert forwarder.written_path("other-run.zip") == str(left)
    forwarder.deliver(payload, "a.zip", sha256(payload), stale=[str(left), str(elsewhere)])
    assert sorted(p.name for p in outbox.iterdir()) == ["a.zip"] and elsewhere.exists()
    assert (outbox / "a.zip").read_bytes() == payload.read_bytes()
