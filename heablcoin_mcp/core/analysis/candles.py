"""Candles as a validated pandas DataFrame: nothing downstream has to distrust its input."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from heablcoin_mcp.errors import InvalidInput

COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")


def to_frame(rows: Sequence[Sequence[float]]) -> pd.DataFrame:
    """Rows of [timestamp_ms, open, high, low, close, volume] as a validated DataFrame."""
    array = np.asarray(rows, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] < 6:
        raise InvalidInput("candles must be rows of [timestamp, open, high, low, close, volume]")
    return validate(pd.DataFrame(array[:, :6], columns=list(COLUMNS)))


def validate(frame: pd.DataFrame) -> pd.DataFrame:
    """Check candles before any indicator sees them.

    Raises:
        InvalidInput: naming the first problem and the first bar where it occurs.
    """
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise InvalidInput(f"candles lack column(s): {', '.join(missing)}")
    if len(frame) == 0:
        raise InvalidInput("no candles")
    values = frame.loc[:, list(COLUMNS)].to_numpy(dtype=np.float64)
    ts, o, h, low, c, v = values.T
    checks = (
        (~np.isfinite(values).all(axis=1), "NaN or infinite values"),
        (np.concatenate(([False], np.diff(ts) <= 0)), "timestamps not strictly increasing"),
        ((values[:, 1:5] <= 0).any(axis=1), "non-positive prices"),
        (h < low, "high below low"),
        (h < np.maximum(o, c), "high below open or close"),
        (low > np.minimum(o, c), "low above open or close"),
        (v < 0, "negative volume"),
    )
    for bad, problem in checks:
        if bad.any():
            bar = int(np.argmax(bad))
            raise InvalidInput(f"invalid candles: {problem} at bar {bar} of {len(frame)}",
                               hint="The data source returned inconsistent candles; try another timeframe or retry.")
    return frame.loc[:, list(COLUMNS)].reset_index(drop=True).astype(np.float64)


def gap_count(frame: pd.DataFrame, timeframe_ms: int) -> int:
    """Missing candles between the first and last (exchanges skip bars during outages)."""
    steps = np.diff(frame["timestamp"].to_numpy()) / timeframe_ms
    return int(np.clip(np.round(steps) - 1, 0, None).sum())
