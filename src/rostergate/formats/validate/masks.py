"""Column-mask rules shared by the ASM and OneRoster validators.

Every rule takes a loaded table and a column, builds one boolean mask over the
whole column (pandera style, aesthetics.md §5) and hands it to the
:class:`~rostergate.formats.validate.collect.Collector`, which materialises only the first few failing
rows. No rule loops over rows in Python.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from rostergate.formats.arrowops import Mask, Positions, Strings, duplicate_mask, position_in, strings
from rostergate.formats.issues import Severity
from rostergate.formats.read.csvio import ReadTable
from rostergate.formats.schema import asm
from rostergate.formats.validate.collect import Collector


def nonempty(s: pd.Series) -> pd.Series:
    return s != ""


def flag(c: Collector, code: str, t: ReadTable, col: str | None, mask: pd.Series | Mask,
         values: pd.Series | None = None, *, severity: Severity | None = None, **params: object) -> int:
    """Report the rows of ``t`` where ``mask`` holds (the value shown: ``col``'s, unless ``values``)."""
    if values is None and col is not None:
        values = t.frame[col]
    return c.rows(code, t.name, mask, column=col, values=values, lines=t.lines, severity=severity, **params)


def required(c: Collector, code: str, t: ReadTable, cols: Iterable[str]) -> None:
    """Report empty values in each of ``cols`` that ``t`` has."""
    for col in cols:
        if col in t.frame.columns:
            flag(c, code, t, col, t.frame[col] == "")


def _mask(s: pd.Series, values: Strings | Mask) -> pd.Series:
    if not isinstance(values, np.ndarray):
        values = values.to_numpy(zero_copy_only=False)
    return pd.Series(values.astype(bool, copy=False), index=s.index)


def _none(s: pd.Series) -> pd.Series:
    return pd.Series(np.zeros(len(s), dtype=bool), index=s.index)


def not_matching(s: pd.Series, regex: str, max_len: int | None = None) -> pd.Series:
    """Non-empty values that do not match ``regex`` entirely (or are longer than ``max_len`` bytes)."""
    arr = strings(s)
    filled = pc.not_equal(arr, "")
    if not pc.any(filled).as_py():
        return _none(s)  # an empty column (e.g. status in a bulk file) costs one pass
    ok = pc.match_substring_regex(arr, f"^(?:{regex})$")
    if max_len is not None:
        ok = pc.and_(ok, pc.less_equal(pc.binary_length(arr), max_len))
    return _mask(s, pc.and_(filled, pc.invert(ok)))


def not_in_charset(s: pd.Series, charset: str, max_len: int | None = None) -> pd.Series:
    """Non-empty values with a character outside ``charset`` (ASCII) or longer than ``max_len``.

    Fast path: when every byte of the column's data buffer is in the set (the normal
    case) only the lengths need checking; otherwise the regex locates the culprits.
    """
    arr = strings(s)
    if _all_bytes_in(arr, charset):
        if max_len is None:
            return _none(s)
        return _mask(s, pc.greater(pc.binary_length(arr), max_len))
    return not_matching(s, f"[{re.escape(charset)}]+", max_len)


def asm_id_problems(s: pd.Series) -> tuple[Mask, Mask]:
    """Values Apple's identifier rule (asm.md §1.1) questions: those with characters beyond letters,
    digits and '-', and of those the ones beyond even the tolerated '_' and '.' (§7 Q4)."""
    odd: Mask = not_in_charset(s, asm.ID_OK).to_numpy(dtype=bool)
    if not odd.any():
        return odd, odd
    return odd, odd & not_matching(s, asm.ID_TOLERATED).to_numpy(dtype=bool)


def _all_bytes_in(arr: pa.ChunkedArray, charset: str) -> bool:
    allowed = charset.encode("ascii")
    for chunk in arr.chunks:
        if chunk.null_count or not pa.types.is_string(chunk.type) and not pa.types.is_large_string(chunk.type):
            return False
        _, offsets_buf, data_buf = chunk.buffers()
        if data_buf is None:
            continue
        width = np.int64 if pa.types.is_large_string(chunk.type) else np.int32
        offsets = np.frombuffer(offsets_buf, dtype=width)[chunk.offset : chunk.offset + len(chunk) + 1]
        if len(offsets) < 2:
            continue
        # deleting every allowed byte leaves nothing (bytes.translate: a C loop, ~3x a numpy lookup)
        if memoryview(data_buf)[offsets[0] : offsets[-1]].tobytes().translate(None, allowed):
            return False
    return True


def not_in(s: pd.Series, allowed: Iterable[str], ext_regex: str | None = None) -> pd.Series:
    """Non-empty values outside ``allowed`` (and, if given, not matching ``ext_regex``)."""
    arr = strings(s)
    value_set = pa.array(list(allowed), type=arr.type)
    bad = pc.and_(pc.not_equal(arr, ""), pc.invert(pc.is_in(arr, value_set=value_set)))
    if ext_regex is not None and pc.any(bad).as_py():
        bad = pc.and_(bad, pc.invert(pc.match_substring_regex(arr, f"^(?:{ext_regex})$")))
    return _mask(s, bad)


def longer_than(s: pd.Series, limit: int) -> Mask:
    """Values longer than ``limit`` characters."""
    arr = strings(s)
    # bytes >= characters, so only values over the limit in bytes need counting in characters
    if not pc.any(pc.greater(pc.binary_length(arr), limit)).as_py():
        return np.zeros(len(s), dtype=bool)
    longer: Mask = pc.greater(pc.utf8_length(arr), limit).to_numpy(zero_copy_only=False)
    return longer


def later_duplicates(s: pd.Series) -> pd.Series:
    """Non-empty values already seen on an earlier row."""
    return nonempty(s) & pd.Series(duplicate_mask(strings(s), keep_first=True), index=s.index)


def missing_in(s: pd.Series, targets: pd.Series | Strings) -> pd.Series:
    """Non-empty values of ``s`` that are not among ``targets``."""
    values = strings(s)
    filled = pc.not_equal(values, "")
    if not pc.any(filled).as_py():
        return _none(s)
    missing = position_in(values, targets) < 0
    return _mask(s, pc.fill_null(filled, False).to_numpy(zero_copy_only=False) & missing)


def split_list(s: pd.Series) -> tuple[pa.Array, Positions]:
    """Split comma lists: the flat items and, for each item, the row position it came from.

    Empty cells produce no items.
    """
    arr = strings(s).combine_chunks()
    valid = pc.not_equal(arr, "")
    lists = pc.split_pattern(arr, ",")
    lists = pc.if_else(valid, lists, pa.scalar(None, type=lists.type))
    items = pc.list_flatten(lists)
    parents = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)
    return items, parents


def rows_mask(n: int, positions: Positions) -> Mask:
    """A mask of ``n`` rows, true at ``positions``."""
    mask = np.zeros(n, dtype=bool)
    mask[positions] = True
    return mask
