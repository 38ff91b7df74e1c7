"""The column helpers return exactly what the pandas idioms they replace return.

``select(frame, mask)`` is ``frame[mask]``; ``repeated_pairs(alive, first, second)``
is ``duplicated(keep="first")`` over the alive rows' (first, second) pairs. Each
path of the helpers (a contiguous block, Arrow's filter, a strictly increasing key,
rows grouped by one side, the argsort of a few sorted runs, hashing) has its own test.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rostergate.formats.arrowops import code_pair_duplicate_mask, int_duplicate_mask
from rostergate.formats.convert.frames import repeated_pairs, select

ARROW_STR = pd.StringDtype("pyarrow", na_value=np.nan)  # what the CSV loader gives ("str")

# -- select -----------------------------------------------------------------------------------------

texts = st.one_of(st.text(max_size=6), st.sampled_from(["", "é", "a,b", " x "]))


@st.composite
def frames(draw, min_rows: int = 0) -> pd.DataFrame:
    n = draw(st.integers(min_rows, 40))
    index_kind = draw(st.sampled_from(["range", "offset", "labels", "shuffled"]))
    index = {
        "range": pd.RangeIndex(n),
        "offset": pd.RangeIndex(5, 5 + 3 * n, 3),
        "labels": pd.Index([f"r{i}" for i in range(n)]),
        "shuffled": pd.Index(draw(st.permutations(list(range(n))))),
    }[index_kind]
    return pd.DataFrame({
        "id": pd.Series(draw(st.lists(texts, min_size=n, max_size=n)), dtype=ARROW_STR, index=index),
        "name": pd.Series(draw(st.lists(st.one_of(texts, st.none()), min_size=n, max_size=n)), dtype=ARROW_STR,
                          index=index),
        "_line": pd.Series(draw(st.lists(st.integers(2, 10**9), min_size=n, max_size=n)), dtype="int64",
                           index=index),
        "pos": pd.Series(np.arange(n, dtype=np.int32), index=index),
    })


def _check_select(frame: pd.DataFrame, mask: np.ndarray) -> None:
    got = select(frame, mask)
    pd.testing.assert_frame_equal(got, frame[mask])
    assert list(got.dtypes) == list(frame.dtypes)


@settings(deadline=None)
@given(frames(), st.data())
def test_select_equals_boolean_indexing(frame: pd.DataFrame, data) -> None:
    mask = np.array(data.draw(st.lists(st.booleans(), min_size=len(frame), max_size=len(frame))), dtype=bool)
    _check_select(frame, mask)


@settings(deadline=None)
@given(frames())
def test_select_all_false(frame: pd.DataFrame) -> None:
    got = select(frame, np.zeros(len(frame), dtype=bool))
    assert got.empty and list(got.columns) == list(frame.columns)
    _check_select(frame, np.zeros(len(frame), dtype=bool))


@settings(deadline=None)
@given(frames(min_rows=1), st.data())
def test_select_contiguous_block(frame: pd.DataFrame, data) -> None:
    """One run of true values (the zero-copy slice path), including the whole frame."""
    start = data.draw(st.integers(0, len(frame) - 1))
    stop = data.draw(st.integers(start + 1, len(frame)))
    mask = np.zeros(len(frame), dtype=bool)
    mask[start:stop] = True
    _check_select(frame, mask)


@settings(deadline=None)
@given(frames(min_rows=3), st.data())
def test_select_scattered(frame: pd.DataFrame, data) -> None:
    """At least two runs of true values (Arrow's filter kernel)."""
    mask = np.array(data.draw(st.lists(st.booleans(), min_size=len(frame), max_size=len(frame))), dtype=bool)
    mask[0], mask[1], mask[-1] = True, False, True
    _check_select(frame, mask)


def test_select_examples() -> None:
    def make(ids: list[str], ns: list[int], index: list[int]) -> pd.DataFrame:
        return pd.DataFrame({"id": pd.array(ids, dtype=ARROW_STR), "n": np.array(ns, dtype=np.int64)}, index=index)

    frame = make(["a", "b", "c", "d"], [10, 20, 30, 40], [7, 3, 9, 1])
    block, scattered = np.array([False, True, True, False]), np.array([True, False, False, True])
    pd.testing.assert_frame_equal(select(frame, block), make(["b", "c"], [20, 30], [3, 9]))
    pd.testing.assert_frame_equal(select(frame, scattered), make(["a", "d"], [10, 40], [7, 1]))


# -- repeated_pairs ---------------------------------------------------------------------------------

def _expected(alive: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """pandas ``duplicated(keep="first")`` over the alive rows' (first, second) pairs."""
    rows = np.flatnonzero(alive)
    out = np.zeros(len(alive), dtype=bool)
    pairs = pd.DataFrame({"first": first[rows], "second": second[rows]})
    out[rows[pairs.duplicated(keep="first").to_numpy()]] = True
    return out


def _descents(alive: np.ndarray, first: np.ndarray, second: np.ndarray, width: int) -> int:
    rows = np.flatnonzero(alive)
    return int(np.count_nonzero(np.diff(first[rows] * width + second[rows]) < 0))


def _check_pairs(alive: np.ndarray, first: np.ndarray, second: np.ndarray, width: int) -> np.ndarray:
    got = repeated_pairs(alive, first, second)
    assert got.dtype == bool and got.shape == alive.shape
    np.testing.assert_array_equal(got, _expected(alive, first, second))
    assert not (got & ~alive).any()
    return got


def _split(keys: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    first, second = np.divmod(keys.astype(np.int64), width)
    return first, second


@settings(deadline=None)
@given(st.data())
def test_repeated_pairs_equals_duplicated(data) -> None:
    n = data.draw(st.integers(0, 150))
    width = data.draw(st.integers(1, 6))
    first = np.array(data.draw(st.lists(st.integers(0, 5), min_size=n, max_size=n)), dtype=np.int64)
    second = np.array(data.draw(st.lists(st.integers(0, width - 1), min_size=n, max_size=n)), dtype=np.int64)
    alive = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    _check_pairs(alive, first, second, width)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(0.0, 0.5))
def test_repeated_pairs_strictly_increasing_keys(seed: int, dead: float) -> None:
    rng = np.random.default_rng(seed)
    width = 1000
    keys = np.sort(rng.choice(5_000 * width, size=5_000, replace=False))
    first, second = _split(keys, width)
    alive = rng.random(len(keys)) >= dead
    assert not _check_pairs(alive, first, second, width).any()


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 4), st.floats(0.0, 0.3))
def test_repeated_pairs_few_sorted_runs(seed: int, runs: int, dead: float) -> None:
    """A few long sorted runs with repeats inside and across runs: the argsort path."""
    rng = np.random.default_rng(seed)
    width, n = 40, 5_000
    bounds = np.linspace(0, n, runs + 1).astype(int)
    keys = np.concatenate([np.sort(rng.integers(0, 3_000, size=hi - lo)) for lo, hi in zip(bounds, bounds[1:])])
    first, second = _split(keys, width)
    alive = rng.random(n) >= dead
    # the path this test is about: fewer descents than one per 64 alive rows
    assert _descents(alive, first, second, width) < alive.sum() // 64
    got = _check_pairs(alive, first, second, width)
    assert got.any()


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(0.0, 0.5))
def test_repeated_pairs_shuffled_keys(seed: int, dead: float) -> None:
    """Shuffled keys with repeats: the hashing path."""
    rng = np.random.default_rng(seed)
    width, n = 50, 5_000
    first, second = rng.integers(0, 60, size=n), rng.integers(0, width, size=n)
    alive = rng.random(n) >= dead
    assert _descents(alive, first, second, width) >= alive.sum() // 64
    assert _check_pairs(alive, first, second, width).any()


@pytest.mark.parametrize("n", [6, 4_998])
def test_repeated_pairs_dead_rows_neither_flagged_nor_first(n: int) -> None:
    """A dead row with a pair is not flagged, and the next alive row with that pair is its first."""
    width = 10
    keys = np.repeat(np.arange(n // 3), 3)  # every key three times, sorted: a single run
    first, second = _split(keys, width)
    alive = np.ones(n, dtype=bool)
    alive[0::3] = False  # each key's first row is dead
    got = _check_pairs(alive, first, second, width)
    np.testing.assert_array_equal(np.flatnonzero(got), np.arange(2, n, 3))  # only the third of each three
    shuffled = np.random.default_rng(7).permutation(n)
    _check_pairs(alive[shuffled], first[shuffled], second[shuffled], width)


def test_repeated_pairs_small_inputs() -> None:
    empty = np.array([], dtype=np.int64)
    assert repeated_pairs(np.array([], dtype=bool), empty, empty).shape == (0,)
    one = np.array([3], dtype=np.int64)
    assert not repeated_pairs(np.array([True]), one, one).any()
    # the same pair twice, but one of the two rows is dead
    two = np.array([1, 1], dtype=np.int64)
    assert not repeated_pairs(np.array([True, False]), two, two).any()
    assert repeated_pairs(np.array([True, True]), two, two).tolist() == [False, True]


@given(st.integers(0, 2**32 - 1), st.integers(1, 6), st.booleans(), st.booleans())
@settings(max_examples=60, deadline=None)
def test_int_duplicate_mask_equals_pandas_on_runs_and_shuffles(seed: int, runs: int, shuffle: bool,
                                                                keep_first: bool) -> None:
    """Both paths (sorted runs: argsort; shuffled: hashing) and both keep modes agree with pandas."""
    rng = np.random.default_rng(seed)
    keys = np.concatenate([np.sort(rng.integers(0, 2_000, 1_000)) for _ in range(runs)]).astype(np.int64)
    if shuffle:
        rng.shuffle(keys)
    expected = pd.Series(keys).duplicated(keep="first" if keep_first else False).to_numpy()
    assert np.array_equal(int_duplicate_mask(keys, keep_first), expected)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.booleans(), st.booleans())
def test_pairs_grouped_by_one_side(seed: int, by_second: bool, keep_first: bool) -> None:
    """Enrolments listed student by student (one side never decreases): the grouped sort path."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(800), rng.integers(1, 9, size=800))  # non-decreasing, like user positions
    other = rng.integers(0, 12, size=len(groups))  # classes in any order, with repeats
    a, b = (other, groups) if by_second else (groups, other)
    expected = pd.DataFrame({"a": a, "b": b}).duplicated(keep="first" if keep_first else False).to_numpy()
    np.testing.assert_array_equal(code_pair_duplicate_mask(a, b, keep_first), expected)
    alive = rng.random(len(a)) >= 0.2
    _check_pairs(alive, a, b, int(b.max()) + 1)
