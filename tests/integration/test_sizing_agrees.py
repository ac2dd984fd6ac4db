"""The position sizer and the order check agree: a size the sizer calls tradable is never refused by
a rule the sizer claims to respect, across random symbols, stops and limits that bind."""

from __future__ import annotations

import random
from decimal import Decimal as D

import pytest

from heablcoin_mcp.app import App
from heablcoin_mcp.core.books.models import OrderRequest
from heablcoin_mcp.errors import InvalidInput

pytestmark = pytest.mark.anyio
SIZINGS = 1_000
# What the sizer shrinks for; the rest (open orders, daily loss, halts) is not a size.
CLAIMED = {"NOTIONAL_EXCEEDS_MAX", "POSITION_FRACTION_EXCEEDED", "TOTAL_EXPOSURE_EXCEEDED", "INSUFFICIENT_BALANCE",
           "BELOW_EXCHANGE_MIN"}
SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT", "XRP/USDT", "DOGE/USDT"]


async def tighten_at_random(app: App, rng: random.Random) -> None:
    """New limits under the ceilings, as the user at a terminal would set them."""
    configured = app.risk.configured
    changes = {"max_order_notional": D(rng.choice([25, 80, 300, 1000])),
               "max_position_fraction": D(rng.choice(["0.02", "0.1", "0.3", "0.5"])),
               "max_total_exposure": D(rng.choice(["0.05", "0.3", "1"]))}
    planned = app.risk.plan_limit_changes({k: v for k, v in changes.items() if v <= getattr(configured, k)})
    if planned:
        app.risk.apply_limit_changes(planned, "property test", confirmed=True)


async def test_a_thousand_random_sizings_are_placed_without_a_refusal_the_sizer_claims_to_prevent(app: App) -> None:
    rng = random.Random(20261201)
    async with app:
        refused: list[tuple[str, list[str]]] = []
        placed = 0
        for i in range(SIZINGS):
            if i % 40 == 0:
                await tighten_at_random(app, rng)
            symbol = rng.choice(SYMBOLS)
            last = D(str((await app.market.ticker(symbol)).last))
            stop: dict[str, object] = (
                {"stop_price": str((last * D(str(1 - rng.uniform(0.0005, 0.2)))).quantize(D("0.00001")))}
                if rng.random() < 0.5 else {"stop_atr_multiple": round(rng.uniform(0.2, 5), 2)})
            risk = rng.choice([None, 0.5, 2, 10, 100])
            try:
                size = await app.sizer.size(symbol, account="default", risk_percent=risk, **stop)  # type: ignore[arg-type]
            except InvalidInput:
                continue  # a stop the sizer itself refuses (at or above the entry)
            if not size.tradable:
                continue
            request = OrderRequest.build(symbol=symbol, side="buy", amount=size.quantity, account="default",
                                         client_order_id=f"prop-{i}")
            outcome = await app.orders.place(request)
            if outcome.status == "rejected":
                codes = [f.code for f in outcome.preview.failures]  # type: ignore[union-attr]
                if set(codes) & CLAIMED:
                    refused.append((f"{symbol} {size.quantity} ({size.reasons})", codes))
                continue
            placed += 1
            if rng.random() < 0.15 and outcome.confirmation_token:  # buy some: positions and exposure grow
                await app.orders.confirm(outcome.confirmation_token)
    assert placed > SIZINGS // 8  # the property was exercised, not skipped (192 with today's sim prices)
    assert refused == []
