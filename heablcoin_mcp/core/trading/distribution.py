"""Splitting one order across several accounts.

- equal: the same share for every account;
- weighted: in proportion to each account's weight;
- risk_based: in proportion to each account's free risk budget — for a buy, how much more of the
  symbol its position limit allows (max position share × equity − what it holds); for a sell, what
  it holds. No account gets more than its budget.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from heablcoin_mcp.core.books.money import ZERO
from heablcoin_mcp.errors import InvalidInput

Strategy = Literal["equal", "weighted", "risk_based"]


def split(amount: Decimal, strategy: str, weights: dict[str, Decimal],
          budgets: dict[str, Decimal] | None = None) -> dict[str, Decimal]:
    """Shares of ``amount`` per account (before rounding to the market's step).

    Raises:
        InvalidInput: unknown strategy, no accounts, or no budget anywhere for risk_based.
    """
    if not weights:
        raise InvalidInput("no accounts to distribute over", hint="add_account creates accounts; check the group.")
    if strategy == "equal":
        return {name: amount / len(weights) for name in weights}
    if strategy == "weighted":
        total = sum(weights.values(), ZERO)
        return {name: amount * w / total for name, w in weights.items()}
    if strategy == "risk_based":
        budgets = {name: max(b, ZERO) for name, b in (budgets or {}).items() if name in weights}
        total = sum(budgets.values(), ZERO)
        if total <= 0:
            raise InvalidInput("no account has free risk budget for this order")
        return {name: min(amount * b / total, b) for name, b in budgets.items()}
    raise InvalidInput(f"strategy must be equal, weighted or risk_based, got {strategy!r}")
