"""Lookups in arrowops.py (and the missing_in mask built on them) return what the plain kernels return,
on every path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import given, settings
from hypothesis import strategies as st

from rostergate.formats.arrowops import position_in, run_starts, string_hashes
from rostergate.formats.validate.masks import missing_in


def _plain_lookup(values: pa.ChunkedArray, pool: pa.Array) -> np.ndarray:
    return pc.fill_null(pc.index_in(values, value_set=pool), -1).to_numpy(zero_copy_only=False)


def _column(rng: np.random.Generator, n: int, run: int, distinct: int) -> pa.ChunkedArray:
    """``n`` ids in runs of about ``run`` equal values, split into chunks as the CSV reader does."""
    ids = np.repeat(rng.integers(0, distinct, size=n // run + 1), run)[:n]
    values = pa.array([f"id-{i}" for i in ids], type=pa.large_string())
    cuts = sorted(set(rng.integers(1, n, size=3).tolist()))
    return pa.chunked_array([values.slice(a, b - a) for a, b in zip([0, *cuts], [*cuts, n])])


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([1, 2, 7, 40]), st.integers(8_192, 20_000))
def test_position_in_equals_index_in_with_and_without_runs(seed: int, run: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    values = _column(rng, n, run, distinct=3_000)
    pool = pa.array([f"id-{i}" for i in rng.permutation(3_000)[:2_000]], type=pa.large_string())
    got = position_in(values, pool)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, _plain_lookup(values, pool))
    starts = run_starts(values)
    if run == 1:
        assert starts is None  # no runs: one probe per row
    elif run >= 7:
        assert starts is not None and starts[0] == 0 and len(starts) < n // 2


def test_missing_in_uses_the_same_lookup_and_ignores_empty_values() -> None:
    ids = [f"u{i // 7}" for i in range(70_000)]  # runs of seven, as in an export ordered by user
    ids[7 * 100 + 3] = "ghost"
    ids[7 * 200] = ""
    s = pd.Series(ids, dtype="str")
    targets = pd.Series([f"u{i}" for i in range(10_000)], dtype="str")
    assert np.flatnonzero(missing_in(s, targets).to_numpy()).tolist() == [703]


def test_a_null_breaks_no_run_and_is_never_missing() -> None:
    values = pa.chunked_array([pa.array(["a"] * 5_000 + [None] + ["zz"] * 5_000, type=pa.large_string())])
    pool = pa.array(["a"], type=pa.large_string())
    assert run_starts(values) is None
    np.testing.assert_array_equal(position_in(values, pool), _plain_lookup(values, pool))
    s = pd.Series(["a", None, "b"], dtype="str")
    assert missing_in(s, pd.Series(["a"], dtype="str")).tolist() == [False, False, True]


# -- string_hashes: kept in row snapshots from one release to the next ---------------------
def test_string_hashes_do_not_change_between_releases():
    """Row snapshots of past deliveries hold these: a change here must come with a new SNAPSHOT_VERSION."""
    values = pa.array(["", "a", "abcdefgh", "abcdefghi", "Zoë Ünal", None])
    assert string_hashes(values).tolist() == [0, 3440239663889050063, 597276255384736118, 579633979330180169,
                                              6457471406098010494, 7640891576956012808]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=40), min_size=1, max_size=60), st.integers(0, 5))
def test_string_hashes_follow_the_values_not_their_layout(texts, cut):
    """Equal values hash alike whatever the chunks, offsets or string type; different values differ."""
    whole = string_hashes(pa.array(texts))
    cut = min(cut, len(texts))
    chunked = pa.chunked_array([pa.array(texts[:cut], type=pa.string()), pa.array(texts[cut:], type=pa.string())])
    assert (string_hashes(chunked) == whole).all()
    assert (string_hashes(pa.array(texts, type=pa.large_string())) == whole).all()
    assert (string_hashes(pa.array(["pad", *texts]).slice(1)) == whole).all()
    by_value = dict(zip(texts, whole.tolist()))
    assert len(set(by_value.values())) == len(by_value)  # 2**-64 a pair: a collision here is a bug
