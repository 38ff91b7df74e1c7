"""Column-mask rules shared by the ASM and OneRoster validators.

Every rule takes a loaded table and a column, builds one boolean mask over the
whole column (pandera style, aesthetics.md §5) and hands it to the
:class:`~.collect.Collector`, which materialises only the first few failing
rows. No rule loops over rows in Python.
"""

from __future__ import annotations

import re
from typing import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from rostergate.formats.collect import Collector
from rostergate.formats.csvio import LoadedTable


def column(t: LoadedTable, name: str) -> pd.Series:
    assert t.frame is not None
    return t.frame[name]


def nonempty(s: pd.Series) -> pd.Series:
    return s != ""


def flag(c: Collector, code: str, t: LoadedTable, col: str | None, mask: pd.Series | np.ndarray,
         values: pd.Series | None = None, **params) -> int:
    """Report the rows of ``t`` where ``mask`` holds."""
    if values is None and col is not None:
        values = column(t, col)
    return c.rows(code, t.name, mask, column=col, values=values, lines=t.lines, **params)


def required(c: Collector, code: str, t: LoadedTable, cols: Iterable[str], **params) -> None:
    for col in cols:
        if col in t.frame.columns:
            flag(c, code, t, col, column(t, col) == "", values=None, **params)


def _mask(s: pd.Series, values: pa.Array | pa.ChunkedArray | np.ndarray) -> pd.Series:
    if not isinstance(values, np.ndarray):
        values = values.to_numpy(zero_copy_only=False)
    return pd.Series(values.astype(bool, copy=False), index=s.index)


def _none(s: pd.Series) -> pd.Series:
    return pd.Series(np.zeros(len(s), dtype=bool), index=s.index)


def not_matching(s: pd.Series, regex: str, max_len: int | None = None) -> pd.Series:
    """Non-empty values that do not match ``regex`` entirely (or are longer than ``max_len`` bytes)."""
    arr = arrow(s)
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
    arr = arrow(s)
    if _all_bytes_in(arr, charset):
        if max_len is None:
            return _none(s)
        return _mask(s, pc.greater(pc.binary_length(arr), max_len))
    return not_matching(s, f"[{re.escape(charset)}]+", max_len)


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
    arr = arrow(s)
    value_set = pa.array(list(allowed), type=arr.type)
    bad = pc.and_(pc.not_equal(arr, ""), pc.invert(pc.is_in(arr, value_set=value_set)))
    if ext_regex is not None and pc.any(bad).as_py():
        bad = pc.and_(bad, pc.invert(pc.match_substring_regex(arr, f"^(?:{ext_regex})$")))
    return _mask(s, bad)


def later_duplicates(s: pd.Series) -> pd.Series:
    """Non-empty values already seen on an earlier row."""
    return nonempty(s) & pd.Series(duplicate_mask(arrow(s), keep_first=True), index=s.index)


def duplicate_mask(values: pa.Array | pa.ChunkedArray, keep_first: bool = True) -> np.ndarray:
    """Rows whose value occurs more than once (``keep_first``: all but the first occurrence).

    Hash-based via Arrow's dictionary encoding, which numbers values in order of first
    appearance: a row is a first occurrence exactly when its code exceeds every earlier code.
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    n = len(values)
    if n > 1:
        head, tail = values.slice(0, n - 1), values.slice(1)
        if pc.all(pc.less_equal(head, tail)).as_py():  # exports are often sorted by id: no hashing needed
            same = pc.equal(head, tail).to_numpy(zero_copy_only=False)
            mask = np.zeros(n, dtype=bool)
            mask[1:] = same
            if not keep_first:
                mask[:-1] |= same
            return mask
    codes, distinct = _codes(values)
    return _duplicates_of_codes(codes, distinct, keep_first)


def pair_duplicate_mask(a: pa.ChunkedArray, b: pa.ChunkedArray, keep_first: bool = True) -> np.ndarray:
    """Like :func:`duplicate_mask` for the pair of columns ``(a, b)``."""
    ca, _ = _codes(a)
    cb, _ = _codes(b)
    return code_pair_duplicate_mask(ca.astype(np.int64), cb.astype(np.int64), keep_first)


def code_pair_duplicate_mask(a: np.ndarray, b: np.ndarray, keep_first: bool = True) -> np.ndarray:
    """Duplicate rows of the pair ``(a, b)`` of non-negative integer codes.

    When the rows are grouped by one side in order (enrolments listed student by
    student: ``a`` never decreases), a repeat can only sit inside a group, and the
    stable sort of the combined key only has to order each small group: near-linear,
    where a hash table over millions of keys is bound by cache misses.
    """
    n = len(a)
    if n < 2:
        return np.zeros(n, dtype=bool)
    for major, minor in ((a, b), (b, a)):
        if bool((major[1:] >= major[:-1]).all()):
            return _sorted_duplicates(major * (int(minor.max()) + 1) + minor, keep_first)
    return int_duplicate_mask(a * (int(b.max()) + 1) + b, keep_first)


def int_duplicate_mask(keys: np.ndarray, keep_first: bool = True) -> np.ndarray:
    """Duplicate rows of an integer key.

    Exports come in long sorted runs (by user, then by class for the teachers, say):
    a strictly increasing key has no repeats at all, and a key made of few runs
    sorts in near-linear time (timsort merges runs), which beats hashing a million
    keys; other keys go to pandas' int64 hash table (faster than Arrow's here).
    """
    n = len(keys)
    if n < 2:
        return np.zeros(n, dtype=bool)
    steps = np.diff(keys)
    if bool((steps > 0).all()):
        return np.zeros(n, dtype=bool)
    if np.count_nonzero(steps < 0) >= n // 64:
        return pd.Series(keys).duplicated(keep="first" if keep_first else False).to_numpy().copy()
    return _sorted_duplicates(keys, keep_first)


def _sorted_duplicates(keys: np.ndarray, keep_first: bool) -> np.ndarray:
    """:func:`int_duplicate_mask` by a stable sort (fast when ``keys`` are nearly in order)."""
    n = len(keys)
    order = np.argsort(keys, kind="stable")  # stable: the first of equal keys is the earliest row
    ordered = keys[order]
    same = ordered[1:] == ordered[:-1]
    mask = np.zeros(n, dtype=bool)
    mask[order[1:][same]] = True  # every occurrence after the first
    if not keep_first:
        mask[order[:-1][same]] = True  # and the first one, too
    return mask


def _codes(values: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, int]:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    encoded = pc.dictionary_encode(values)
    return encoded.indices.to_numpy(zero_copy_only=False), len(encoded.dictionary)


def _duplicates_of_codes(codes: np.ndarray, distinct: int, keep_first: bool) -> np.ndarray:
    n = len(codes)
    if distinct == n:
        return np.zeros(n, dtype=bool)
    if not keep_first:
        return np.bincount(codes, minlength=distinct)[codes] > 1
    first = np.empty(n, dtype=bool)
    first[:1] = True
    if n > 1:
        first[1:] = codes[1:] > np.maximum.accumulate(codes)[:-1]
    return ~first


_RUN_SAMPLE = 4096


def run_starts(values: pa.Array | pa.ChunkedArray) -> np.ndarray | None:
    """Where each run of equal adjacent values starts, when the values come in runs.

    Reference columns of big files often do (an export ordered by user lists each
    student's enrolments together): then a lookup probes one value per run and
    repeats the answer. ``None`` when runs are shorter than two values on average;
    a sample decides first, so a column without runs costs one small pass.
    """
    n = len(values)
    if n < 2 * _RUN_SAMPLE or values.null_count:
        return None
    sample = values.slice(0, _RUN_SAMPLE)
    if pc.sum(pc.not_equal(sample.slice(1), sample.slice(0, _RUN_SAMPLE - 1))).as_py() > _RUN_SAMPLE // 2:
        return None
    changes = pc.not_equal(values.slice(1), values.slice(0, n - 1)).to_numpy(zero_copy_only=False)
    starts = np.flatnonzero(np.concatenate(([True], changes)))
    return starts if len(starts) <= n // 2 else None


def lookup(values: pa.Array | pa.ChunkedArray, value_set: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Each value's position in ``value_set`` (int64), -1 where it is not there.

    ``pyarrow.compute.index_in``, probing one value per run of equal values (see
    :func:`run_starts`): a hash probe per row is cache-bound on a million-row pool.
    """
    if isinstance(value_set, pa.ChunkedArray):
        value_set = value_set.combine_chunks()
    if value_set.type != values.type:
        value_set = value_set.cast(values.type)
    starts = run_starts(values)
    probe = values if starts is None else values.take(pa.array(starts))
    found = pc.fill_null(pc.index_in(probe, value_set=value_set), -1).to_numpy(zero_copy_only=False)
    found = found.astype(np.int64, copy=False)
    return found if starts is None else np.repeat(found, np.diff(np.append(starts, len(values))))


def missing_in(s: pd.Series, targets: pd.Series | pa.Array | pa.ChunkedArray) -> pd.Series:
    """Non-empty values of ``s`` that are not among ``targets``."""
    values = _as_arrow(s)
    filled = pc.not_equal(values, "")
    if not pc.any(filled).as_py():
        return _none(s)
    missing = lookup(values, _as_arrow(targets)) < 0
    return _mask(s, pc.fill_null(filled, False).to_numpy(zero_copy_only=False) & missing)


def _as_arrow(s) -> pa.Array | pa.ChunkedArray:
    if isinstance(s, (pa.Array, pa.ChunkedArray)):
        return s
    arr = s.array
    if hasattr(arr, "__arrow_array__"):
        return arr.__arrow_array__()
    return pa.array(s.astype(str).tolist(), type=pa.string())


def arrow(s: pd.Series) -> pa.ChunkedArray:
    out = _as_arrow(s)
    return out if isinstance(out, pa.ChunkedArray) else pa.chunked_array([out])


def split_list(s: pd.Series) -> tuple[pa.Array, np.ndarray]:
    """Split comma lists: the flat items and, for each item, the row position it came from.

    Empty cells produce no items.
    """
    arr = arrow(s).combine_chunks()
    valid = pc.not_equal(arr, "")
    lists = pc.split_pattern(arr, ",")
    lists = pc.if_else(valid, lists, pa.scalar(None, type=lists.type))
    items = pc.list_flatten(lists)
    parents = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)
    return items, parents


def rows_mask(n: int, positions: np.ndarray) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    mask[positions] = True
    return mask
