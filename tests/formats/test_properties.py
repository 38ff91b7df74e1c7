"""Property tests: whatever arrives, the validator answers with issues, never an exception or a hang."""

from __future__ import annotations

import io
import os
import tempfile
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rostergate.formats.read.archive import is_complete_zip, unpack
from rostergate.formats.read.csvio import load_bytes
from rostergate.formats.validate.entry import validate_path
from tests.formats import conftest as kit

# RG_HYPOTHESIS_EXAMPLES=500 for a deeper local run; the default keeps the suite fast
SETTINGS = dict(max_examples=int(os.environ.get("RG_HYPOTHESIS_EXAMPLES", "40")), deadline=3000,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _sane(result) -> None:
    assert result.issues, "a broken upload must yield issues"
    assert all(i.code != "internal.error" for i in result.issues), [i.to_text() for i in result.issues]
    for i in result.issues:
        assert i.severity in ("error", "warning") and i.code and i.message
    result.to_dict()


@settings(**SETTINGS)
@given(st.binary(max_size=4096))
def test_random_bytes_as_upload(data):
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "upload.zip"
        p.write_bytes(data)
        _sane(validate_path(p))
        assert is_complete_zip(p) in (True, False)


cells = st.lists(st.sampled_from(list('ab,;"\t\r\n é\x00\\{}:') + ["TRUE", "usr-s1", "ext:x"]),
                 max_size=12).map("".join)
csv_text = st.lists(st.lists(cells, min_size=1, max_size=6), max_size=8).map(
    lambda rows: "\n".join(",".join(r) for r in rows))


@settings(**SETTINGS)
@given(csv_text, st.sampled_from(["utf-8", "utf-16", "cp1252", "latin-1"]),
       st.sampled_from([("oneroster-1.1-valid", "users.csv"), ("oneroster-1.1-valid", "manifest.csv"),
                        ("oneroster-1.1-valid", "orgs.csv"), ("oneroster-1.1-valid", "enrollments.csv"),
                        ("oneroster-1.2-valid", "roles.csv"), ("oneroster-1.2-valid", "users.csv"),
                        ("asm-valid", "students.csv"), ("asm-valid", "classes.csv"),
                        ("asm-valid", "rosters.csv")]))
def test_random_csv_in_a_valid_upload(text, codec, target):
    fixture, name = target
    with tempfile.TemporaryDirectory() as tmp:
        d = kit.copy(kit.FIXTURES / fixture, Path(tmp) / "u")
        (d / name).write_bytes(text.encode(codec, "replace"))
        _sane(validate_path(d))


@settings(**SETTINGS)
@given(st.binary(max_size=2048))
def test_random_bytes_as_csv(data):
    loaded = load_bytes(data, "x.csv")
    assert loaded.frame is not None or any(i.severity == "error" for i in loaded.issues)


names = st.lists(st.sampled_from(list("ab./\\:C_") + ["..", "users.csv", "__MACOSX/", "x/"]),
                 min_size=1, max_size=8).map("".join)


@pytest.mark.filterwarnings("ignore:Duplicate name")
@settings(**SETTINGS)
@given(st.lists(st.tuples(names, st.binary(max_size=300)), min_size=0, max_size=6),
       st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
def test_random_zips_never_escape(entries, method):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in entries:
            info = zipfile.ZipInfo(name)
            info.compress_type = method
            zf.writestr(info, data)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "upload.zip").write_bytes(buf.getvalue())
        dest = root / "a" / "b" / "dest"
        dest.mkdir(parents=True)
        issues = unpack(root / "upload.zip", dest)
        outside = {p for p in root.rglob("*")} - {p for p in dest.rglob("*")} - {dest, dest.parent, dest.parent.parent,
                                                                                root / "upload.zip"}
        assert outside == set()
        if any(i.severity == "error" for i in issues):
            assert list(dest.iterdir()) == []
        _sane(validate_path(root / "upload.zip"))


NASTY = ["", "TRUE", "true", "false", "ext:x", "a,,b", " org-hs", "org-hs, org-ms", "usr-s1", "usr-t1", "cls-bio-1",
         "org-district", "org-hs", "as-2026", "2026-02-30", "2027-06-30", "line\nbreak", "Zoë", "x" * 300,
         "{a:b}", "9", "09", "1", "1.0", "delta", "bulk", "absent", "student", "teacher", "primary", "\\\"", "0"]


@settings(**SETTINGS)
@given(st.sampled_from(["oneroster-1.1-valid", "oneroster-1.2-valid", "asm-valid"]),
       st.lists(st.tuples(st.integers(0, 20), st.integers(0, 5), st.integers(0, 25), st.sampled_from(NASTY)),
                min_size=1, max_size=6),
       st.sampled_from(["strict", "asm"]))
def test_random_cell_edits_never_crash(fixture, edits, profile):
    with tempfile.TemporaryDirectory() as tmp:
        d = kit.copy(kit.FIXTURES / fixture, Path(tmp) / "u")
        files = sorted(p.name for p in d.iterdir())
        for f, row, col, value in edits:
            table = kit.rows(d / files[f % len(files)])
            if len(table) < 2:
                continue
            r = 1 + row % (len(table) - 1)
            table[r][col % len(table[r])] = value
            kit.write_rows(d / files[f % len(files)], table)
        result = validate_path(d, profile=profile)
        assert all(i.code != "internal.error" for i in result.issues)
        result.to_dict()
