"""First crossings: for many (level, start) queries at once, the first bar at or after ``start``
where a series crosses ``level`` — in O(log n) numpy steps per batch, not a scan per query.

A sparse table holds the maximum (or minimum) of every block of 2^k bars. Each query jumps from its
start over whole blocks that cannot contain a crossing, largest blocks first; where it stops is the
first crossing (or the end). Every query of a batch moves in the same numpy step.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property

import numpy as np

NONE = -1


class Crossings:
    """First bars where ``values`` is above / at-or-above / below / at-or-below a level."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = np.asarray(values, dtype=np.float64)
        self.n = self.values.size

    @cached_property  # built on first use: highs are only searched upwards, lows only downwards
    def _max(self) -> list[np.ndarray]:
        return self._table(np.maximum)

    @cached_property
    def _min(self) -> list[np.ndarray]:
        return self._table(np.minimum)

    def _table(self, combine: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> list[np.ndarray]:
        levels = [self.values]
        width = 1
        while 2 * width <= self.n:
            previous = levels[-1]
            levels.append(combine(previous[:-width], previous[width:]))
            width *= 2
        return levels

    def first(self, op: str, levels: np.ndarray | float, starts: np.ndarray | int,
              stops: np.ndarray | int | None = None) -> np.ndarray:
        """For each query, the first bar in [start, stop) where ``values op level`` holds (op one of
        ">", ">=", "<", "<="), or NONE."""
        level = np.asarray(levels, dtype=np.float64)
        start = np.asarray(starts, dtype=np.int64)
        level, start = np.broadcast_arrays(level, start)
        stop = np.full(start.shape, self.n, dtype=np.int64) if stops is None else np.minimum(
            np.broadcast_to(np.asarray(stops, dtype=np.int64), start.shape), self.n)
        table, blocked = (self._max, _BLOCKED_ABOVE[op]) if op in (">", ">=") else (self._min, _BLOCKED_BELOW[op])
        at = np.clip(start, 0, self.n).copy()
        for k in range(len(table) - 1, -1, -1):
            width = 1 << k
            can = at + width <= self.n
            if not can.any():
                continue
            idx = np.flatnonzero(can)
            skip = blocked(table[k][at[idx]], level[idx])
            at[idx[skip]] += width
        found = (at < stop) & (at < self.n)
        result = np.full(start.shape, NONE, dtype=np.int64)
        if found.any():
            hit = _HOLDS[op](self.values[at[found]], level[found])
            result[np.flatnonzero(found)[hit]] = at[found][hit]
        return result


    def crosses_between(self, op: str, levels: np.ndarray, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
        """Whether ``values op level`` holds anywhere in [start, stop), for each query: two
        overlapping blocks of the sparse table cover any range, so this is O(1) per query."""
        level = np.asarray(levels, dtype=np.float64)
        start = np.asarray(starts, dtype=np.int64)
        stop = np.minimum(np.asarray(stops, dtype=np.int64), self.n)
        out = np.zeros(start.shape, dtype=bool)
        live = np.flatnonzero(stop > start)
        if live.size == 0:
            return out
        a, b = start[live], stop[live]
        k = np.floor(np.log2(b - a)).astype(np.int64)
        table = self._max if op in (">", ">=") else self._min
        combine = np.maximum if op in (">", ">=") else np.minimum
        extreme = np.empty(live.size)
        for level_k in np.unique(k):
            sel = np.flatnonzero(k == level_k)
            width = 1 << int(level_k)
            extreme[sel] = combine(table[level_k][a[sel]], table[level_k][b[sel] - width])
        out[live] = _HOLDS[op](extreme, level[live])
        return out


# A block can be skipped when nothing in it crosses: its max (for > / >=) or min (for < / <=) says so.
_BLOCKED_ABOVE = {">": np.less_equal, ">=": np.less}
_BLOCKED_BELOW = {"<": np.greater_equal, "<=": np.greater}
_HOLDS = {">": np.greater, ">=": np.greater_equal, "<": np.less, "<=": np.less_equal}

