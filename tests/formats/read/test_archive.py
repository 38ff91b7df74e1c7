"""Archive safety beyond the per-code cases: nothing escapes, layout, completeness."""

from __future__ import annotations

import zipfile

from rostergate.formats.read.archive import ArchiveLimits, ZipState, is_complete_zip, unpack, zip_state
from tests.formats import conftest as kit


def test_valid_zip_unpacks_flat(tmp_path):
    z = kit.zip_folder(kit.OR11, tmp_path / "u.zip")
    dest = tmp_path / "out"
    dest.mkdir()
    assert unpack(z, dest) == []
    assert sorted(p.name for p in dest.iterdir()) == sorted(p.name for p in kit.OR11.iterdir())


def test_single_folder_is_flattened_with_a_warning(tmp_path):
    entries = {"export/" + p.name: p.read_bytes() for p in kit.ASM.iterdir()}
    entries["__MACOSX/export/._students.csv"] = b"junk"
    entries["export/.DS_Store"] = b"junk"
    z = kit.make_zip(tmp_path / "u.zip", entries)
    dest = tmp_path / "out"
    dest.mkdir()
    issues = unpack(z, dest)
    assert [(i.severity, i.code, i.value) for i in issues] == [("warning", "archive.nested_folder", "export")]
    assert sorted(p.name for p in dest.iterdir()) == sorted(p.name for p in kit.ASM.iterdir())


def test_error_leaves_dest_empty_and_writes_nothing_outside(tmp_path):
    z = kit.make_zip(tmp_path / "u.zip", {"users.csv": b"a\n1\n", "../../escape.csv": b"x", "/abs.csv": b"x"})
    dest = tmp_path / "deep" / "out"
    dest.mkdir(parents=True)
    issues = unpack(z, dest)
    assert {i.code for i in issues} >= {"archive.path_traversal", "archive.absolute_path"}
    assert list(dest.iterdir()) == []
    assert not (tmp_path / "escape.csv").exists() and not (tmp_path / "deep" / "escape.csv").exists()


def test_bomb_is_stopped_while_streaming_and_partial_files_removed(tmp_path):
    z = kit.make_zip(tmp_path / "u.zip", {"a.csv": b"a,b\n1,2\n", "bomb.csv": b"0" * (50 << 20)})
    dest = tmp_path / "out"
    dest.mkdir()
    issues = unpack(z, dest, ArchiveLimits(max_total_size=10 << 20, max_ratio=10_000))
    assert [i.code for i in issues] == ["archive.too_large"]
    assert list(dest.iterdir()) == []


def test_lying_header_sizes_do_not_bypass_the_total_limit(tmp_path):
    z = kit.make_zip(tmp_path / "u.zip", {"big.csv": b"1" * (4 << 20)})
    with zipfile.ZipFile(z) as zf:
        assert zf.getinfo("big.csv").file_size == 4 << 20
    kit.patch_central(z, 0, 24, "<I", 10)  # claims 10 bytes
    dest = tmp_path / "out"
    dest.mkdir()
    issues = unpack(z, dest, ArchiveLimits(max_total_size=1 << 20, max_ratio=1e9))
    assert issues and issues[0].severity == "error"
    assert list(dest.iterdir()) == []


def test_is_complete_zip(tmp_path):
    z = kit.zip_folder(kit.OR11, tmp_path / "u.zip")
    assert is_complete_zip(z)
    data = z.read_bytes()
    for cut in (10, len(data) // 2, len(data) - 5):
        part = tmp_path / f"part{cut}.zip"
        part.write_bytes(data[:cut])
        assert not is_complete_zip(part)
    # Changed on purpose: completeness is judged from the end record and the central directory
    # alone, never by decompressing, so a wrong CRC is a finished upload; unpack refuses it.
    damaged = tmp_path / "crc.zip"
    damaged.write_bytes(data)
    kit.patch_central(damaged, 0, 16, "<I", 0)
    assert is_complete_zip(damaged)
    dest = tmp_path / "out"
    dest.mkdir()
    assert [i.code for i in unpack(damaged, dest)] == ["archive.crc_mismatch"]
    assert not is_complete_zip(tmp_path / "missing.zip")
    (tmp_path / "junk.zip").write_bytes(b"PK\x05\x06" + b"\xff" * 30)
    assert not is_complete_zip(tmp_path / "junk.zip")


def test_zip_state_tells_unfinished_from_not_a_zip(tmp_path):
    """INCOMPLETE is kept for a resumed upload; NOT_ZIP is finished and unreadable."""
    z = kit.zip_folder(kit.OR11, tmp_path / "u.zip")
    data = z.read_bytes()
    assert zip_state(z) is ZipState.COMPLETE
    for cut in (0, 3, 10, len(data) // 2, len(data) - 5):
        part = tmp_path / f"part{cut}.zip"
        part.write_bytes(data[:cut])
        assert zip_state(part) is ZipState.INCOMPLETE, cut  # a ZIP's start without its end record
    assert zip_state(tmp_path / "missing.zip") is ZipState.INCOMPLETE
    (tmp_path / "text.zip").write_bytes(b"this is not a zip file at all")
    assert zip_state(tmp_path / "text.zip") is ZipState.NOT_ZIP
    (tmp_path / "junk.zip").write_bytes(b"PK\x05\x06" + b"\xff" * 30)
    assert zip_state(tmp_path / "junk.zip") is ZipState.NOT_ZIP
    lying = tmp_path / "lying.zip"
    lying.write_bytes(data)
    kit.patch_central(lying, 0, 42, "<I", len(data))  # first entry's local header beyond the data
    assert zip_state(lying) is ZipState.NOT_ZIP
    many = kit.make_zip(tmp_path / "many.zip", {f"f{n}.csv": b"a\n" for n in range(5)})
    assert zip_state(many, ArchiveLimits(max_entries=2)) is ZipState.COMPLETE  # unpack refuses it


def test_only_stored_and_deflate_are_unpacked(tmp_path):
    """Changed on purpose: bzip2 and LZMA are refused from the directory, before any byte is expanded."""
    entries = {"users.csv": b"a,b\n1,2\n", "orgs.csv": b"c\n3\n"}
    for method, name in ((zipfile.ZIP_BZIP2, "bzip2"), (zipfile.ZIP_LZMA, "LZMA")):
        z = kit.make_zip(tmp_path / f"{name}.zip", entries, infos={"orgs.csv": {"compress_type": method}})
        dest = tmp_path / name
        dest.mkdir()
        issues = unpack(z, dest)
        assert [(i.code, i.value) for i in issues] == [("archive.unsupported_compression", "orgs.csv")]
        assert name in issues[0].message
        assert list(dest.iterdir()) == []
    stored = kit.make_zip(tmp_path / "stored.zip", entries,
                          infos={n: {"compress_type": zipfile.ZIP_STORED} for n in entries})
    dest = tmp_path / "stored"
    dest.mkdir()
    assert unpack(stored, dest) == []
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == entries


def test_one_entry_over_its_own_limit_is_refused(tmp_path):
    z = kit.make_zip(tmp_path / "u.zip", {"a.csv": b"a,b\n1,2\n", "big.csv": bytes(range(256)) * 64})
    dest = tmp_path / "out"
    dest.mkdir()
    issues = unpack(z, dest, ArchiveLimits(max_entry_size=10_000))
    assert [(i.code, i.value) for i in issues] == [("archive.entry_too_large", "big.csv")]
    assert list(dest.iterdir()) == []
    assert unpack(z, dest, ArchiveLimits(max_entry_size=20_000)) == []
