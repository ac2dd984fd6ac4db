"""Lenient parameter types and annotation presets shared by every toolset.

Real clients send numbers as strings ("2") and lists as JSON strings ('["a","b"]'); the SDK
already accepts those. These add comma-separated lists ("BTC/USDT, ETH/USDT").
"""

from __future__ import annotations

from typing import Annotated, Any

from mcp.types import ToolAnnotations
from pydantic import BeforeValidator, Field

from heablcoin_mcp.config import split_csv


def _split_csv(value: Any) -> Any:
    return split_csv(value) if isinstance(value, str) else value


# Every list a tool takes is bounded: nothing a model sends may grow a stored row without limit.
MAX_LIST_ITEMS = 100
NameList = Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=MAX_LIST_ITEMS),
                     BeforeValidator(_split_csv)]

READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
MARKET_READ = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=True)

# A person types BUY or Limit or halted: accepted, and the schema still shows the canonical spelling.
Lower = BeforeValidator(lambda v: v.strip().lower() if isinstance(v, str) else v)
Upper = BeforeValidator(lambda v: v.strip().upper() if isinstance(v, str) else v)

Symbol = Annotated[
    str,
    Field(description="Market, e.g. BTC/USDT (any case; BTC-USDT works).", min_length=1, max_length=40),
]
Timeframe = Annotated[
    str,
    Field(description="Candle size: 1m 5m 15m 30m 1h 4h 1d 1w, or any the exchange offers.", min_length=2,
          max_length=4),
]
OptionalSymbol = Annotated[
    str | None, Field(description="Only this market symbol, e.g. 'BTC/USDT'; omit for all.", max_length=40)
]
AccountFilter = Annotated[str | None, Field(description="Only this account; omit for all accounts.", max_length=32)]
