from __future__ import annotations

import dataclasses
from decimal import Decimal as D

import pytest

from heablcoin_mcp.core.risk.engine import OrderContext, RiskEngine
from heablcoin_mcp.core.risk.limits import REGIME_TABLE, RiskLimits, effective
from heablcoin_mcp.core.storage import Storage
from heablcoin_mcp.core.storage.consents import Consents
from heablcoin_mcp.errors import ConfirmationRequired, InvalidInput
from tests.fakes.clock import ManualClock

pytestmark = pytest.mark.both_engines

LIMITS = RiskLimits(
    max_order_notional=D(1000),
    max_position_fraction=D("0.5"),
    max_total_exposure=D(1),
    max_open_orders=10,
    daily_loss_limit=D(500),
    max_leverage=D(3),
    risk_per_trade_pct=D(1),
    max_risk_per_trade_pct=D("1.1"),
    allow_symbols=("*",),
    deny_symbols=("DOGE/*",),
)
OK = OrderContext(
    account="default",
    symbol="BTC/USDT",
    side="buy",
    amount=D("0.01"),
    price=D(50_000),
    reduces_exposure=False,
    reduce_only=False,
    position_quantity=D(0),
    position_value=D(0),
    equity=D(10_000),
    total_exposure=D(0),
    open_orders=0,
    free_quote=D(10_000),
    free_base=D(0),
    fee_rate=D("0.001"),
    min_amount=D("0.0001"),
    min_notional=D(5),
    leverage=D(1),
    regime="NORMAL",
)


@pytest.fixture
def engine(storage: Storage, clock: ManualClock) -> RiskEngine:
    db = storage
    return RiskEngine(db, LIMITS, clock, Consents(db, clock))


def codes(engine: RiskEngine, **changes: object) -> list[str]:
    failures, _ = engine.check(dataclasses.replace(OK, **changes))  # type: ignore[arg-type]
    return [f.code for f in failures]


def test_a_sound_order_passes(engine: RiskEngine) -> None:
    assert codes(engine) == []


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"amount": D("0.03")}, "NOTIONAL_EXCEEDS_MAX"),
        ({"symbol": "DOGE/USDT"}, "SYMBOL_NOT_ALLOWED"),
        ({"amount": D("0.00001")}, "BELOW_EXCHANGE_MIN"),
        ({"open_orders": 5}, "MAX_OPEN_ORDERS_REACHED"),  # NORMAL allows 5 concurrent orders
        ({"position_value": D(4800)}, "POSITION_FRACTION_EXCEEDED"),
        ({"total_exposure": D(9800)}, "TOTAL_EXPOSURE_EXCEEDED"),
        ({"free_quote": D(100)}, "INSUFFICIENT_BALANCE"),
        ({"side": "sell", "free_base": D(0)}, "INSUFFICIENT_BALANCE"),
        ({"leverage": D(5)}, "LEVERAGE_EXCEEDS_MAX"),
        ({"reduce_only": True}, "REDUCE_ONLY_WOULD_INCREASE"),
        ({"regime": "CRASH", "open_orders": 2}, "MAX_OPEN_ORDERS_REACHED"),
        ({"regime": "CRASH", "position_value": D(1600)}, "POSITION_FRACTION_EXCEEDED"),
    ],
)
def test_each_rule_reports_its_code(engine: RiskEngine, changes: dict[str, object], code: str) -> None:
    assert code in codes(engine, **changes)


def test_every_failed_rule_is_reported_not_just_the_first(engine: RiskEngine) -> None:
    found = codes(engine, symbol="DOGE/USDT", amount=D("0.03"), free_quote=D(10))
    assert {"SYMBOL_NOT_ALLOWED", "NOTIONAL_EXCEEDS_MAX", "INSUFFICIENT_BALANCE"} <= set(found)


def test_the_daily_loss_limit_counts_todays_realised_pnl_and_fees(engine: RiskEngine, clock: ManualClock) -> None:
    conn = engine.db.conn
    conn.execute("INSERT INTO accounts (name, mode, exchange, created_at) VALUES ('default', 'paper', 'sim', 0)")
    conn.execute(
        "INSERT INTO orders (id, account, client_order_id, symbol, side, type, status, created_at, "
        "updated_at) VALUES ('o', 'default', 'c', 'BTC/USDT', 'sell', 'market', 'filled', 0, 0)"
    )
    for pnl, fee, ts in (
        ("-450", "10", clock.now()),
        ("-45", "5", clock.now()),
        ("-1000", "0", clock.now() - 86400 * 2),
    ):
        conn.execute(
            "INSERT INTO fills (order_id, account, symbol, side, price, amount, fee, fee_asset, liquidity,"
            " realized_pnl, ts) VALUES ('o', 'default', 'BTC/USDT', 'sell', '1', '1', ?, 'USDT', 'taker', ?,"
            " ?)",
            (fee, pnl, ts),
        )
    assert engine.daily_net_pnl() == D(-510)  # the loss of two days ago does not count
    assert "DAILY_LOSS_LIMIT_REACHED" in codes(engine)
    assert "DAILY_LOSS_LIMIT_REACHED" not in codes(engine, side="sell", reduces_exposure=True, free_base=D(1))


def test_halted_refuses_everything_and_reducing_only_reductions(engine: RiskEngine) -> None:
    engine.set_state("REDUCING", "volatile", confirmed=False)
    assert codes(engine) == ["TRADING_REDUCING_ONLY"]
    assert codes(engine, side="sell", reduces_exposure=True, free_base=D(1)) == []
    engine.set_state("HALTED", "kill switch", confirmed=False)
    assert "TRADING_HALTED" in codes(engine, side="sell", reduces_exposure=True, free_base=D(1))


def test_leaving_halted_needs_the_user(engine: RiskEngine) -> None:
    engine.set_state("HALTED", "stop", confirmed=False)
    with pytest.raises(ConfirmationRequired):
        engine.set_state("ACTIVE", "model wants to trade", confirmed=False)
    with pytest.raises(ConfirmationRequired):
        engine.set_state("REDUCING", "model wants to trade a little", confirmed=False)
    assert engine.state().state == "HALTED"
    assert engine.set_state("ACTIVE", "user said so", confirmed=True).state == "ACTIVE"


def test_tightening_applies_and_loosening_needs_the_user(engine: RiskEngine) -> None:
    engine.apply_limit_changes(
        engine.plan_limit_changes({"max_order_notional": 200}, ["SHIB/*"]), "careful", confirmed=False
    )
    assert engine.limits().max_order_notional == D(200)
    assert "SHIB/*" in engine.limits().deny_symbols and "DOGE/*" in engine.limits().deny_symbols
    loosen = engine.plan_limit_changes({"max_order_notional": 800}, None)
    assert loosen[0].loosens is True
    with pytest.raises(ConfirmationRequired):
        engine.apply_limit_changes(loosen, "more", confirmed=False)
    assert engine.limits().max_order_notional == D(200)
    engine.apply_limit_changes(loosen, "the user agreed", confirmed=True)
    assert engine.limits().max_order_notional == D(800)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_order_notional": 5000}, "above the configured ceiling"),
        ({"max_open_orders": -1}, "must be positive"),
        ({"bogus": 1}, "unknown risk limit"),
        ({"daily_loss_limit": "lots"}, "must be a number"),
    ],
)
def test_limit_changes_are_validated(engine: RiskEngine, changes: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        engine.plan_limit_changes(changes, None)


@pytest.mark.parametrize("regime", list(REGIME_TABLE))
def test_a_regime_never_loosens_a_user_limit(regime: str) -> None:
    params = effective(LIMITS, regime)
    assert params.max_leverage <= LIMITS.max_leverage
    assert params.max_position_fraction <= LIMITS.max_position_fraction
    assert params.max_open_orders <= LIMITS.max_open_orders
    assert params.risk_per_trade_pct <= LIMITS.max_risk_per_trade_pct
    table = REGIME_TABLE[regime]
    assert params.max_position_fraction == min(LIMITS.max_position_fraction, table.max_position_fraction)
    assert params.risk_per_trade_pct == min(
        LIMITS.risk_per_trade_pct * table.risk_multiplier, LIMITS.max_risk_per_trade_pct
    )


def test_symbol_lists_use_wildcards() -> None:
    limits = dataclasses.replace(LIMITS, allow_symbols=("*/USDT",), deny_symbols=("DOGE/*",))
    assert limits.symbol_allowed("btc/usdt") and not limits.symbol_allowed("ETH/BTC")
    assert not limits.symbol_allowed("DOGE/USDT")
