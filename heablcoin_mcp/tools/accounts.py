"""Toolset `accounts`: named paper/live accounts and orders split across them.

No `from __future__ import annotations` here: see tools/risk.py."""

from typing import Annotated, Literal

from mcp.server.mcpserver import Context, Elicit, ElicitationResult, MCPServer, Resolve
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from heablcoin_mcp.app import App
from heablcoin_mcp.core.books.models import BatchOutcome
from heablcoin_mcp.core.trading.accounts import Account
from heablcoin_mcp.errors import HeablError, InvalidInput, RiskRejected
from heablcoin_mcp.tools._confirm import Confirm, answered_yes, client_can_ask, question, was_asked
from heablcoin_mcp.tools._types import MARKET_READ, Lower, NameList, Symbol
from heablcoin_mcp.tools.trading import PLACES_ORDERS, Price

ADDS = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False)
EnvName = Annotated[str | None, Field(description="NAME of the environment variable holding it (never the value), "
                                                  "e.g. BINANCE_API_KEY.", max_length=64)]


class AccountsResult(BaseModel):
    count: int
    accounts: list[Account]
    trading_mode: str = Field(description="live orders need HEABLCOIN_TRADING_MODE=live and a live account")


def register(server: MCPServer, app: App) -> None:
    accounts = app.accounts

    @server.tool(title="Add account", annotations=ADDS)
    def add_account(
        name: Annotated[str, Field(description="1-32 of a-z 0-9 _ -", min_length=1, max_length=32)],
        exchange: Annotated[str, Field(description="ccxt exchange id (binance, okx, ...) or 'sim'.")],
        mode: Annotated[Literal["paper", "live"], Lower,
                        Field(description="paper (simulated fills) or live")] = "paper",
        api_key_env: EnvName = None,
        secret_env: EnvName = None,
        password_env: EnvName = None,
        weight: Annotated[float, Field(description="Share in weighted distributions.", gt=0, le=1000)] = 1.0,
        group: Annotated[str | None, Field(description="Group name for distribute_order.", max_length=32)] = None,
    ) -> Account:
        """Create a named account. Paper accounts start with the paper balance. Live accounts take the
        NAMES of the variables holding their keys (never keys) and trade only with
        HEABLCOIN_TRADING_MODE=live, every order confirmed by the user; `keys_set` says which are set."""
        return accounts.add(name, exchange, mode, api_key_env, secret_env, password_env, weight, group)

    @server.tool(title="List accounts", annotations=MARKET_READ)
    def list_accounts(group: Annotated[str | None, Field(description="Only this group.")] = None) -> AccountsResult:
        """Accounts with mode, exchange, weight, group, and whether their key variables are set (never the
        keys themselves)."""
        found = accounts.list(group)
        return AccountsResult(count=len(found), accounts=found, trading_mode=app.settings.trading_mode)

    def selected(group: str | None, names: list[str] | None) -> list[Account]:
        if names:
            return [accounts.get(n) for n in names]
        found = accounts.list(group)
        if not found:
            raise InvalidInput(f"no accounts in group {group!r}" if group else "no accounts")
        return found

    def order_values(symbol: str, side: str, amount: float | str, amount_unit: str, order_type: str,
                     price: object, stop_price: object) -> dict[str, object]:
        return {"symbol": symbol, "side": side, "amount": amount, "amount_unit": amount_unit, "type": order_type,
                "price": price, "stop_price": stop_price}

    async def plan_distribution(
        symbol: str, side: str, amount: float | str, amount_unit: str = "base",
        strategy: str = "equal", group: str | None = None, accounts: list[str] | None = None,
        order_type: str = "market", price: Price = None, stop_price: Price = None,
    ) -> BatchOutcome:
        """Every leg priced and checked; the question and the tool body share this one per call."""
        return await app.orders.distribute(order_values(symbol, side, amount, amount_unit, order_type, price,
                                                        stop_price), strategy, selected(group, accounts))

    def ask_to_distribute(
        batch: Annotated[BatchOutcome, Resolve(plan_distribution)], ctx: Context
    ) -> Elicit[Confirm] | None:
        if not client_can_ask(ctx) or batch.confirmation_token is None:
            return None
        lines = [f"{leg.account}: {leg.outcome.preview.summary}" for leg in batch.legs
                 if leg.outcome and leg.outcome.preview and leg.outcome.confirmation_token]
        return question("Place these orders? " + " | ".join(lines), batch.confirmation_token)

    @server.tool(title="Distribute order", annotations=PLACES_ORDERS)
    async def distribute_order(
        symbol: Symbol,
        side: Annotated[Literal["buy", "sell"], Lower, Field(description="buy or sell")],
        amount: Annotated[float | str, Field(description="Total amount, in amount_unit, to split.")],
        answer: Annotated[ElicitationResult[Confirm], Resolve(ask_to_distribute)],
        batch: Annotated[BatchOutcome, Resolve(plan_distribution)],
        amount_unit: Annotated[Literal["base", "quote"], Lower,
                               Field(description="base (coins) or quote (money)")] = "base",
        strategy: Annotated[Literal["equal", "weighted", "risk_based"], Lower,
                            Field(description="equal shares, by account weight, or by each account's free risk "
                                              "budget")] = "equal",
        group: Annotated[str | None, Field(description="Only accounts of this group.")] = None,
        accounts: Annotated[NameList | None, Field(description="Or these accounts by name.")] = None,
        order_type: Annotated[Literal["market", "limit", "stop", "stop_limit"], Lower,
                              Field(description="as for place_order")] = "market",
        price: Price = None,
        stop_price: Price = None,
    ) -> BatchOutcome:
        """Split one order across several accounts and place every part with ONE confirmation from the
        user for the whole batch (elicitation, or `confirmation_required` with one token for
        confirm_distribution). Every leg is priced and risk-checked for its own account; the result lists
        each account's preview or error."""
        if batch.status == "rejected":
            raise refused(batch)
        if not was_asked(answer):
            return batch
        assert batch.confirmation_token is not None
        if answered_yes(answer):
            return await app.orders.confirm_batch(batch.confirmation_token)
        return app.orders.decline_batch(batch.confirmation_token, "the user declined")

    def refused(batch: BatchOutcome) -> HeablError:
        """No leg can be placed: an error result (not a 'rejected' success), naming each leg's reason."""
        legs = [{"account": leg.account, "error": leg.error,
                 "codes": [f.code for f in leg.outcome.preview.failures] if leg.outcome and leg.outcome.preview
                 else []} for leg in batch.legs]
        kind = RiskRejected if any(leg["codes"] for leg in legs) else InvalidInput
        first = next((leg["error"]["message"] for leg in legs if leg["error"]), batch.message)
        return kind(f"no leg of the distribution can be placed: {first}", details={"legs": legs},
                    hint="Nothing was sent. Fix the order, or choose other accounts.")

    @server.tool(title="Confirm distribution", annotations=PLACES_ORDERS)
    async def confirm_distribution(
        token: Annotated[str, Field(description="confirmation_token from distribute_order", min_length=8,
                                    max_length=80)],
    ) -> BatchOutcome:
        """Execute every order of a distribution the USER has confirmed, after showing them the legs. One
        token for the batch, single use, 60 s. Each leg is risk-checked again before it is sent."""
        return await app.orders.confirm_batch(token.strip())
