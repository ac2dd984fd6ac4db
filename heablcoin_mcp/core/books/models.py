"""Order requests, previews and outcomes."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field

from heablcoin_mcp.core.books.money import dec
from heablcoin_mcp.errors import InvalidInput

Side = Literal["buy", "sell"]
OrderType = Literal["market", "limit", "stop", "stop_limit"]
Unit = Literal["base", "quote"]
MAX_CLIENT_ID = 48


class RuleFailure(BaseModel):
    """One pre-trade rule that refused an order: a stable code and a sentence for the user."""

    code: str
    message: str


class OrderRequest(BaseModel):
    account: str = "default"
    symbol: str
    side: Side
    amount: Decimal
    amount_unit: Unit = "base"
    type: OrderType = "market"
    price: Decimal | None = None
    stop_price: Decimal | None = None
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    reduce_only: bool = False
    client_order_id: str | None = None

    @classmethod
    def build(cls, **values: object) -> OrderRequest:
        """Validate a raw request.

        Raises:
            InvalidInput: naming the first problem (sign, finiteness, missing price, sides of SL/TP...).
        """
        side, kind, unit = values.get("side"), values.get("type", "market"), values.get("amount_unit", "base")
        if side not in ("buy", "sell"):
            raise InvalidInput(f"side must be 'buy' or 'sell', got {side!r}")
        if kind not in ("market", "limit", "stop", "stop_limit"):
            raise InvalidInput(f"type must be market, limit, stop or stop_limit, got {kind!r}")
        if unit not in ("base", "quote"):
            raise InvalidInput(f"amount_unit must be 'base' or 'quote', got {unit!r}",
                               hint="'base' = amount of the coin (0.01 BTC); 'quote' = money to spend (100 USDT).")
        numbers: dict[str, object] = {}
        for name in ("amount", "price", "stop_price", "stop_loss", "take_profit"):
            raw = values.get(name)
            if raw is None:
                continue
            number = dec(raw, name)
            if number <= 0:
                raise InvalidInput(f"{name} must be positive, got {raw}")
            numbers[name] = number
        if "amount" not in numbers:
            raise InvalidInput("amount is required")
        if kind in ("limit", "stop_limit") and "price" not in numbers:
            raise InvalidInput(f"a {kind} order needs a price")
        if kind in ("stop", "stop_limit") and "stop_price" not in numbers:
            raise InvalidInput(f"a {kind} order needs a stop_price")
        if kind == "market" and ("price" in numbers or "stop_price" in numbers):
            raise InvalidInput("a market order takes no price or stop_price", hint="Use type='limit' or 'stop'.")
        client_id = values.get("client_order_id")
        if client_id is not None and (not isinstance(client_id, str) or not 1 <= len(client_id) <= MAX_CLIENT_ID
                                      or not client_id.replace("-", "").replace("_", "").isalnum()):
            raise InvalidInput(f"client_order_id must be 1-{MAX_CLIENT_ID} letters, digits, '-' or '_'")
        if side == "sell" and ("stop_loss" in numbers or "take_profit" in numbers):
            raise InvalidInput("stop_loss / take_profit can be attached to buy orders only on spot",
                               hint="Spot positions are long: protect them with a sell stop or a sell limit.")
        return cls(account=str(values.get("account") or "default").strip().lower(),
                   symbol=str(values["symbol"]), side=side, type=kind, amount_unit=unit,  # type: ignore[arg-type]
                   reduce_only=bool(values.get("reduce_only", False)), client_order_id=client_id,
                   **numbers)  # type: ignore[arg-type]

    def fingerprint(self) -> str:
        """Identifies the order as asked (not as priced), so asking again while its token lives gets
        the same preview and token even if the price moved."""
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


class OrderPreview(BaseModel):
    account: str
    mode: Literal["paper", "live"]
    symbol: str
    side: Side
    type: OrderType
    amount: str = Field(description="base units, rounded down to the market's amount step")
    requested: str = Field(description="what was asked, with its unit")
    price: str | None = None
    stop_price: str | None = None
    expected_price: str = Field(description="expected average fill price")
    notional: str
    estimated_fee: str
    stop_loss: str | None = None
    take_profit: str | None = None
    reduce_only: bool
    client_order_id: str
    regime: str
    simulated_prices: bool
    allowed: bool = Field(description="true when every pre-trade rule passed")
    failures: list[RuleFailure]
    warnings: list[str]
    summary: str


class OrderView(BaseModel):
    id: str
    account: str
    client_order_id: str
    symbol: str
    side: Side
    type: OrderType
    status: str
    amount: str | None
    filled: str
    avg_price: str | None
    price: str | None
    stop_price: str | None
    fee: str
    reduce_only: bool
    parent_id: str | None
    exchange_order_id: str | None
    reason: str | None
    created_at: float
    updated_at: float


class OrderOutcome(BaseModel):
    status: Literal["confirmation_required", "executed", "declined", "existing", "rejected"]
    message: str
    preview: OrderPreview | None = None
    confirmation_token: str | None = Field(None, description="pass to confirm_order within 60 s; single use")
    expires_at: float | None = None
    order: OrderView | None = None
    attached: list[OrderView] = Field(default_factory=list, description="stop-loss / take-profit orders")


class FillView(BaseModel):
    order_id: str
    account: str
    symbol: str
    side: Side
    price: str
    amount: str
    fee: str
    fee_asset: str
    liquidity: str
    realized_pnl: str
    ts: float


class BatchLeg(BaseModel):
    account: str
    share: str = Field(description="amount asked of this account, in the request's unit")
    outcome: OrderOutcome | None = None
    error: dict[str, object] | None = Field(None, description="the error envelope when this leg failed")


class BatchOutcome(BaseModel):
    status: Literal["confirmation_required", "executed", "declined", "rejected"]
    message: str
    strategy: str
    legs: list[BatchLeg]
    confirmation_token: str | None = Field(None, description="one token for the whole batch; 60 s, single use")
    expires_at: float | None = None
