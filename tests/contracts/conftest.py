from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from heablcoin_mcp.core.market.ccxt_source import CcxtMarketData, RetryPolicy
from heablcoin_mcp.core.market.models import MarketData
from heablcoin_mcp.core.market.sim import SimMarketData
from tests.fakes.clock import ManualClock
from tests.fakes.exchange import running_fake_binance


@dataclass
class SourceCase:
    source: MarketData
    symbol: str
    timeframe: str
    now_ms: Callable[[], int]


@pytest.fixture(params=["sim", "ccxt-fake-binance"])
async def market_case(request: pytest.FixtureRequest) -> AsyncIterator[SourceCase]:
    if request.param == "sim":
        clock = ManualClock()
        yield SourceCase(SimMarketData(clock), "BTC/USDT", "1h", lambda: int(clock.now() * 1000))
        return
    with running_fake_binance() as fake:
        source = CcxtMarketData("binance", api_base=fake.url, timeout_seconds=5,
                                retry=RetryPolicy(attempts=3, initial_wait=0.01, max_wait=0.05))
        yield SourceCase(source, "XRP/USDT", "5m", lambda: int(time.time() * 1000))
        await source.close()
