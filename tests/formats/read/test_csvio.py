"""read_table keeps its contract; decoding is disclosed by the loader."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rostergate.formats.read.csvio import load_bytes, read_header, read_table, read_table_bytes, read_table_with_issues


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


# -- issue 11: what the reader says about a file is what is in it ------------------------------------
def _codes(t):
    return [(i.code, i.line) for i in t.issues]


def test_rows_after_blank_lines_keep_their_real_lines():
    t = load_bytes(b"a,b\n1,2\n\n\n3,4\n5,x\n", "x.csv")
    assert t.frame["a"].tolist() == ["1", "3", "5"] and t.lines.tolist() == [2, 5, 6] and t.issues == []


def test_a_header_longer_than_64_kib_is_read_whole(tmp_path):
    names = [f"metadata.c{i:06d}" for i in range(8000)]  # ~135 KiB of header
    data = (",".join(["sourcedId", *names]) + "\n" + ",".join(["x1", *("v" for _ in names)]) + "\n").encode()
    t = load_bytes(data, "x.csv")
    assert list(t.frame.columns) == ["sourcedId", *names] and t.frame["sourcedId"].tolist() == ["x1"]
    path = tmp_path / "wide.csv"
    path.write_bytes(data)
    assert read_header(path) == ["sourcedId", *names]


def test_a_repeated_name_is_reported_once_with_its_positions_and_read_from_its_first_column():
    t = load_bytes(b"person_id,last_name,first_name,last_name\np1,Lee,Ann,\n", "students.csv")
    (dup,) = t.issues
    assert (dup.code, dup.column) == ("csv.header.duplicate_column", "last_name")
    assert "2 times" in dup.message and "positions 2, 4" in dup.message
    assert list(t.frame.columns) == ["person_id", "last_name", "first_name"]  # no internal "last_name.1"
    assert t.frame["last_name"].tolist() == ["Lee"] and t.repeated == {"last_name"}


def test_a_header_ending_in_a_separator_is_named_and_the_rows_are_read():
    t = load_bytes(b"a,b,\n1,2\n3,4\n", "x.csv")
    assert _codes(t) == [("csv.header.trailing_separator", 1)]
    assert t.frame.to_dict("list") == {"a": ["1", "3"], "b": ["2", "4"]} and len(t.malformed) == 0


def test_rows_ending_in_an_empty_cell_are_named_once_and_read():
    t = load_bytes(b"propertyName,value\nmanifest.version,1.0,\noneroster.version,1.1,\n", "manifest.csv")
    assert _codes(t) == [("csv.trailing_separator", 2)]
    assert t.frame["value"].tolist() == ["1.0", "1.1"]


def test_every_row_one_width_and_not_a_separator_is_one_issue_and_every_row_is_malformed():
    t = load_bytes(b"a,b,c\n1,2\n3,4\n", "x.csv")
    assert _codes(t) == [("csv.header.width_mismatch", 1)] and t.hidden == {}
    assert len(t.frame) == 0 and t.malformed.tolist() == [2, 3]


def test_a_quote_left_open_is_named_and_its_row_is_malformed():
    t = load_bytes(b'a,b\n1,2\n3,"4\n5,6\n7,8\n', "x.csv")
    (open_quote,) = t.issues
    assert (open_quote.code, open_quote.line, open_quote.column) == ("csv.unterminated_quote", 3, "b")
    assert "(3 line(s))" in open_quote.message
    assert t.frame["a"].tolist() == ["1"] and t.malformed.tolist() == [3]


def test_a_stray_quote_is_named_with_the_advice_of_the_files_dialect():
    rfc = load_bytes(b'a,b\n1,s"0\n', "users.csv")
    apple = load_bytes(b'a,b\n1,s"0\n', "students.csv", escape_char="\\")
    for t in (rfc, apple):
        (stray,) = t.issues
        assert (stray.code, stray.line, stray.column, stray.value) == ("csv.bare_quote", 2, "b", 's"0')
    assert '"O""Brien"' in rfc.issues[0].message and '"O\\"Brien"' in apple.issues[0].message


def test_carriage_returns_alone_are_a_warning_and_the_rows_are_read():
    t = load_bytes(b"a,b\r1,2\r3,4\r", "x.csv")
    assert [(i.code, i.severity) for i in t.issues] == [("csv.cr_line_ends", "warning")]
    assert "3 line(s)" in t.issues[0].message and t.frame["a"].tolist() == ["1", "3"]


def test_the_empty_file_advice_belongs_to_the_files_format():
    (oneroster,) = load_bytes(b"", "users.csv").issues
    (apple,) = load_bytes(b"", "students.csv", escape_char="\\").issues
    assert "manifest.csv" in oneroster.message
    assert "manifest.csv" not in apple.message and "six files" in apple.message


def test_a_clean_file_is_not_scanned(monkeypatch):
    """The byte scan is for files with quotes, lone CRs or rows that do not map onto lines."""
    import rostergate.formats.read.csvio as csvio

    def refuse(*args, **kwargs):
        raise AssertionError("scanned a clean file")

    monkeypatch.setattr(csvio, "scan", refuse)
    t = load_bytes(b"a,b\r\n" + b"1,2\r\n" * 1000, "x.csv")
    assert len(t.frame) == 1000 and t.lines is None


@settings(max_examples=int(os.environ.get("RG_HYPOTHESIS_EXAMPLES", "60")), deadline=None)
@given(st.lists(st.lists(st.sampled_from(["a", "b c", '"q"', '""', '"x,y"', "", 'z"z', '"open', "é"]),
                         min_size=1, max_size=4), max_size=10),
       st.sampled_from(["\n", "\r\n", "\r"]), st.booleans())
def test_every_row_is_read_or_counted_as_malformed(rows, newline, blank_lines):
    """Rows in the frame plus rows left out as malformed are all the records, each at a real line."""
    body = newline.join(",".join(r) for r in rows)
    if blank_lines:
        body = body.replace(newline, newline * 2)
    data = ("h1,h2,h3" + newline + body).encode()
    t = load_bytes(data, "x.csv")
    if t.frame is None:
        return
    lines = t.lines.tolist() if t.lines is not None else list(range(2, len(t.frame) + 2))
    physical = data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n") + 1
    every = sorted(lines + t.malformed.tolist())
    assert len(set(every)) == len(every) and all(2 <= line <= physical for line in every)
    assert lines == sorted(lines)


def test_a_blank_column_of_a_big_file_shares_one_buffer_and_reads_as_empty_strings() -> None:
    """Bulk files leave whole columns blank; parsed, such a column costs no memory of its own
    (slices of one shared array of empty strings) and behaves like any column of "" values."""
    rows = 150_000
    raw = b"sourcedId,status,dateLastModified\n" + b"".join(b"e%d,,\n" % i for i in range(rows))
    loaded = load_bytes(raw, "enrollments.csv")
    frame = loaded.frame
    assert loaded.issues == [] and frame is not None and len(frame) == rows
    for column in ("status", "dateLastModified"):
        values = frame[column]
        assert str(values.dtype) == "str" and not values.isna().any()
        assert values.eq("").all() and (values.str.strip() == "").all() and values.iat[rows - 1] == ""
    chunked = [frame[c].array._pa_array for c in ("status", "dateLastModified")]  # type: ignore[attr-defined]
    offsets = {chunk.buffers()[1].address for array in chunked for chunk in array.chunks}
    assert len(offsets) == 1  # every chunk of both columns points at the same zeros
    assert frame["sourcedId"].iat[rows - 1] == f"e{rows - 1}"


def test_a_column_with_one_value_is_not_taken_for_blank() -> None:
    rows = 150_000
    body = b"".join(b"e%d,\n" % i for i in range(rows - 1)) + b"last,active\n"
    frame = load_bytes(b"sourcedId,status\n" + body, "enrollments.csv").frame
    assert frame is not None and frame["status"].iat[rows - 1] == "active" and (frame["status"] == "").sum() == rows - 1
