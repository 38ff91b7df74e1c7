"""Arrow helpers shared by validation, conversion and the snapshot diff: each one once.

A column of an uploaded CSV is a pandas ``str`` column backed by Arrow strings (see
:mod:`rostergate.formats.read.csvio`); these helpers work on those strings with Arrow's
compute kernels and never loop over rows in Python. Two jobs:

* **where is each value?** :func:`strings` views a column as Arrow strings without a copy;
  :func:`position_in` finds each value's position in a pool of values, probing one value per
  run of equal values (:func:`run_starts`) because exports list related rows together.
* **which rows repeat?** :func:`duplicate_mask` for one column, :func:`pair_duplicate_mask`
  for two, and :func:`code_pair_duplicate_mask` / :func:`int_duplicate_mask` for integer
  codes, with shortcuts for the shapes exports have (sorted columns, long sorted runs).

And one more: :func:`string_hashes`, a 64-bit hash of each value that stays the same from
one run (and one release) to the next, which the safeguard's row snapshots keep.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeAlias

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

#: Arrow strings, in one piece or in chunks (as the CSV reader leaves them).
Strings: TypeAlias = "pa.Array | pa.ChunkedArray"
#: A boolean row mask.
Mask: TypeAlias = npt.NDArray[np.bool_]
#: Row positions or integer codes.
Positions: TypeAlias = npt.NDArray[np.int64]


def strings(values: pd.Series | pd.Index | Strings | Iterable[str]) -> pa.ChunkedArray:
    """``values`` as Arrow strings.

    A pandas ``str`` column (Arrow-backed) gives its own chunks, without a copy; other
    pandas columns are converted to ``str`` first (a missing value stays null); Arrow
    arrays are taken as they are; any other collection is a pool whose order does not
    matter, and gives its values sorted.
    """
    if isinstance(values, pa.ChunkedArray):
        return values
    if isinstance(values, pa.Array):
        return pa.chunked_array([values])
    if isinstance(values, (pd.Series, pd.Index)):
        array = pa.array(pd.Series(values, copy=False).astype("str"))
    else:
        array = pa.array(sorted(values), type=pa.large_string())
    return array if isinstance(array, pa.ChunkedArray) else pa.chunked_array([array])


_RUN_SAMPLE = 4096


def run_starts(values: Strings) -> Positions | None:
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


def position_in(values: pd.Series | Strings, pool: pd.Series | pd.Index | Strings | Iterable[str]) -> Positions:
    """Each value's position in ``pool`` (int64), -1 where it is not there (or is null).

    ``pyarrow.compute.index_in``, probing one value per run of equal values (see
    :func:`run_starts`): a hash probe per row is cache-bound on a million-row pool.
    An empty pool answers -1 everywhere without a pass over ``values``.
    """
    values = strings(values)
    value_set = strings(pool)
    if len(value_set) == 0:
        return np.full(len(values), -1, dtype=np.int64)
    value_set = value_set.combine_chunks()
    if value_set.type != values.type:
        value_set = value_set.cast(values.type)
    starts = run_starts(values)
    probe = values if starts is None else values.take(pa.array(starts))
    found = pc.fill_null(pc.index_in(probe, value_set=value_set), -1).to_numpy(zero_copy_only=False)
    found = found.astype(np.int64, copy=False)
    return found if starts is None else np.repeat(found, np.diff(np.append(starts, len(values))))


def duplicate_mask(values: Strings, keep_first: bool = True) -> Mask:
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


def pair_duplicate_mask(a: Strings, b: Strings, keep_first: bool = True) -> Mask:
    """Like :func:`duplicate_mask` for the pair of columns ``(a, b)``."""
    ca, _ = _codes(a)
    cb, _ = _codes(b)
    return code_pair_duplicate_mask(ca.astype(np.int64), cb.astype(np.int64), keep_first)


def code_pair_duplicate_mask(a: Positions, b: Positions, keep_first: bool = True) -> Mask:
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


def int_duplicate_mask(keys: Positions, keep_first: bool = True) -> Mask:
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
        duplicated: Mask = pd.Series(keys).duplicated(keep="first" if keep_first else False).to_numpy().copy()
        return duplicated
    return _sorted_duplicates(keys, keep_first)


def _sorted_duplicates(keys: Positions, keep_first: bool) -> Mask:
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


def _codes(values: Strings) -> tuple[npt.NDArray[np.integer], int]:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    encoded = pc.dictionary_encode(values)
    return encoded.indices.to_numpy(zero_copy_only=False), len(encoded.dictionary)


def _duplicates_of_codes(codes: npt.NDArray[np.integer], distinct: int, keep_first: bool) -> Mask:
    n = len(codes)
    if distinct == n:
        return np.zeros(n, dtype=bool)
    if not keep_first:
        repeated: Mask = np.bincount(codes, minlength=distinct)[codes] > 1
        return repeated
    first = np.empty(n, dtype=bool)
    first[:1] = True
    if n > 1:
        first[1:] = codes[1:] > np.maximum.accumulate(codes)[:-1]
    return ~first


# -- stable value hashes -------------------------------------------------------------
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_STEP = np.uint64(0x9FB21C651E98DF25)  # odd: multiplying by it loses nothing
_NULL_HASH = np.uint64(0x6A09E667F3BCC908)  # what a missing value hashes to


def mix64(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """splitmix64's finaliser: every input bit reaches every output bit (uint64 arithmetic wraps)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def fold64(acc: npt.NDArray[np.uint64], values: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """``acc`` with ``values`` folded in, in order (``(acc ^ value) * odd``: one-to-one in each; finish with
    :func:`mix64`)."""
    return (acc ^ values) * _STEP


def string_hashes(values: Strings) -> npt.NDArray[np.uint64]:
    """A 64-bit hash of each value, the same in every process and release (a null has its own).

    Each value's bytes are read eight at a time straight from the Arrow buffer (one pass
    over all values per eight bytes of the longest), folded with :func:`fold64` after its
    length and finished with :func:`mix64`. Two different values collide with a
    probability of about 2**-64: the safeguard compares a few million pairs of rows.
    """
    if isinstance(values, pa.ChunkedArray):
        parts = [_chunk_hashes(chunk) for chunk in values.chunks]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)
    return _chunk_hashes(values)


def _chunk_hashes(array: pa.Array) -> npt.NDArray[np.uint64]:
    n = len(array)
    if n == 0:
        return np.zeros(0, dtype=np.uint64)
    large = pa.types.is_large_string(array.type) or pa.types.is_large_binary(array.type)
    width = np.dtype(np.int64 if large else np.int32)
    offsets = np.frombuffer(array.buffers()[1], dtype=width, count=n + 1,
                            offset=array.offset * width.itemsize).astype(np.int64)
    data = array.buffers()[2]
    raw = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, dtype=np.uint8)
    first, end = int(offsets[0]), int(offsets[-1])
    padded = np.zeros(end - first + 8, dtype=np.uint8)  # eight zero bytes: the last word read stays inside
    padded[: end - first] = raw[first:end]
    words = np.ndarray((len(padded) - 7,), dtype="<u8", buffer=padded, strides=(1,))  # the 8 bytes at each byte
    starts, lengths = offsets[:-1] - first, np.diff(offsets)
    acc = lengths.astype(np.uint64) * _GOLDEN
    rows = np.flatnonzero(lengths > 0)
    step = 0
    while rows.size:  # the k-th word of every value longer than 8k bytes
        left = lengths[rows] - 8 * step
        word = words[starts[rows] + 8 * step]
        short = left < 8
        if short.any():  # only the value's own bytes count
            word[short] &= (np.uint64(1) << (left[short] * 8).astype(np.uint64)) - np.uint64(1)
        acc[rows] = fold64(acc[rows], word)
        step += 1
        rows = rows[left > 8]
    hashed = mix64(acc)
    if array.null_count:
        hashed[array.is_null().to_numpy(zero_copy_only=False)] = _NULL_HASH
    return hashed
