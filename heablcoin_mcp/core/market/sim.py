"""An offline, seeded, deterministic market: the same seed and time always give the same candles.

How the prices are made:
- Daily layer: a mean-reverting log price (so levels stay plausible for years) driven by a regime
  chain — normal, high and low volatility, crash and rally episodes — with volatility clustering.
- Day candles come from the daily layer alone (high and low excursions and the volume drawn per
  day, for the whole horizon at once), so daily history costs no minutes.
- Minute layer, made only for a day someone looks inside: 1,440 one-minute prices, a Brownian
  bridge from the day's open to its close with an intraday volatility envelope, its excursions
  rescaled so its highest high and lowest low are the day's, and its volumes scaled to the day's.
  Every intraday timeframe is aggregated from these minutes, so 1h, 4h and 1d always agree.
- Now: the candle containing the clock's time is partial; its close moves with wall-clock time.
"""

from __future__ import annotations

import math
import random
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from heablcoin_mcp.core.clock import Clock
from heablcoin_mcp.core.market.models import (
    TIMEFRAME_SECONDS,
    Candle,
    Derivatives,
    MarketInfo,
    OrderBook,
    Ticker,
    Trade,
)
from heablcoin_mcp.errors import InvalidInput

if TYPE_CHECKING:  # numpy loads on the first price, not at start-up
    import numpy as np

EPOCH_MS = 1_577_836_800_000  # 2020-01-01T00:00:00Z: the first simulated candle
MINUTE_MS = 60_000
DAY_MS = 86_400_000
MINUTES_PER_DAY = 1440
HORIZON_DAYS = 366 * 30  # 2020 to 2050, generated whole so nothing depends on what was asked first
MEAN_REVERSION_PER_DAY = 1 / 40  # half-life of about four weeks: levels stay plausible for years
TAKER_FEE = 0.001
MAKER_FEE = 0.001
TRADE_CHANCE = 0.7  # of a trade printing in any one second


@dataclass(frozen=True)
class SimSymbol:
    base: str
    anchor_price: float
    daily_vol: float
    price_tick: float
    amount_step: float
    volume_per_minute: float  # base units

    @property
    def symbol(self) -> str:
        return f"{self.base}/USDT"


SYMBOLS: tuple[SimSymbol, ...] = (
    SimSymbol("BTC", 65_000.0, 0.030, 0.01, 0.00001, 12.0),
    SimSymbol("ETH", 3_200.0, 0.040, 0.01, 0.0001, 150.0),
    SimSymbol("SOL", 150.0, 0.055, 0.01, 0.001, 2_500.0),
    SimSymbol("BNB", 600.0, 0.035, 0.1, 0.001, 300.0),
    SimSymbol("XRP", 0.6, 0.045, 0.0001, 0.1, 400_000.0),
    SimSymbol("DOGE", 0.15, 0.060, 0.00001, 1.0, 2_000_000.0),
)

# regime: (volatility multiplier, drift in daily sigmas, mean duration in days, weight when drawn)
REGIMES: dict[str, tuple[float, float, float, float]] = {
    "normal": (1.0, 0.0, 20.0, 0.45),
    "high_volatility": (1.7, 0.0, 8.0, 0.15),
    "low_volatility": (0.45, 0.0, 15.0, 0.2),
    "crash": (1.8, -1.5, 4.0, 0.08),
    "rally": (1.4, 0.8, 7.0, 0.12),
}


def _seed(*parts: object) -> int:
    return zlib.crc32(":".join(str(p) for p in parts).encode())


@dataclass
class _Days:
    """Per-day closes (log), volatility and regime, from the epoch up to some day."""

    log_close: np.ndarray
    vol: np.ndarray
    regime: list[str]
    up: np.ndarray  # log of high / max(open, close)
    down: np.ndarray  # log of min(open, close) / low
    volume: np.ndarray


class SimMarketData:
    name = "sim"
    simulated = True

    def __init__(self, clock: Clock, *, seed: int = 7, minute_cache_days: int = 64) -> None:
        self.clock = clock
        self.seed = seed
        self._specs = {s.symbol: s for s in SYMBOLS}
        self._days: dict[str, _Days] = {}
        self._minutes: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._day_summary: dict[tuple[str, int], tuple[float, float, float, float, float]] = {}
        self._minute_cache_days = minute_cache_days

    # --- the MarketData protocol -------------------------------------------------------------

    async def markets(self) -> dict[str, MarketInfo]:
        return {
            s.symbol: MarketInfo(
                symbol=s.symbol, base=s.base, quote="USDT", type="spot", active=True,
                price_tick=s.price_tick, amount_step=s.amount_step, min_amount=s.amount_step,
                min_notional=5.0, maker_fee=MAKER_FEE, taker_fee=TAKER_FEE,
            )
            for s in SYMBOLS
        }

    async def timeframes(self) -> list[str]:
        return list(TIMEFRAME_SECONDS)

    async def ohlcv(self, symbol: str, timeframe: str, limit: int, since: int | None = None) -> list[Candle]:
        return self.candles(symbol, timeframe, limit, since)

    async def ticker(self, symbol: str) -> Ticker:
        now = self._now_ms()
        last = self.price_at(symbol, now)
        day = self.candles(symbol, "1m", MINUTES_PER_DAY, now - DAY_MS)
        spec = self._specs[symbol]
        half_spread = max(spec.price_tick, last * 0.00005)
        open_24h = day[0][1]
        base_volume = sum(c[5] for c in day)
        return Ticker(
            symbol=symbol, timestamp=now, last=last,
            bid=_round_to(last - half_spread, spec.price_tick), ask=_round_to(last + half_spread, spec.price_tick),
            high_24h=max(c[2] for c in day), low_24h=min(c[3] for c in day), open_24h=open_24h,
            change_24h_pct=(last / open_24h - 1) * 100, base_volume_24h=base_volume,
            quote_volume_24h=sum(c[4] * c[5] for c in day),
        )

    async def order_book(self, symbol: str, depth: int) -> OrderBook:
        import numpy as np

        now = self._now_ms()
        ticker = await self.ticker(symbol)
        spec = self._specs[symbol]
        step = max(spec.price_tick, ticker.last * 0.0001)
        # one generator per side: a level's size is the same however deep the book is read
        draws = [np.random.default_rng(_seed(self.seed, symbol, side, now // 1000)).lognormal(0, 0.5, depth)
                 for side in ("book-bids", "book-asks")]
        sizes = spec.volume_per_minute * 0.05 * (1 + np.arange(depth) * 0.15) * np.array(draws)
        assert ticker.bid is not None and ticker.ask is not None
        bids = [(_round_to(ticker.bid - i * step, spec.price_tick), _round_to(float(sizes[0, i]), spec.amount_step))
                for i in range(depth)]
        asks = [(_round_to(ticker.ask + i * step, spec.price_tick), _round_to(float(sizes[1, i]), spec.amount_step))
                for i in range(depth)]
        return OrderBook(symbol=symbol, timestamp=now, bids=bids, asks=asks)

    async def trades(self, symbol: str, limit: int) -> list[Trade]:
        now = self._now_ms()
        span = math.ceil(limit / TRADE_CHANCE) + 10
        trades = self.tape(symbol, now - span * 1000, now)
        while len(trades) < limit and now - span * 1000 > EPOCH_MS + DAY_MS:
            span *= 2
            trades = self.tape(symbol, now - span * 1000, now)
        return trades[-limit:]

    def tape(self, symbol: str, after_ms: int, until_ms: int) -> list[Trade]:
        """The trades printed after ``after_ms`` up to ``until_ms``: at most one per second, each at
        the price path's price at its instant, so the tape, the ticker and the candles agree. A pure
        function of (seed, symbol, second), whoever asks and in whatever pieces."""
        spec = self._specs[symbol]
        trades: list[Trade] = []
        for second in range(after_ms // 1000, until_ms // 1000 + 1):
            draw = random.Random(_seed(self.seed, symbol, "tape", second))
            if draw.random() >= TRADE_CHANCE:
                continue
            ts = second * 1000 + draw.randrange(1000)
            if not after_ms < ts <= until_ms:
                continue
            amount = draw.lognormvariate(0, 1) * spec.volume_per_minute / 60 / TRADE_CHANCE
            trades.append(Trade(timestamp=ts, side="buy" if draw.random() < 0.5 else "sell",
                                price=self.price_at(symbol, ts),
                                amount=max(spec.amount_step, _round_to(amount, spec.amount_step))))
        return trades

    async def derivatives(self, symbol: str) -> Derivatives:
        import numpy as np

        now = self._now_ms()
        last = self.price_at(symbol, now)
        ago_8h = self.price_at(symbol, now - 8 * 3_600_000)
        ago_24h = self.price_at(symbol, now - DAY_MS)
        spec = self._specs[symbol]
        funding = float(np.clip(0.0001 + (last / ago_8h - 1) * 0.05, -0.0075, 0.0075))
        phase = (now - EPOCH_MS) / DAY_MS / 30 * 2 * math.pi
        open_interest = spec.volume_per_minute * 4_000 * (1 + 0.25 * math.sin(phase))
        next_funding = (now // (8 * 3_600_000) + 1) * 8 * 3_600_000
        return Derivatives(
            symbol=f"{symbol}:USDT", funding_rate=round(funding, 8), next_funding_time=next_funding,
            mark_price=last, open_interest=round(open_interest, 3), open_interest_value=round(open_interest * last, 2),
            long_short_ratio=round(1 + math.tanh((last / ago_24h - 1) * 8), 4),
        )

    async def close(self) -> None:
        self._minutes.clear()

    # --- the generator ---------------------------------------------------------------------------

    def _now_ms(self) -> int:
        return int(self.clock.now() * 1000)

    def price_at(self, symbol: str, ts: int) -> float:
        """The price at an instant: interpolated within its minute, so it moves every second."""
        minute = (ts - EPOCH_MS) // MINUTE_MS
        day, index = divmod(minute, MINUTES_PER_DAY)
        path = self._minute_closes(symbol, int(day))
        close = path[index]
        open_ = path[index - 1] if index else self._day_open(symbol, int(day))
        fraction = ((ts - EPOCH_MS) % MINUTE_MS) / MINUTE_MS
        return _round_to(float(open_ + (close - open_) * fraction), self._specs[symbol].price_tick)

    def candles(self, symbol: str, timeframe: str, limit: int, since: int | None) -> list[Candle]:
        now = self._now_ms()
        tf_ms = TIMEFRAME_SECONDS[timeframe] * 1000
        newest_start = (now // tf_ms) * tf_ms
        first = max(EPOCH_MS, (since + tf_ms - 1) // tf_ms * tf_ms if since is not None
                    else newest_start - (limit - 1) * tf_ms)
        first = max(first, -(-EPOCH_MS // tf_ms) * tf_ms)
        starts = range(first, min(newest_start, first + (limit - 1) * tf_ms) + 1, tf_ms)
        if tf_ms >= DAY_MS:
            return [self._aggregate_days(symbol, start, tf_ms, now) for start in starts]
        return [self._aggregate_minutes(symbol, start, tf_ms, now) for start in starts]

    def _aggregate_minutes(self, symbol: str, start: int, tf_ms: int, now: int) -> Candle:
        day, first = divmod((start - EPOCH_MS) // MINUTE_MS, MINUTES_PER_DAY)
        day, first = int(day), int(first)
        count = tf_ms // MINUTE_MS
        closes = self._minute_closes(symbol, day)
        lows, highs, volumes = self._minute_extras(symbol, day)
        done = min(count, max(0, (now - start) // MINUTE_MS))  # completed minutes in this candle
        open_ = closes[first - 1] if first else self._day_open(symbol, day)
        sl = slice(first, first + done)
        high = float(highs[sl].max()) if done else open_
        low = float(lows[sl].min()) if done else open_
        close = float(closes[first + done - 1]) if done else open_
        volume = float(volumes[sl].sum())
        if done < count:  # the open candle: add the running minute up to now
            price = self.price_at(symbol, now)
            high, low, close = max(high, price), min(low, price), price
            volume += float(volumes[first + done]) * ((now - EPOCH_MS) % MINUTE_MS) / MINUTE_MS
        tick = self._specs[symbol].price_tick
        return [float(start), _round_to(float(open_), tick), _round_to(high, tick), _round_to(low, tick),
                _round_to(close, tick), round(volume, 6)]

    def _aggregate_days(self, symbol: str, start: int, tf_ms: int, now: int) -> Candle:
        first_day = (start - EPOCH_MS) // DAY_MS
        last_day = min((start + tf_ms - EPOCH_MS) // DAY_MS, (now - EPOCH_MS) // DAY_MS + 1)
        rows = []
        for day in range(max(0, first_day), last_day):
            day_start = EPOCH_MS + day * DAY_MS
            if day_start + DAY_MS <= now:
                rows.append(self._day_candle(symbol, day))
            else:
                rows.append(self._aggregate_minutes(symbol, day_start, DAY_MS, now)[1:])
        open_, close = rows[0][0], rows[-1][3]
        return [float(start), open_, max(r[1] for r in rows), min(r[2] for r in rows), close,
                round(sum(r[4] for r in rows), 6)]

    def _day_candle(self, symbol: str, day: int) -> list[float]:
        """A closed day from the daily layer: no minutes made (they are fitted to it when asked)."""
        key = (symbol, day)
        if key not in self._day_summary:
            start, end, high, low, volume = self._day_shape(symbol, day)
            tick = self._specs[symbol].price_tick
            self._day_summary[key] = (
                _round_to(math.exp(start), tick), _round_to(math.exp(high), tick), _round_to(math.exp(low), tick),
                _round_to(math.exp(start + (end - start)), tick), round(volume, 6),  # the minute path's own close
            )
        return list(self._day_summary[key])

    def _day_shape(self, symbol: str, day: int) -> tuple[float, float, float, float, float]:
        """log open, log close, log high, log low and the volume of a day."""
        days = self._daily(symbol, day)
        start, end = math.log(self._day_open(symbol, day)), float(days.log_close[day])
        return (start, end, max(start, end) + float(days.up[day]), min(start, end) - float(days.down[day]),
                float(days.volume[day]))

    def _daily(self, symbol: str, day: int) -> _Days:
        if not 0 <= day < HORIZON_DAYS:
            raise InvalidInput(f"the simulated market runs from 2020-01-01 for {HORIZON_DAYS} days",
                               hint="Ask for a time within that range.")
        days = self._days.get(symbol)
        if days is None:
            days = self._days[symbol] = self._make_days(symbol)
        return days

    def _make_days(self, symbol: str) -> _Days:
        """Every day of the horizon at once, each ingredient from its own seeded stream: a price is a
        pure function of (seed, symbol, time), whatever was asked first, in any process."""
        import numpy as np

        spec, count = self._specs[symbol], HORIZON_DAYS
        names = list(REGIMES)
        weights = np.array([REGIMES[n][3] for n in names])
        pick = np.random.default_rng(_seed(self.seed, symbol, "regimes"))
        regimes: list[str] = []
        while len(regimes) < count:
            name = names[int(pick.choice(len(names), p=weights / weights.sum()))]
            regimes.extend([name] * max(1, int(pick.exponential(REGIMES[name][2]))))
        regimes = regimes[:count]
        shocks = np.random.default_rng(_seed(self.seed, symbol, "shocks")).standard_normal(count)
        noise = np.random.default_rng(_seed(self.seed, symbol, "cluster")).standard_normal(count)
        cluster = np.exp(np.convolve(noise * 0.15, np.ones(5) / np.sqrt(5), mode="same"))
        anchor = math.log(spec.anchor_price)
        vol = spec.daily_vol * np.array([REGIMES[n][0] for n in regimes]) * cluster
        moves = (np.array([REGIMES[n][1] for n in regimes]) * spec.daily_vol + vol * shocks).tolist()
        log_close = []
        x = anchor
        for move in moves:  # mean-reverting walk: each day depends on the last
            x += MEAN_REVERSION_PER_DAY * (anchor - x) + move
            log_close.append(x)
        ranges = np.random.default_rng(_seed(self.seed, symbol, "ranges"))
        up, down = (np.abs(ranges.standard_normal((2, count))) * 0.6 + 0.05) * vol
        activity = np.abs(shocks) * cluster
        volume = spec.volume_per_minute * MINUTES_PER_DAY * (0.5 + 0.6 * activity) * ranges.lognormal(0, 0.25, count)
        return _Days(log_close=np.array(log_close), vol=vol, regime=regimes, up=up, down=down, volume=volume)

    def _day_open(self, symbol: str, day: int) -> float:
        days = self._daily(symbol, day)
        anchor = self._specs[symbol].anchor_price
        return math.exp(days.log_close[day - 1]) if day else anchor

    def _minute_closes(self, symbol: str, day: int) -> np.ndarray:
        import numpy as np

        key = (symbol, day)
        cached = self._minutes.get(key)
        if cached is not None:
            self._minutes.move_to_end(key)
            return cached[0]
        days = self._daily(symbol, day)
        rng = np.random.default_rng(_seed(self.seed, symbol, "minutes", day))
        start, end, day_high, day_low, day_volume = self._day_shape(symbol, day)
        sigma = float(days.vol[day]) / math.sqrt(MINUTES_PER_DAY)
        envelope = np.exp(np.convolve(rng.standard_normal(MINUTES_PER_DAY) * 0.5, np.ones(60) / np.sqrt(60), "same"))
        envelope /= np.sqrt(np.mean(envelope**2))
        steps = rng.standard_normal(MINUTES_PER_DAY) * sigma * envelope
        walk = np.cumsum(steps)
        t = np.arange(1, MINUTES_PER_DAY + 1) / MINUTES_PER_DAY
        line = start + (end - start) * t
        log_close = line + walk - t * walk[-1]
        log_open = np.concatenate(([start], log_close[:-1]))
        wiggle = np.abs(rng.standard_normal((2, MINUTES_PER_DAY))) * sigma * envelope * 0.6
        log_high = np.maximum(log_open, log_close) + wiggle[0]
        log_low = np.minimum(log_open, log_close) - wiggle[1]
        up = _excursion_scale(line, log_high, day_high)  # the same stretch for every price of a minute
        down = _excursion_scale(-line, -log_low, -day_low)
        closes, lows, highs = (np.exp(_fit(line, y, up, down)) for y in (log_close, log_low, log_high))
        opens = np.concatenate(([math.exp(start)], closes[:-1]))
        highs, lows = np.maximum(highs, np.maximum(opens, closes)), np.minimum(lows, np.minimum(opens, closes))
        spec = self._specs[symbol]
        activity = np.abs(steps) / sigma
        volumes = spec.volume_per_minute * (0.4 + activity) * envelope * rng.lognormal(0, 0.35, MINUTES_PER_DAY)
        volumes *= day_volume / volumes.sum()
        self._minutes[key] = np.stack([closes, lows, highs, volumes])
        while len(self._minutes) > self._minute_cache_days:
            self._minutes.popitem(last=False)
        return closes

    def _minute_extras(self, symbol: str, day: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self._minute_closes(symbol, day)
        stacked = self._minutes[(symbol, day)]
        return stacked[1], stacked[2], stacked[3]

    def regime_on(self, symbol: str, ts: int) -> str:
        """The generator's own regime label for a day (lets tests check the detector)."""
        day = (ts - EPOCH_MS) // DAY_MS
        return self._daily(symbol, int(day)).regime[int(day)]


def _excursion_scale(line: np.ndarray, extreme: np.ndarray, target: float) -> float:
    """The factor s with max(line + s * (extreme - line)) == target, for the points above the line:
    the largest s that keeps every point at or below the target (the bound is tight at one)."""
    import numpy as np

    above = extreme - line
    mask = above > 0
    return float(np.min((target - line[mask]) / above[mask])) if mask.any() else 1.0


def _fit(line: np.ndarray, values: np.ndarray, up: float, down: float) -> np.ndarray:
    """Stretch a path's distance from its open-to-close line by ``up`` above it and ``down`` below,
    so its excursions reach the day's high and low. Monotone in price at each minute, so a minute's
    high stays its highest and its low its lowest; the day's open and close (on the line) stay put."""
    import numpy as np

    return line + np.where(values >= line, up, down) * (values - line)


def _round_to(value: float, step: float) -> float:
    decimals = max(0, -math.floor(math.log10(step))) if step < 1 else 0
    return round(round(value / step) * step, decimals)
