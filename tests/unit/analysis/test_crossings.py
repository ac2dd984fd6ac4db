"""Batched first crossings against a plain scan, on random series, levels and windows."""

from __future__ import annotations

import numpy as np
import pytest

from heablcoin_mcp.core.analysis.crossings import NONE, Crossings

OPS = {">": np.greater, ">=": np.greater_equal, "<": np.less, "<=": np.less_equal}


def scan(values: np.ndarray, op: str, level: float, start: int, stop: int) -> int:
    for i in range(max(start, 0), min(stop, values.size)):
        if OPS[op](values[i], level):
            return i
    return NONE


@pytest.mark.parametrize("n", [1, 2, 3, 7, 64, 65, 1000])
@pytest.mark.parametrize("op", list(OPS))
def test_every_query_finds_the_bar_a_scan_finds(n: int, op: str) -> None:
    rng = np.random.default_rng(n)
    values = np.round(rng.standard_normal(n).cumsum(), 1)  # rounded: ties with the level happen
    crossings = Crossings(values)
    starts = rng.integers(0, n + 2, 300)
    stops = starts + rng.integers(0, n + 2, 300)
    levels = rng.choice(np.concatenate([values, values + 0.5, values - 0.5]), 300)
    found = crossings.first(op, levels, starts, stops)
    expected = [scan(values, op, lv, s, e) for lv, s, e in zip(levels, starts, stops, strict=True)]
    assert found.tolist() == expected
    assert crossings.first(op, levels, starts).tolist() == [scan(values, op, lv, s, n) for lv, s in
                                                            zip(levels, starts, strict=True)]


@pytest.mark.parametrize("op", list(OPS))
def test_a_crossing_anywhere_in_a_range_is_what_a_scan_says(op: str) -> None:
    rng = np.random.default_rng(5)
    values = np.round(rng.standard_normal(500).cumsum(), 1)
    crossings = Crossings(values)
    starts = rng.integers(0, 520, 400)
    stops = starts + rng.integers(0, 80, 400)
    levels = rng.choice(values, 400) + rng.choice([-0.5, 0, 0.5], 400)
    got = crossings.crosses_between(op, levels, starts, stops)
    assert got.tolist() == [scan(values, op, lv, s, e) != NONE for lv, s, e in zip(levels, starts, stops, strict=True)]
