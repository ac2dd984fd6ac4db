"""Two processes' ccxt clients against one exchange: with the shared limiter their requests together
keep the exchange's spacing (ccxt's rateLimit per unit of weight). Without it each client spaces only
its own, and the twelve requests span about six steps instead of eleven (seen when this was written;
not asserted, since an upper bound on time would fail on a slow machine)."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest

from heablcoin_mcp.core.market.ccxt_source import CcxtMarketData, RetryPolicy
from heablcoin_mcp.core.market.limiter import SharedExchangeLimiter
from tests.fakes.exchange import FakeBinance, running_fake_binance
from tests.services import REDIS_URL, redis_prefix

pytestmark = pytest.mark.anyio


@pytest.fixture
def fake() -> Iterator[FakeBinance]:
    with running_fake_binance() as running:
        yield running


@pytest.fixture
def prefix() -> Iterator[str]:
    with redis_prefix() as value:
        yield value


class Recording(SharedExchangeLimiter):
    """The real limiter, noting each request's step (weight × ms per unit) as ccxt asks for it."""

    steps: list[float]

    async def wait(self, exchange: str, account: str, cost: float, ms_per_unit: float) -> float:
        self.steps = [*getattr(self, "steps", []), cost * ms_per_unit / 1000]
        return await super().wait(exchange, account, cost, ms_per_unit)


TICKER_STEP = 0.02  # binance in ccxt: 50 ms per unit, a ticker weighs 0.4 (checked by the first test)


async def fetch_in_two_processes(fake: FakeBinance, limiters: list[SharedExchangeLimiter | None]) -> list[float]:
    sources = [CcxtMarketData("binance", api_base=fake.url, retry=RetryPolicy(attempts=1), limiter=limiter)
               for limiter in limiters]
    for source in sources:
        await source.markets()  # load markets first: the timed requests below are tickers alone
    first = len(fake.arrivals)

    async def tickers(source: CcxtMarketData) -> None:
        for _ in range(6):
            await source.ticker("XRP/USDT")

    async with anyio.create_task_group() as tg:
        for source in sources:
            tg.start_soon(tickers, source)
    for source in sources:
        await source.close()
    return fake.arrivals[first:]


def span(arrivals: list[float]) -> float:
    """From the first request to the last: with 12 requests of one step each, at least 11 steps when
    they are spaced together (jitter in delivery moves single arrivals, not the whole run)."""
    return max(arrivals) - min(arrivals)


async def test_two_processes_together_keep_the_exchanges_spacing(fake: FakeBinance, prefix: str) -> None:
    limiters = [Recording(REDIS_URL, prefix=prefix) for _ in range(2)]
    arrivals = await fetch_in_two_processes(fake, limiters)  # type: ignore[arg-type]
    for limiter in limiters:
        await limiter.aclose()
    assert {round(step, 6) for limiter in limiters for step in limiter.steps[-6:]} == {TICKER_STEP}
    assert len(arrivals) == 12
    assert span(arrivals) >= 11 * TICKER_STEP - 0.01  # a slow machine only widens it
