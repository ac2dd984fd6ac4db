"""Lenient parameter types and annotation presets shared by every toolset.

Real clients send numbers as strings ("2") and lists as JSON strings ('["a","b"]'); the SDK
already accepts those. These add comma-separated lists ("BTC/USDT, ETH/USDT").
"""

from __future__ import annotations

from typing import Annotated, Any

from mcp.types import ToolAnnotations
from pydantic import BeforeValidator

from heablcoin_mcp.config import split_csv


def _split_csv(value: Any) -> Any:
    return split_csv(value) if isinstance(value, str) else value


NameList = Annotated[list[str], BeforeValidator(_split_csv)]

READ_ONLY = ToolAnnotations(readOnlyHint=True, destructiveHint=False, idempotentHint=True, openWorldHint=False)
