from __future__ import annotations

import inspect
import socket
from collections.abc import Iterator

import ccxt
import pytest
from ccxt.base import errors as ccxt_errors

from heablcoin_mcp.core.market.ccxt_source import CcxtMarketData, Proxies, RetryPolicy, translate_ccxt_error
from heablcoin_mcp.errors import ExchangeUnavailable, Internal, NotFound, RateLimited
from tests.fakes.exchange import FakeBinance, Fault, running_fake_binance

pytestmark = pytest.mark.anyio
FAST_RETRY = RetryPolicy(attempts=3, initial_wait=0.01, max_wait=0.02)


@pytest.fixture
def fake() -> Iterator[FakeBinance]:
    with running_fake_binance() as running:
        yield running


def source_for(fake: FakeBinance, **kwargs: object) -> CcxtMarketData:
    return CcxtMarketData("binance", api_base=fake.url, retry=FAST_RETRY, **kwargs)  # type: ignore[arg-type]


def test_every_ccxt_exception_class_has_a_mapping() -> None:
    classes = [cls for _, cls in inspect.getmembers(ccxt_errors, inspect.isclass)
               if issubclass(cls, ccxt.BaseError)]
    assert len(classes) > 30
    for cls in classes:
        error = translate_ccxt_error(cls("boom"), "binance", "probe")
        assert not isinstance(error, Internal), cls.__name__
        assert error.code != "internal" and error.hint, cls.__name__


@pytest.mark.parametrize(
    ("exc", "code", "retryable"),
    [
        (ccxt.RequestTimeout("t"), "exchange_unavailable", True),
        (ccxt.OnMaintenance("m"), "exchange_unavailable", True),
        (ccxt.RateLimitExceeded("r"), "rate_limited", True),
        (ccxt.BadSymbol("s"), "not_found", False),
        (ccxt.AuthenticationError("a"), "exchange_rejected", False),
        (ccxt.InsufficientFunds("f"), "exchange_rejected", False),
        (ccxt.NotSupported("n"), "invalid_input", False),
    ],
)
def test_ccxt_errors_map_to_what_the_caller_should_do(exc: Exception, code: str, retryable: bool) -> None:
    error = translate_ccxt_error(exc, "binance", "probe")
    assert (error.code, error.retryable) == (code, retryable)


async def test_markets_are_loaded_once_and_reused(fake: FakeBinance) -> None:
    source = source_for(fake)
    await source.ticker("XRP/USDT")
    await source.markets()
    await source.ohlcv("XRP/USDT", "5m", 3)
    await source.close()
    assert fake.paths().count("/api/v3/exchangeInfo") <= 1


async def test_a_transient_5xx_is_retried_and_then_succeeds(fake: FakeBinance) -> None:
    source = source_for(fake)
    await source.markets()
    fake.fail_next(2, Fault(status=502, body="Bad Gateway"))
    rows = await source.ohlcv("XRP/USDT", "5m", 5)
    await source.close()
    assert len(rows) == 5
    assert fake.paths().count("/api/v3/klines") == 3


async def test_a_persistent_429_becomes_rate_limited_after_the_retries(fake: FakeBinance) -> None:
    source = source_for(fake)
    await source.markets()
    fake.fail_next(10, Fault(status=429, body='{"code":-1003,"msg":"Too many requests"}'))
    with pytest.raises(RateLimited) as caught:
        await source.ticker("XRP/USDT")
    await source.close()
    assert caught.value.retryable is True
    assert fake.paths().count("/api/v3/ticker/24hr") == FAST_RETRY.attempts


async def test_a_stalled_exchange_times_out_as_unavailable_with_a_hint(fake: FakeBinance) -> None:
    source = source_for(fake, timeout_seconds=0.3)
    await source.markets()
    fake.fail_next(3, Fault(stall_seconds=1.0, status=200, body="{}"))
    with pytest.raises(ExchangeUnavailable) as caught:
        await source.order_book("XRP/USDT", 5)
    await source.close()
    assert caught.value.retryable is True
    assert caught.value.hint is not None and "HEABLCOIN_EXCHANGE=sim" in caught.value.hint


async def test_an_unreachable_exchange_is_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    source = CcxtMarketData("binance", api_base=f"http://127.0.0.1:{port}", retry=FAST_RETRY, timeout_seconds=1)
    with pytest.raises(ExchangeUnavailable):
        await source.markets()
    await source.close()


async def test_an_unknown_symbol_on_the_exchange_is_not_found(fake: FakeBinance) -> None:
    source = source_for(fake)
    with pytest.raises(NotFound):
        await source.ticker("DOGE/USDT")  # ccxt itself refuses: not in the exchange's markets
    await source.close()


async def test_proxies_are_handed_to_ccxt(fake: FakeBinance) -> None:
    source = source_for(fake, proxies=Proxies(https="http://127.0.0.1:9"))
    exchange = source._exchange()
    assert exchange.httpsProxy == "http://127.0.0.1:9"
    assert exchange.enableRateLimit is True
    await source.close()
