"""Archive safety beyond the per-code cases: nothing escapes, layout, completeness."""

from __future__ import annotations

import zipfile

from rostergate.formats.archive import ArchiveLimits, is_complete_zip, unpack
from tests.formats import kit


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
    damaged = tmp_path / "crc.zip"
    damaged.write_bytes(data)
    kit.patch_central(damaged, 0, 16, "<I", 0)
    assert not is_complete_zip(damaged)
    assert not is_complete_zip(tmp_path / "missing.zip")
    (tmp_path / "junk.zip").write_bytes(b"PK\x05\x06" + b"\xff" * 30)
    assert not is_complete_zip(tmp_path / "junk.zip")
