"""The byte-level structure of CSV text (read/structure.py): quotes, line ends, where records start.

The scan must agree with RFC 4180 (oneroster.md §2 G1, G2) and Apple's backslash dialect
(asm.md §1.1) on which quotes are stray, and with pyarrow's reader on where each record
starts, whatever the chunking: the reader trusts it for every line number it reports.
"""

from __future__ import annotations

import io

import pyarrow.csv as pacsv
from hypothesis import given, settings
from hypothesis import strategies as st

from rostergate.formats.read import structure
from rostergate.formats.read.structure import field_at, line_of, scan


def test_a_quote_inside_an_unquoted_value_and_text_after_a_closing_quote_are_stray():
    data = b'a,b\ns"0,2\n"s"0,3\n"ok ""x""",4\n'
    found = scan(data, ",")
    assert found.bare_quotes == [data.index(b's"0') + 1, data.index(b'"s"0') + 2]
    assert found.bare_quote_count == 2 and found.unclosed_quote is None


def test_a_quote_left_open_is_found_where_it_opens():
    data = b'a,b\n1,2\n3,"4\n5,6\n'
    found = scan(data, ",", records=True)
    assert found.unclosed_quote == data.index(b'"4')
    assert found.record_lines.tolist() == [1, 2, 3]  # everything after the quote is one record
    assert found.inner_line_ends == 2


def test_records_start_on_their_real_lines_after_blank_lines_and_multiline_values():
    data = b'a,b\r\n1,2\r\n\r\n\r\n3,"x\r\ny"\r\n\r\n5,6'
    found = scan(data, ",", records=True)
    assert found.record_lines.tolist() == [1, 2, 5, 8]
    assert found.cr_line_ends == 0 and found.inner_line_ends == 1


def test_carriage_returns_alone_end_lines_and_are_counted():
    found = scan(b"a,b\r1,2\r3,4\r", ",", records=True)
    assert found.cr_line_ends == 3 and found.record_lines.tolist() == [1, 2, 3]


def test_apples_backslash_escapes_quotes_and_line_ends():
    data = b'a,b\n1,"say \\"hi\\""\n2,x\\\ny\n3,"\\\\"\n'
    found = scan(data, ",", "\\", records=True)
    assert found.bare_quotes == [] and found.unclosed_quote is None
    assert found.record_lines.tolist() == [1, 2, 3, 5]  # the escaped line end is inside a value
    rfc = scan(data, ",", records=True)  # the same bytes read as RFC 4180 have stray quotes
    assert rfc.bare_quotes


def test_line_and_field_of_an_offset():
    data = b'a,b\r\nx,"y"\rz,w"v\n'
    offset = data.index(b'w"') + 1
    assert line_of(data, offset) == 3
    assert field_at(data, offset, ",") == (1, 'w"v')


cells = st.lists(st.sampled_from(['a', ',', '"', '""', '\n', '\r\n', '\r', 'é', '\\', ' ']), max_size=8).map("".join)
texts = st.lists(cells, min_size=1, max_size=12).map(lambda parts: ("h1,h2\n" + "".join(parts)).encode())


@settings(max_examples=150, deadline=None)
@given(texts, st.sampled_from([None, "\\"]))
def test_chunking_changes_nothing(data, escape):
    whole = scan(data, ",", escape, records=True)
    size, structure._CHUNK = structure._CHUNK, 3  # a quote pair or CRLF split between chunks
    try:
        parts = scan(data, ",", escape, records=True)
    finally:
        structure._CHUNK = size
    assert parts.record_lines.tolist() == whole.record_lines.tolist()
    assert (parts.unclosed_quote, parts.cr_line_ends, parts.inner_line_ends) == (
        whole.unclosed_quote, whole.cr_line_ends, whole.inner_line_ends)
    assert parts.bare_quotes == whole.bare_quotes


@settings(max_examples=150, deadline=None)
@given(texts, st.sampled_from([None, "\\"]))
def test_records_agree_with_pyarrows_reader(data, escape):
    """Every record the scan finds is one pyarrow reads or refuses: the reader's line map rests on it."""
    found = scan(data, ",", escape, records=True)
    refused = []
    try:
        table = pacsv.read_csv(io.BytesIO(data), read_options=pacsv.ReadOptions(
            column_names=["h1", "h2"], skip_rows=1, use_threads=False), parse_options=pacsv.ParseOptions(
            newlines_in_values=True, escape_char=escape or False,
            invalid_row_handler=lambda row: refused.append(row) or "skip"))
    except Exception:  # pyarrow refuses the whole text (e.g. a quote open at the end): nothing to agree on
        return
    assert table.num_rows + len(refused) + 1 == len(found.record_lines)
