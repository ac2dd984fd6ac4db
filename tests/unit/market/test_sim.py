from __future__ import annotations

import numpy as np
import pytest

from heablcoin_mcp.core.market.sim import DAY_MS, EPOCH_MS, SimMarketData
from tests.fakes.clock import ManualClock

pytestmark = pytest.mark.anyio


def test_the_same_seed_and_time_give_the_same_market() -> None:
    a, b = SimMarketData(ManualClock()), SimMarketData(ManualClock())
    assert a.candles("ETH/USDT", "15m", 200, None) == b.candles("ETH/USDT", "15m", 200, None)
    other = SimMarketData(ManualClock(), seed=8)
    assert other.candles("ETH/USDT", "15m", 200, None) != a.candles("ETH/USDT", "15m", 200, None)


@pytest.mark.parametrize(("small", "big", "ratio"), [("1h", "4h", 4), ("1h", "1d", 24), ("1d", "1w", 7)])
def test_timeframes_agree_with_each_other(small: str, big: str, ratio: int) -> None:
    sim = SimMarketData(ManualClock())
    bigs = sim.candles("BTC/USDT", big, 6, None)[:-1]  # closed candles only
    smalls = sim.candles("BTC/USDT", small, ratio * 40, int(bigs[0][0]))
    for candle in bigs:
        parts = [c for c in smalls if candle[0] <= c[0] < candle[0] + (smalls[1][0] - smalls[0][0]) * ratio]
        assert len(parts) == ratio
        assert candle[1] == parts[0][1] and candle[4] == parts[-1][4]
        assert candle[2] == max(p[2] for p in parts) and candle[3] == min(p[3] for p in parts)
        assert candle[5] == pytest.approx(sum(p[5] for p in parts), rel=1e-6)


def test_the_open_candle_moves_with_the_clock_and_closed_ones_never_change() -> None:
    clock = ManualClock()
    sim = SimMarketData(clock)
    before = sim.candles("SOL/USDT", "1h", 50, None)
    clock.advance(37)
    after = sim.candles("SOL/USDT", "1h", 50, None)
    assert after[:-1] == before[:-1]
    assert after[-1][0] == before[-1][0] and after[-1][4] != before[-1][4]
    clock.advance(3600)
    later = sim.candles("SOL/USDT", "1h", 50, None)
    assert later[-3] == after[-2]  # what closed stays as it was


def test_history_has_clustered_volatility_crashes_and_rallies() -> None:
    sim = SimMarketData(ManualClock())
    days = np.array(sim.candles("BTC/USDT", "1d", 2000, None))
    returns = np.diff(np.log(days[:, 4]))
    magnitude = np.abs(returns) - np.abs(returns).mean()
    autocorrelation = float(np.dot(magnitude[1:], magnitude[:-1]) / np.dot(magnitude, magnitude))
    assert autocorrelation > 0.1
    weekly = days[7:, 4] / days[:-7, 4] - 1
    assert weekly.min() <= -0.15 and weekly.max() >= 0.10
    regimes = {sim.regime_on("BTC/USDT", EPOCH_MS + d * DAY_MS) for d in range(2000)}
    assert {"crash", "rally", "high_volatility", "low_volatility", "normal"} <= regimes


def test_candles_never_start_before_the_epoch() -> None:
    sim = SimMarketData(ManualClock())
    rows = sim.candles("BTC/USDT", "1d", 10, EPOCH_MS - 30 * DAY_MS)
    assert rows[0][0] == EPOCH_MS


async def test_ticker_book_and_trades_sit_around_the_same_price() -> None:
    sim = SimMarketData(ManualClock())
    ticker = await sim.ticker("BTC/USDT")
    book = await sim.order_book("BTC/USDT", 5)
    trades = await sim.trades("BTC/USDT", 30)
    candle = sim.candles("BTC/USDT", "1m", 1, None)[-1]
    assert ticker.last == candle[4]
    assert book.bids[0][0] == ticker.bid and book.asks[0][0] == ticker.ask
    assert all(abs(t.price / ticker.last - 1) < 0.02 for t in trades)


ASK_IN_ORDER = """
from heablcoin_mcp.core.market.sim import SimMarketData
class Fixed:
    def now(self): return 1_796_000_000.0
    def monotonic(self): return 0.0
JUNE = 1_717_243_200_000  # 2024-06-01T12:00:00Z
sim = SimMarketData(Fixed())
asks = {{"far": lambda: sim.candles("BTC/USDT", "1d", 1000, None),
        "early": lambda: sim.candles("BTC/USDT", "1h", 5, 1_600_000_000_000),
        "sol": lambda: sim.candles("SOL/USDT", "1w", 10, None)}}
for name in {order!r}:
    asks[name]()
print(sim.candles("BTC/USDT", "1h", 1, JUNE)[0][4], sim.price_at("SOL/USDT", JUNE + 123_456))
"""


def test_a_price_is_a_pure_function_of_seed_symbol_and_time_in_any_process() -> None:
    """Two sessions on one database once valued SOL 166.93 and 199.78 seconds apart: the close of a
    past candle depended on what the process was asked first."""
    import subprocess
    import sys

    answers = set()
    for order in ([], ["far"], ["early", "sol"], ["sol", "far", "early"]):
        done = subprocess.run([sys.executable, "-c", ASK_IN_ORDER.format(order=order)], capture_output=True,
                              text=True, timeout=120, check=True)
        answers.add(done.stdout.strip())
    assert len(answers) == 1, answers


def test_daily_history_makes_no_minutes_and_each_day_is_exactly_its_minutes() -> None:
    """A day candle comes from the daily layer; the minutes made when someone looks inside the day
    reach exactly its open, high, low and close, and add up to its volume."""
    sim = SimMarketData(ManualClock())
    days = sim.candles("ETH/USDT", "1d", 2000, None)[:-1]
    today = (sim._now_ms() - EPOCH_MS) // DAY_MS
    assert list(sim._minutes) == [("ETH/USDT", today)]  # the open day's minutes only, not 2,000 days
    rng = np.random.default_rng(3)
    for index in rng.choice(len(days), 12, replace=False):
        day = days[int(index)]
        minutes = sim.candles("ETH/USDT", "1m", 1440, int(day[0]))
        assert len(minutes) == 1440 and minutes[0][0] == day[0]
        assert day[1] == minutes[0][1] and day[4] == minutes[-1][4]
        assert day[2] == max(m[2] for m in minutes) and day[3] == min(m[3] for m in minutes)
        assert day[5] == pytest.approx(sum(m[5] for m in minutes), rel=1e-6)
        assert all(m[3] <= min(m[1], m[4]) <= max(m[1], m[4]) <= m[2] for m in minutes)
