"""read_table keeps its contract; decoding is disclosed by the loader."""

from __future__ import annotations

import pytest

from rostergate.formats.read.csvio import load_bytes, read_table, read_table_bytes, read_table_with_issues


def test_read_table_contract(tmp_path):
    p = tmp_path / "t.csv"
    p.write_bytes("\ufeffb,a,c\r\n007,,é\r\n1,2,3\r\n".encode("utf-8"))
    frame = read_table(p)
    assert list(frame.columns) == ["b", "a", "c"]
    assert frame.to_dict("list") == {"b": ["007", "1"], "a": ["", "2"], "c": ["é", "3"]}
    assert all(str(t) == "str" for t in frame.dtypes)


def test_read_table_converts_windows_1252_and_utf16(tmp_path):
    for codec in ("cp1252", "utf-16"):
        p = tmp_path / f"{codec}.csv"
        p.write_bytes("name,x\nZoë,1\n".encode(codec))
        assert read_table(p)["name"].tolist() == ["Zoë"]
        _, issues = read_table_with_issues(p)
        assert [i.code for i in issues] == ["text.encoding_converted"]


def test_read_table_raises_value_error_when_unreadable(tmp_path):
    p = tmp_path / "e.csv"
    p.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        read_table(p)
    with pytest.raises(ValueError):
        read_table_bytes(b"\x00\x01\x02binary")


def test_semicolons_and_tabs_are_detected():
    assert load_bytes(b"a;b\n1;2\n", "x.csv", allowed_delimiters=(",", ";")).issues == []
    t = load_bytes(b"a\tb\n1\t2\n", "x.csv")
    assert t.frame.to_dict("list") == {"a": ["1"], "b": ["2"]}
    assert [i.code for i in t.issues] == ["text.delimiter"]


def test_line_numbers_follow_values_that_span_lines():
    t = load_bytes(b'a,b\n1,"x\ny\nz"\n2,3\n4,"p\nq"\n', "x.csv")
    assert t.lines.tolist() == [2, 5, 6]
    assert [(i.code, i.line) for i in t.issues] == [("csv.line_break_in_field", 2), ("csv.line_break_in_field", 6)]


def test_bad_rows_are_located():
    t = load_bytes(b"a,b\n1,2\n3,4,5\n6,7\n", "x.csv")
    assert [(i.code, i.line) for i in t.issues] == [("csv.row_width_mismatch", 3)]
    assert t.frame["a"].tolist() == ["1", "6"]


def test_header_only_without_newline():
    t = load_bytes(b"a,b", "x.csv")
    assert list(t.frame.columns) == ["a", "b"] and len(t.frame) == 0 and t.issues == []


def test_lines_stay_right_after_dropped_rows_and_multiline_values():
    t = load_bytes(b'a,b\n1,2\n3,4,5\n6,7\n8,"x\ny"\n9,9,9\n10,11\n', "x.csv")
    assert t.frame["a"].tolist() == ["1", "6", "8", "10"]
    assert t.lines.tolist() == [2, 4, 5, 8]
    assert [(i.code, i.line) for i in t.issues] == [
        ("csv.row_width_mismatch", 3), ("csv.row_width_mismatch", 7), ("csv.line_break_in_field", 5)]


def test_a_file_full_of_bad_rows_stays_cheap():
    from rostergate.formats.validate.collect import Collector

    data = b"a,b\n" + b"1,2,3\n" * 200_000 + b"4,5\n"
    t = load_bytes(data, "x.csv")
    assert t.frame["a"].tolist() == ["4"]
    assert len(t.issues) == 20 and t.hidden == {"csv.row_width_mismatch": 199_980}
    assert [i.line for i in t.issues[:3]] == [2, 3, 4]
    c = Collector()
    c.extend_loaded(t)
    issues = c.issues()
    assert len(issues) == 21 and "and 199980 more" in issues[-1].message
