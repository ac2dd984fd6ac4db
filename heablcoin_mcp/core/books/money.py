"""Exact money. Amounts and prices are Decimal in the ledger and stored as TEXT in SQLite."""

from __future__ import annotations

import math
from decimal import ROUND_DOWN, Decimal, InvalidOperation

from heablcoin_mcp.errors import InvalidInput

ZERO = Decimal(0)


def dec(value: object, name: str = "value") -> Decimal:
    """A finite Decimal from a number or numeric string (floats go through str, so 0.1 stays 0.1).

    Raises:
        InvalidInput: NaN, infinity, or not a number.
    """
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, bool) or value is None:
        raise InvalidInput(f"{name} must be a number, got {value!r}")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(f"{name} must be a finite number, got {value}")
        result = Decimal(repr(value))
    else:
        try:
            result = Decimal(str(value).strip())
        except InvalidOperation:
            raise InvalidInput(f"{name} must be a number, got {value!r}") from None
    if not result.is_finite():
        raise InvalidInput(f"{name} must be a finite number, got {value}")
    return result


def floor_to_step(value: Decimal, step: Decimal | None) -> Decimal:
    """Round down to a multiple of the exchange's step (never up: never more than asked)."""
    if step is None or step <= 0:
        return value
    return (value / step).to_integral_value(rounding=ROUND_DOWN) * step


def text(value: Decimal) -> str:
    """Canonical text for storage: no exponent, no trailing zeros."""
    normal = value.normalize()
    return format(normal, "f") if normal != 0 else "0"


def step_of(value: float | None) -> Decimal | None:
    return dec(value) if value is not None else None
