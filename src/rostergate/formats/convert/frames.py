"""Column-wise helpers on frames of strings (pandas columns backed by Arrow).

The converter never loops over rows: it selects, matches, de-duplicates, splits
and pivots whole columns with these functions. A helper that stands in for a
pandas idiom names it in its docstring (``frame[mask]``, ``isin``,
``duplicated(keep="first")``, a left merge, a pivot) and returns exactly what
the idiom returns; the speed comes from Arrow's compute kernels and from
shortcuts for the shapes SIS exports usually have (long sorted runs, unique keys).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from rostergate.formats.arrowops import (
    code_pair_duplicate_mask,
    duplicate_mask,
    pair_duplicate_mask,
    position_in,
    strings,
)


def col(frame: pd.DataFrame, name: str) -> pd.Series:
    """A column as strings, or all-empty when the file lacks it."""
    if name in frame.columns:
        return frame[name]
    return pd.Series("", index=frame.index, dtype="str")


def all_empty(values: pd.Series) -> bool:
    """True when every value is ``""`` (reads only the lengths: an unused column costs nothing)."""
    return len(values) == 0 or pc.max(pc.binary_length(strings(values))).as_py() == 0


def select(frame: pd.DataFrame, mask: np.ndarray) -> pd.DataFrame:
    """``frame[mask]`` (index kept) through Arrow's filter kernel.

    pandas' boolean indexing of Arrow-backed string columns goes through a generic
    take that is several times slower than ``pyarrow.compute.filter``; on the
    enrolments file that difference is most of the conversion time.
    """
    mask = np.asarray(mask, dtype=bool)
    rows = np.flatnonzero(mask)
    if len(rows) and int(rows[-1]) - int(rows[0]) + 1 == len(rows):  # one block: a zero-copy slice
        return frame.iloc[int(rows[0]): int(rows[-1]) + 1]
    keep = pa.array(mask)
    columns = {}
    for name in frame.columns:
        column = frame[name]
        if isinstance(column.dtype, pd.StringDtype) and column.dtype.storage == "pyarrow":
            columns[name] = pd.Series(pc.filter(pa.array(column), keep), dtype=column.dtype, copy=False)
        else:
            columns[name] = pd.Series(column.to_numpy()[mask], dtype=column.dtype, copy=False)
    selected = pd.DataFrame(columns, copy=False)
    selected.index = frame.index[mask]
    return selected


def isin(values: pd.Series, pool: pd.Series | pd.Index | Iterable[str]) -> pd.Series:
    """``values.isin(pool)``, through :func:`~rostergate.formats.arrowops.position_in`.

    pandas 3's Arrow-string ``isin`` turns the pool into a Python list first,
    which costs seconds for a million-id pool.
    """
    return pd.Series(position_in(values, pool) >= 0, index=values.index, dtype=bool)


def map_values(values: pd.Series, table: Mapping[str, str], default: str) -> pd.Series:
    """``values.map(table).fillna(default)`` through Arrow's hash lookup (index kept)."""
    keys = sorted(table)
    where = pc.index_in(strings(values), value_set=pa.array(keys, type=pa.large_string()))
    mapped = pc.fill_null(pc.take(pa.array([table[k] for k in keys], type=pa.large_string()), where), default)
    return pd.Series(mapped, index=values.index, dtype="str")


def take(values: pd.Series, positions: np.ndarray) -> pa.Array | pa.ChunkedArray:
    """``values.iloc[positions]`` as Arrow strings; a negative position gives a null."""
    return pc.take(strings(values), pa.array(positions, mask=positions < 0))


def duplicated(*columns: pd.Series) -> np.ndarray:
    """``duplicated(keep="first")`` over one or two aligned string columns (see arrowops.py)."""
    if len(columns) == 1:
        return duplicate_mask(strings(columns[0]))
    first, second = columns
    return pair_duplicate_mask(strings(first), strings(second))


def repeated_pairs(alive: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Rows (among ``alive``) whose (first, second) code pair appeared on an earlier alive row.

    Codes are non-negative ints.
    """
    rows = np.flatnonzero(alive)
    out = np.zeros(len(alive), dtype=bool)
    if len(rows) >= 2:
        out[rows[code_pair_duplicate_mask(first[rows], second[rows])]] = True
    return out


def attach(frame: pd.DataFrame, key: str, wide: pd.DataFrame) -> pd.DataFrame:
    """``frame.merge(wide, left_on=key, right_index=True, how="left")`` for a unique string index."""
    if wide.empty and not len(wide.columns):
        return frame
    keys, index = strings(frame[key]), strings(pd.Series(wide.index, dtype="str"))
    if len(keys) == len(index) and pc.all(pc.equal(keys, index.cast(keys.type))).as_py():
        pos = np.arange(len(keys))  # the usual case: one row per key, in the same order
    else:
        pos = position_in(frame[key], pd.Series(wide.index, dtype="str"))
    take = pa.array(pos, mask=pos < 0)
    columns = {c: pd.Series(pc.take(strings(wide[c]), take), index=frame.index, dtype="str") for c in wide.columns}
    return frame.assign(**columns)


def strictly_increasing(key: pa.Array | pa.ChunkedArray) -> bool:
    """True when every value is greater than the one before (so sorted and unique)."""
    if len(key) < 2:
        return True
    return bool(pc.all(pc.less(key.slice(0, len(key) - 1), key.slice(1))).as_py())


def split_first(values: pd.Series) -> pd.Series:
    """First item of a OneRoster comma list, trimmed (``"09, 10"`` → ``"09"``)."""
    parts = pc.split_pattern(strings(values), ",", max_splits=1)
    first = pc.utf8_trim_whitespace(pc.list_element(parts, 0))
    return pd.Series(first, index=values.index, dtype="str")


def explode_list(frame: pd.DataFrame, id_column: str, list_column: str) -> pd.DataFrame:
    """(id, item) rows of a comma-list column in list order, items trimmed, empties removed."""
    parts = pc.split_pattern(strings(frame[list_column]), ",")
    items = pc.utf8_trim_whitespace(pc.list_flatten(parts))
    parents = pc.list_parent_indices(parts)
    ids = pc.take(strings(frame[id_column]), parents)
    keep = pc.not_equal(items, "")
    return pd.DataFrame({
        "id": pd.Series(pc.filter(ids, keep), dtype="str"),
        "item": pd.Series(pc.filter(items, keep), dtype="str"),
    })


def passes_filter(values: pd.Series, include: frozenset[str], exclude: frozenset[str]) -> pd.Series:
    """True where a value is in ``include`` (when given) and not in ``exclude``."""
    mask = pd.Series(True, index=values.index)
    if include:
        mask &= isin(values, include)
    if exclude:
        mask &= ~isin(values, exclude)
    return mask


def widen(pairs: pd.DataFrame, key: str, value: str, base: str, limit: int) -> pd.DataFrame:
    """Pivot ordered (key, value) pairs to ``base``, ``base_2`` … columns, indexed by key.

    The n-th pair of a key (in the pairs' order) fills column n; pairs past ``limit``
    are ignored (callers count them).
    """
    position = pairs.groupby(key, sort=False).cumcount()
    if len(pairs) and int(position.max()) == 0:  # one value per key: no pivot needed
        keys, values = pairs[key].astype("str"), pairs[value].astype("str")
        if not strictly_increasing(strings(keys)):
            order = pc.sort_indices(strings(keys)).to_numpy()  # stable, like pivot's sorted index
            keys, values = keys.iloc[order], values.iloc[order]
        index = pd.Index(keys.array, name=key)
        return pd.DataFrame({base: pd.Series(values.array, index=index)})
    pairs = pairs.assign(_pos=position)
    pairs = pairs[pairs["_pos"] < limit]
    wide = pairs.pivot(index=key, columns="_pos", values=value)
    wide.columns = [base if int(p) == 0 else f"{base}_{int(p) + 1}" for p in wide.columns]
    return wide.fillna("").astype("str")
