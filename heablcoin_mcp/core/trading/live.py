"""Live order routing through ccxt, with keys read from the account's environment variables.

Only reached when HEABLCOIN_TRADING_MODE=live AND the account is marked live, and only after the
user confirmed the order. An order request is never retried: when its answer is lost (timeout,
dropped connection, 5xx) the outcome is unknown and the caller is told to look, not to resend.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from heablcoin_mcp.core.books.ledger import Holding
from heablcoin_mcp.core.books.money import ZERO, dec
from heablcoin_mcp.core.market.ccxt_source import Proxies, client_config, rebase_urls, translate_ccxt_error
from heablcoin_mcp.core.market.limiter import SharedExchangeLimiter
from heablcoin_mcp.core.redact import Redactor
from heablcoin_mcp.core.trading.accounts import Account
from heablcoin_mcp.errors import ConfigError, ExchangeRejected, HeablError, OutcomeUnknown

log = logging.getLogger(__name__)

STATUS = {"open": "open", "closed": "filled", "canceled": "cancelled", "cancelled": "cancelled",
          "rejected": "rejected", "expired": "cancelled"}


@dataclass(frozen=True)
class LiveFill:
    price: Decimal
    amount: Decimal
    fee: Decimal


@dataclass(frozen=True)
class LiveOrder:
    exchange_order_id: str | None
    status: str
    filled: Decimal
    average: Decimal | None
    fills: list[LiveFill]


class LiveBroker:
    def __init__(self, account: Account, environ: Mapping[str, str], *, timeout_seconds: float = 10.0,
                 proxies: Proxies | None = None, api_base: str | None = None,
                 redactor: Redactor | None = None, limiter: SharedExchangeLimiter | None = None) -> None:
        self.account = account
        self.limiter = limiter
        self.environ = environ
        self.redactor = redactor or Redactor(environ)
        self.timeout_seconds = timeout_seconds
        self.proxies = proxies or Proxies()
        self.api_base = api_base
        self._client: Any = None

    def _exchange(self) -> Any:
        if self._client is None:
            import ccxt.async_support as ccxt_async

            credentials = {}
            for field, key in (("api_key_env", "apiKey"), ("secret_env", "secret"), ("password_env", "password")):
                variable = getattr(self.account, field)
                if variable is None:
                    continue
                value = self.environ.get(variable)
                if not value:
                    raise ConfigError(f"account {self.account.name}: environment variable {variable} is not set",
                                      hint=f"Set {variable} in the server's environment or .env, then restart.")
                credentials[key] = value
            config = {**client_config(None, self.proxies, self.timeout_seconds), **credentials}
            client = getattr(ccxt_async, self.account.exchange)(config)
            if self.api_base:
                client.urls["api"] = rebase_urls(client.urls["api"], self.api_base)
            if self.limiter is not None:
                self.limiter.install(client, self.account.name)
            self._client = client
        return self._client

    async def create(self, *, symbol: str, side: str, kind: str, amount: Decimal, price: Decimal | None,
                     stop_price: Decimal | None, client_order_id: str) -> LiveOrder:
        """Send one order. Raises OutcomeUnknown when the answer is lost (never resent),
        ExchangeRejected when the exchange refuses it, RateLimited on 429."""
        import ccxt

        exchange = self._exchange()
        params: dict[str, Any] = {"clientOrderId": client_order_id}
        if stop_price is not None:
            params["stopPrice"] = float(stop_price)
        ccxt_type = "market" if kind in ("market", "stop") else "limit"
        try:
            await exchange.load_markets()
        except ccxt.BaseError as exc:
            raise translate_ccxt_error(exc, self.account.exchange, "load markets") from exc
        try:
            raw = await exchange.create_order(symbol, ccxt_type, side, float(amount),
                                              float(price) if price is not None else None, params)
        except (ccxt.RequestTimeout, ccxt.ExchangeNotAvailable, ccxt.NetworkError) as exc:
            if isinstance(exc, ccxt.RateLimitExceeded | ccxt.DDoSProtection):
                raise translate_ccxt_error(exc, self.account.exchange, "create order") from exc
            log.warning("live order %s on %s: no answer (%s)", client_order_id, self.account.name, type(exc).__name__)
            raise OutcomeUnknown(
                f"the order {client_order_id} was sent to {self.account.exchange} but its answer was lost "
                f"({type(exc).__name__}); it may or may not have executed",
                hint="Check open orders and balances before doing anything else; it will not be resent.",
                details={"client_order_id": client_order_id}) from exc
        except ccxt.BaseError as exc:
            mapped = translate_ccxt_error(exc, self.account.exchange, "create order")
            if isinstance(mapped, ExchangeRejected):
                said = self.redactor.scrub(str(exc))[:300]
                raise ExchangeRejected(f"{self.account.exchange} refused the order: {said}",
                                       hint="Nothing was executed. Fix the order (size, price, balance).") from exc
            raise mapped from exc
        return _parse(raw)

    async def fetch(self, exchange_order_id: str, symbol: str) -> LiveOrder:
        return _parse(await self._call("fetch order", self._exchange().fetch_order, exchange_order_id, symbol))

    async def cancel(self, exchange_order_id: str, symbol: str) -> None:
        await self._call("cancel order", self._exchange().cancel_order, exchange_order_id, symbol)

    async def balances(self) -> dict[str, Holding]:
        raw = await self._call("fetch balance", self._exchange().fetch_balance)
        held = {}
        for asset, free in (raw.get("free") or {}).items():
            locked = (raw.get("used") or {}).get(asset) or 0
            if free or locked:
                held[asset] = Holding(dec(free or 0), dec(locked))
        return held

    async def _call(self, action: str, fn: Any, *args: Any) -> Any:
        import ccxt

        try:
            return await fn(*args)
        except ccxt.BaseError as exc:
            raise translate_ccxt_error(exc, self.account.exchange, action) from exc

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


def _parse(raw: dict[str, Any]) -> LiveOrder:
    fills = []
    for trade in raw.get("trades") or []:
        fee = (trade.get("fee") or {}).get("cost") or 0
        fills.append(LiveFill(dec(trade["price"]), dec(trade["amount"]), dec(fee)))
    filled = dec(raw.get("filled") or 0)
    status = STATUS.get(raw.get("status") or "open", "open")
    if status == "open" and filled > 0:
        status = "partially_filled"
    average = raw.get("average")
    return LiveOrder(exchange_order_id=str(raw["id"]) if raw.get("id") is not None else None, status=status,
                     filled=filled, average=dec(average) if average else None, fills=fills)


class LiveBrokers:
    """One broker (one ccxt client) per live account, closed on shutdown."""

    def __init__(self, environ: Mapping[str, str], *, timeout_seconds: float, proxies: Proxies,
                 api_base: str | None = None, redactor: Redactor | None = None,
                 limiter: SharedExchangeLimiter | None = None) -> None:
        self.environ, self.timeout_seconds, self.proxies, self.api_base = environ, timeout_seconds, proxies, api_base
        self.redactor = redactor or Redactor(environ)
        self.limiter = limiter
        self._brokers: dict[str, LiveBroker] = {}

    def get(self, account: Account) -> LiveBroker:
        if account.name not in self._brokers:
            self._brokers[account.name] = LiveBroker(account, self.environ, timeout_seconds=self.timeout_seconds,
                                                     proxies=self.proxies, api_base=self.api_base,
                                                     redactor=self.redactor, limiter=self.limiter)
        return self._brokers[account.name]

    async def close(self) -> None:
        for broker in self._brokers.values():
            try:
                await broker.close()
            except HeablError:
                log.warning("closing the %s client failed", broker.account.name)
        self._brokers.clear()


def total_fee(order: LiveOrder) -> Decimal:
    return sum((f.fee for f in order.fills), ZERO)
