from __future__ import annotations

from collections.abc import Iterator

import pytest

from heablcoin_mcp.core.market.cache import CLOSED_RANGE_TTL, TTLCache, ohlcv_ttl
from heablcoin_mcp.core.market.ccxt_source import CcxtMarketData, RetryPolicy
from heablcoin_mcp.core.market.service import MarketService, parse_since
from heablcoin_mcp.core.market.sim import SimMarketData
from heablcoin_mcp.errors import ExchangeUnavailable, InvalidInput, NotFound
from tests.fakes.clock import ManualClock
from tests.fakes.exchange import FakeBinance, Fault, running_fake_binance

pytestmark = pytest.mark.anyio


@pytest.fixture
def sim_service(clock: ManualClock) -> MarketService:
    return MarketService(SimMarketData(clock), TTLCache(clock), clock)


@pytest.fixture
def fake() -> Iterator[FakeBinance]:
    with running_fake_binance() as running:
        yield running


def fake_service(fake: FakeBinance, clock: ManualClock) -> MarketService:
    source = CcxtMarketData("binance", api_base=fake.url, retry=RetryPolicy(attempts=1), timeout_seconds=2)
    return MarketService(source, TTLCache(clock), clock)


@pytest.mark.parametrize("typed", ["BTCUSD", "BTC/USD", "BTC/USDT:USDT"])
async def test_unknown_symbol_suggests_the_close_match(sim_service: MarketService, typed: str) -> None:
    with pytest.raises(NotFound) as caught:
        await sim_service.market(typed)
    assert caught.value.message == f"unknown symbol {typed} on sim"
    assert caught.value.hint is not None and caught.value.hint.startswith("Did you mean BTC/USDT")


@pytest.mark.parametrize("typed", ["btc/usdt", " BTC-USDT ", "btc_usdt", "btcusdt", "BTCUSDT"])
async def test_symbols_are_accepted_in_any_case_and_separator(sim_service: MarketService, typed: str) -> None:
    assert (await sim_service.market(typed)).symbol == "BTC/USDT"


@pytest.mark.parametrize(("typed", "canonical"), [("4H", "4h"), (" 1D", "1d"), ("1W", "1w"), ("15m", "15m")])
async def test_timeframes_are_read_in_any_case_but_minute_and_month_are_never_guessed(
        sim_service: MarketService, typed: str, canonical: str) -> None:
    assert await sim_service.timeframe(typed) == canonical


async def test_a_hopeless_symbol_points_to_list_markets(sim_service: MarketService) -> None:
    with pytest.raises(NotFound) as caught:
        await sim_service.market("ZZZZZZ")
    assert caught.value.hint is not None and "list_markets" in caught.value.hint


@pytest.mark.parametrize("timeframe", ["7m", "1M", "hour", ""])
async def test_bad_timeframes_list_the_valid_ones(sim_service: MarketService, timeframe: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        await sim_service.candles("BTC/USDT", timeframe, 10)
    assert caught.value.hint is not None and "1h" in caught.value.hint and "1d" in caught.value.hint


@pytest.mark.parametrize("limit", [0, -5, 5001, 10**9])
async def test_out_of_range_limits_are_refused(sim_service: MarketService, limit: int) -> None:
    with pytest.raises(InvalidInput, match="limit must be between 1 and 5000"):
        await sim_service.candles("BTC/USDT", "1h", limit)


async def test_since_in_the_future_is_refused(sim_service: MarketService, clock: ManualClock) -> None:
    with pytest.raises(InvalidInput, match="future"):
        await sim_service.candles("BTC/USDT", "1h", 10, int(clock.now() * 1000) + 3_600_000)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("2024-05-01T00:00:00Z", 1714521600000), ("2024-05-01", 1714521600000), (1714521600, 1714521600000),
     ("1714521600000", 1714521600000), (None, None)],
)
def test_since_accepts_iso_seconds_and_milliseconds(raw: object, expected: int | None) -> None:
    assert parse_since(raw) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("raw", ["yesterday", "-1", "2024-13-45"])
def test_since_nonsense_is_refused(raw: str) -> None:
    with pytest.raises(InvalidInput):
        parse_since(raw)


def test_closed_ranges_are_cached_long_and_open_candles_briefly() -> None:
    assert ohlcv_ttl(3600, newest_start_ms=0, now_ms=3_600_000) == CLOSED_RANGE_TTL
    assert ohlcv_ttl(60, newest_start_ms=0, now_ms=30_000) == 2.0
    assert ohlcv_ttl(86400, newest_start_ms=0, now_ms=30_000) == 30.0


async def test_repeated_requests_within_the_ttl_hit_the_cache(fake: FakeBinance, clock: ManualClock) -> None:
    service = fake_service(fake, clock)
    first = await service.ticker("XRP/USDT")
    again = await service.ticker("xrp/usdt")
    assert fake.paths().count("/api/v3/ticker/24hr") == 1 and again.last == first.last
    clock.advance(3)
    await service.ticker("XRP/USDT")
    assert fake.paths().count("/api/v3/ticker/24hr") == 2
    health = service.health()
    assert health.metrics["cache_hits"] >= 1 and health.status == "ok"
    await service.source.close()


async def test_a_failure_degrades_market_health_until_the_next_success(fake: FakeBinance, clock: ManualClock) -> None:
    service = fake_service(fake, clock)
    await service.all_markets()
    fake.fail_next(1, Fault(status=503, body="down"))
    with pytest.raises(ExchangeUnavailable):
        await service.order_book("XRP/USDT", 5)
    assert service.health().status == "degraded"
    await service.order_book("XRP/USDT", 5)
    assert service.health().status == "ok"
    await service.source.close()


async def test_the_order_book_report_measures_spread_and_imbalance(sim_service: MarketService) -> None:
    report = await sim_service.order_book("ETH/USDT", 10)
    assert report.mid is not None and report.spread is not None and report.spread > 0
    assert report.bid_depth == pytest.approx(sum(a for _, a in report.bids))
    assert report.imbalance == pytest.approx(
        (report.bid_depth - report.ask_depth) / (report.bid_depth + report.ask_depth), abs=1e-4)
    assert report.simulated is True and report.exchange == "sim"


def test_the_cache_evicts_the_least_recently_used_entry_over_its_cap(clock: ManualClock) -> None:
    cache = TTLCache(clock, max_bytes=3000)
    row = [[1.0] * 6] * 5
    for key in "abcd":
        cache.put(key, row, 60)
        cache.get("a")  # keep "a" warm
    assert cache.get("a") is not None and cache.get("b") is None
    assert cache.stats.evictions >= 1
    clock.advance(61)
    assert cache.get("a") is None  # expired
