"""The archive's hard bounds: refused methods, bounded streams, and zip_state without decompression.

Every bomb here is real (its data inflates to what its header declares, see
:mod:`tests.zipcraft`); what zlib actually produces is counted by wrapping
``zlib.decompressobj``, so "stopped early" means little output was made, not
merely that an error came back.
"""

from __future__ import annotations

import bz2
import lzma
import random
import struct
import time
import zlib
from pathlib import Path

import pytest

from rostergate.formats.read import archive
from rostergate.formats.read.archive import OUTPUT_STEP, ArchiveLimits, ZipState, unpack, zip_state
from tests import zipcraft as zc
from tests.zipcraft import MIB

_REAL_DECOMPRESSOBJ = zlib.decompressobj


class _CountingInflater:
    """A ``zlib.decompressobj`` that adds up the bytes it produces."""

    produced = 0

    def __init__(self, *args):
        self._inner = _REAL_DECOMPRESSOBJ(*args)

    def decompress(self, data: bytes, max_length: int = 0) -> bytes:
        out = self._inner.decompress(data, max_length)
        _CountingInflater.produced += len(out)
        return out

    def __getattr__(self, name: str):
        return getattr(self._inner, name)


@pytest.fixture
def inflated(monkeypatch) -> type[_CountingInflater]:
    """Count every byte zlib inflates during the test (``inflated.produced``)."""
    monkeypatch.setattr(_CountingInflater, "produced", 0)
    monkeypatch.setattr(zlib, "decompressobj", _CountingInflater)
    return _CountingInflater


@pytest.fixture
def no_decompression(monkeypatch) -> None:
    """Any decompressor the standard library has raises: the code under test must not call one."""

    def refuse(*_args, **_kwargs):
        raise AssertionError("a decompressor was called")

    for module, name in ((bz2, "BZ2Decompressor"), (bz2, "decompress"), (lzma, "LZMADecompressor"),
                         (lzma, "decompress"), (zlib, "decompressobj"), (zlib, "decompress")):
        monkeypatch.setattr(module, name, refuse)


def _write(tmp_path: Path, data: bytes, name: str = "upload.zip") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _unpack(tmp_path: Path, data: bytes, limits: ArchiveLimits | None = None) -> tuple[list, Path]:
    limits = limits or ArchiveLimits()
    dest = tmp_path / "out"
    dest.mkdir()
    return unpack(_write(tmp_path, data), dest, limits), dest


def _codes(issues) -> list[str]:
    return [i.code for i in issues if i.severity == "error"]


CSV = b"sourcedId,name\n1,Ada\n"


# -- methods ------------------------------------------------------------------------------
@pytest.mark.parametrize("entry, method", [
    (zc.bzip2_entry("users.csv", CSV * 100), "bzip2"),
    (zc.lzma_entry("users.csv", CSV * 100), "LZMA"),
    (zc.bomb_entry("users.csv", zc.BZIP2, zc.bzip2_zeros(), 1 << 30), "bzip2"),  # 1 GiB in a few KiB
])
def test_bzip2_and_lzma_are_refused_from_the_directory_without_decompressing(tmp_path, no_decompression,
                                                                              entry, method):
    data = zc.build_zip([zc.stored("orgs.csv", CSV), entry])
    issues, dest = _unpack(tmp_path, data)
    refused = [i for i in issues if i.code == "archive.unsupported_compression"]
    assert [(i.severity, i.value) for i in refused] == [("error", "users.csv")]
    assert method in refused[0].message
    assert list(dest.iterdir()) == []
    assert zip_state(tmp_path / "upload.zip") is ZipState.COMPLETE  # finished: a run will say why it is refused


@pytest.mark.parametrize("method, name", [(1, "shrink"), (6, "implode"), (9, "deflate64"), (93, "Zstandard"),
                                          (95, "XZ"), (98, "PPMd"), (77, "method 77")])
def test_every_other_method_is_refused_by_name(tmp_path, no_decompression, method, name):
    entry = zc.RawEntry("users.csv", b"\x00" * 64, method, 0, 64)
    issues, dest = _unpack(tmp_path, zc.build_zip([entry]))
    assert _codes(issues) == ["archive.unsupported_compression"]
    assert name in issues[0].message
    assert list(dest.iterdir()) == []


def test_a_local_header_cannot_smuggle_another_method(tmp_path, no_decompression):
    """The directory says deflate, the entry's own header says bzip2: refused before any byte is inflated."""
    data = bytearray(zc.build_zip([zc.bzip2_entry("users.csv", CSV * 100)]))
    struct.pack_into("<H", data, zc.central_offset(bytes(data), 0) + 10, zc.DEFLATED)
    issues, dest = _unpack(tmp_path, bytes(data))
    assert _codes(issues) == ["archive.unsupported_entry"]
    assert "local header" in issues[0].message
    assert list(dest.iterdir()) == []


# -- bounded streams ---------------------------------------------------------------------
def test_a_deflate_bomb_is_stopped_after_little_output(tmp_path, inflated):
    limits = ArchiveLimits()
    bomb = zc.bomb_entry("users.csv", zc.DEFLATED, zc.deflate_zeros(2048), 2048 * MIB)  # 2 GiB in 2 MB
    issues, dest = _unpack(tmp_path, zc.build_zip([zc.stored("orgs.csv", CSV), bomb]), limits)
    assert _codes(issues) == ["archive.compression_ratio"]
    assert issues[0].value == "users.csv"
    assert inflated.produced <= limits.ratio_grace + 2 * OUTPUT_STEP
    assert list(dest.iterdir()) == []


def test_the_ratio_is_judged_on_the_bytes_consumed_so_far(tmp_path, inflated):
    """20 MiB of zeros, then 2 MiB of noise, in one deflate stream: about 11:1 over the whole entry,
    thousands to one over its first part. A limit of 50:1 must stop it in that first part."""
    noise = random.Random(7).randbytes(2 * MIB)
    packer = zlib.compressobj(6, zlib.DEFLATED, -15)
    data = packer.compress(bytes(20 * MIB)) + packer.compress(noise) + packer.flush()
    content_size = 22 * MIB
    entry = zc.RawEntry("users.csv", data, zc.DEFLATED, zlib.crc32(noise, zc.crc32_zeros(20 * MIB)), content_size)
    assert content_size / len(data) < 50  # the whole entry is within the limit
    archive_bytes = zc.build_zip([entry])
    limits = ArchiveLimits(max_ratio=50, ratio_grace=MIB)
    issues, dest = _unpack(tmp_path, archive_bytes, limits)
    assert _codes(issues) == ["archive.compression_ratio"]
    assert inflated.produced <= limits.ratio_grace + 2 * OUTPUT_STEP
    assert list(dest.iterdir()) == []
    # the same archive is otherwise sound: without the ratio limit it unpacks whole
    ok = tmp_path / "out2"
    ok.mkdir()
    assert unpack(tmp_path / "upload.zip", ok, ArchiveLimits(max_ratio=1e9)) == []
    assert (ok / "users.csv").stat().st_size == content_size


@pytest.mark.parametrize("make", [zc.stored, zc.deflated], ids=["stored", "deflate"])
def test_an_entry_stops_at_its_declared_size(tmp_path, inflated, make):
    """An entry that inflates past the size its directory declares is cut off there."""
    content = random.Random(1).randbytes(3 * MIB)
    declared = 100_000
    data = zc.patch_central(zc.build_zip([make("users.csv", content)]), 0, 24, "<L", declared)
    issues, dest = _unpack(tmp_path, data, ArchiveLimits(max_ratio=1e9))
    assert _codes(issues) == ["archive.size_mismatch"]
    assert inflated.produced <= declared + OUTPUT_STEP
    assert list(dest.iterdir()) == []


def test_an_entry_short_of_its_declared_size_is_refused(tmp_path):
    data = zc.patch_central(zc.build_zip([zc.deflated("users.csv", CSV * 1000)]), 0, 24, "<L", 10**6)
    issues, dest = _unpack(tmp_path, data)
    assert _codes(issues) == ["archive.size_mismatch"]
    assert list(dest.iterdir()) == []


def test_the_per_entry_limit_counts_the_bytes_produced(tmp_path, inflated):
    rng = random.Random(2)
    small, big = rng.randbytes(MIB // 2), rng.randbytes(3 * MIB)
    data = zc.build_zip([zc.deflated("orgs.csv", small), zc.deflated("users.csv", big)])
    limits = ArchiveLimits(max_entry_size=MIB)
    issues, dest = _unpack(tmp_path, data, limits)
    assert [(i.code, i.value) for i in issues] == [("archive.entry_too_large", "users.csv")]
    assert inflated.produced <= len(small) + MIB + OUTPUT_STEP
    assert list(dest.iterdir()) == []
    ok = tmp_path / "ok"
    ok.mkdir()
    assert unpack(tmp_path / "upload.zip", ok, ArchiveLimits(max_entry_size=4 * MIB)) == []
    assert (ok / "users.csv").read_bytes() == big and (ok / "orgs.csv").read_bytes() == small


def test_the_total_limit_spans_entries(tmp_path):
    rng = random.Random(3)
    data = zc.build_zip([zc.stored(f"f{n}.csv", rng.randbytes(700_000)) for n in range(3)])
    issues, dest = _unpack(tmp_path, data, ArchiveLimits(max_entry_size=MIB, max_total_size=2 * MIB))
    assert _codes(issues) == ["archive.too_large"]
    assert list(dest.iterdir()) == []


def test_a_damaged_checksum_is_refused_after_the_stream(tmp_path):
    data = zc.patch_central(zc.build_zip([zc.deflated("users.csv", CSV * 50)]), 0, 16, "<L", 12345)
    issues, dest = _unpack(tmp_path, data)
    assert [(i.code, i.value) for i in issues] == [("archive.crc_mismatch", "users.csv")]
    assert list(dest.iterdir()) == []


# -- zip_state ---------------------------------------------------------------------------
class _CountingFile:
    """A file opened for reading that adds up the bytes read from it."""

    total = 0

    def __init__(self, path, mode="rb"):
        assert mode == "rb"
        self._fh = open(path, mode)  # noqa: SIM115 - a file object itself: closed by __exit__

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size)
        _CountingFile.total += len(data)
        return data

    def __getattr__(self, name: str):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._fh.close()


@pytest.fixture
def bytes_read(monkeypatch) -> type[_CountingFile]:
    """Count the bytes the archive module reads from files it opens (``bytes_read.total``)."""
    monkeypatch.setattr(_CountingFile, "total", 0)
    monkeypatch.setattr(archive, "open", _CountingFile, raising=False)
    return _CountingFile


TAIL = 22 + 0xFFFF  # the end record and the largest comment: what finding the end record may read


def _sample() -> bytes:
    return zc.build_zip([zc.deflated("orgs.csv", CSV * 40), zc.stored("users.csv", CSV * 30),
                         zc.deflated("classes.csv", CSV * 20)])


def test_zip_state_of_a_complete_zip(tmp_path, no_decompression):
    assert zip_state(_write(tmp_path, _sample())) is ZipState.COMPLETE


def test_zip_state_of_a_truncated_zip_is_incomplete_wherever_it_is_cut(tmp_path, no_decompression):
    data = _sample()
    directory = zc.central_offset(data, 0)
    for cut in (0, 3, 4, 30, directory // 2, directory, directory + 50, len(data) - 22, len(data) - 10,
                len(data) - 1):
        assert zip_state(_write(tmp_path, data[:cut], f"cut{cut}.zip")) is ZipState.INCOMPLETE, cut


@pytest.mark.parametrize("content", [
    b"sourcedId,name\n1,Ada\n",
    b"%PDF-1.7\n" + bytes(500),
    b"\x1f\x8b\x08\x00" + bytes(100),  # gzip
    b"PK\x05\x06" + b"\xff" * 30,  # an end-record signature without a directory
    random.Random(4).randbytes(100_000),
], ids=["csv", "pdf", "gzip", "junk-end-record", "noise"])
def test_zip_state_of_something_else_is_not_zip(tmp_path, no_decompression, content):
    assert zip_state(_write(tmp_path, content)) is ZipState.NOT_ZIP


def _damage(data: bytes, how: str) -> bytes:
    eocd = data.rindex(b"PK\x05\x06")
    patched = bytearray(data)
    first = zc.central_offset(data, 0)
    if how == "central signature":
        patched[zc.central_offset(data, 1)] ^= 0xFF
    elif how == "count too high":
        struct.pack_into("<HH", patched, eocd + 8, 4, 4)
    elif how == "count too low":
        struct.pack_into("<HH", patched, eocd + 8, 2, 2)
    elif how == "name length":
        struct.pack_into("<H", patched, zc.central_offset(data, 2) + 28, 5000)
    elif how == "offset beyond data":
        struct.pack_into("<L", patched, zc.central_offset(data, 1) + 42, first + 10)
    elif how == "directory size":
        struct.pack_into("<L", patched, eocd + 12, len(data) - first - 22 + 7)
    return bytes(patched)


@pytest.mark.parametrize("how", ["central signature", "count too high", "count too low", "name length",
                                 "offset beyond data", "directory size"])
def test_zip_state_of_a_damaged_directory_is_not_zip(tmp_path, no_decompression, how):
    path = _write(tmp_path, _damage(_sample(), how))
    assert zip_state(path) is ZipState.NOT_ZIP
    dest = tmp_path / "out"
    dest.mkdir()
    assert _codes(unpack(path, dest)) == ["archive.not_a_zip"]  # and the run says so


def test_zip_state_does_not_read_a_huge_claimed_directory(tmp_path, no_decompression, bytes_read):
    data = bytearray(_sample())
    eocd = data.rindex(b"PK\x05\x06")
    struct.pack_into("<2L", data, eocd + 12, 0xFFFFFF00, 0)  # 4 GiB of directory at offset 0
    assert zip_state(_write(tmp_path, bytes(data))) is ZipState.NOT_ZIP
    assert bytes_read.total <= 4 + TAIL


def test_zip_state_reads_no_more_directory_than_the_limit(tmp_path, no_decompression, bytes_read):
    many = zc.build_zip([zc.stored(f"{'x' * 60}-{n}.csv", CSV) for n in range(200)])  # 20 KB of directory
    path = _write(tmp_path, many)
    assert zip_state(path, ArchiveLimits(max_directory_size=4096)) is ZipState.NOT_ZIP
    assert bytes_read.total <= 4 + TAIL
    assert zip_state(path) is ZipState.COMPLETE


def test_zip_state_takes_a_huge_entry_count_as_finished_without_reading_the_directory(tmp_path, no_decompression,
                                                                                      bytes_read):
    """A ZIP64 end record counting 2**40 entries: finished (unpack refuses it), the directory unread."""
    data = _sample()
    first = zc.central_offset(data, 0)
    eocd = data.rindex(b"PK\x05\x06")
    directory = data[first:eocd]
    record64 = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, 1 << 40, 1 << 40, len(directory), first)
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, eocd, 1)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    path = _write(tmp_path, data[:eocd] + record64 + locator + end)
    assert zip_state(path) is ZipState.COMPLETE
    assert bytes_read.total <= 4 + TAIL + 56 + 20
    dest = tmp_path / "out"
    dest.mkdir()
    assert _codes(unpack(path, dest)) == ["archive.too_many_entries"]


@pytest.mark.parametrize("method", [zc.DEFLATED, zc.BZIP2])
def test_zip_state_is_fast_on_a_bomb(tmp_path, no_decompression, bytes_read, method):
    """10 GiB of deflate (10 MB) or 1 GiB of bzip2: judged from its last 64 KiB, nothing inflated."""
    if method == zc.DEFLATED:
        bomb = zc.bomb_entry("users.csv", method, zc.deflate_zeros(10_000), 10_000 * MIB)
    else:
        bomb = zc.bomb_entry("users.csv", method, zc.bzip2_zeros(), 1 << 30)
    path = _write(tmp_path, zc.build_zip([bomb]))
    started = time.perf_counter()
    assert zip_state(path) is ZipState.COMPLETE
    assert time.perf_counter() - started < 1.0
    assert bytes_read.total <= 4 + TAIL + 200
