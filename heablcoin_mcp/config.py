"""Settings: parsed once at start-up (cli.py) and handed to App as a value.

Every field is read from the environment with the prefix ``HEABLCOIN_`` and from ``.env`` files in
``HEABLCOIN_HOME`` and the working directory (the working directory wins; real environment
variables win over both).
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from heablcoin_mcp.errors import ConfigError

ENV_PREFIX = "HEABLCOIN_"
# The shape of an environment variable's NAME (tools take names of variables that hold keys, never keys).
ENV_VAR_NAME = re.compile(r"^[A-Z_][A-Z0-9_]{0,63}$")
DEFAULT_HOME = "~/.heablcoin"

# The toolsets this build provides; server.py maps each name to its register() function.
TOOLSET_NAMES: tuple[str, ...] = ("accounts", "ai", "analysis", "market", "risk", "system", "tasks", "trading")

Transport = Literal["stdio", "sse", "streamable-http"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=None,
        extra="ignore",
        validate_default=True,
        frozen=True,
    )

    home: Path = Field(Path(DEFAULT_HOME), description="Directory for the database and state.")
    exchange: str = Field("binance", description="ccxt exchange id, or 'sim' for the offline market.")
    market_type: Literal["spot", "swap"] = "spot"
    exchange_timeout: float = Field(10.0, gt=0, le=120, description="seconds per exchange request")
    market_cache_mb: int = Field(64, ge=1, le=4096)
    regime_crash_change_pct: float = Field(-15.0, lt=0)
    regime_rally_change_pct: float = Field(10.0, gt=0)
    regime_high_vol_daily_pct: float = Field(6.0, gt=0)
    regime_low_vol_daily_pct: float = Field(1.5, gt=0)
    regime_window_days: float = Field(7.0, gt=0, le=365)
    trading_mode: Literal["paper", "live"] = "paper"
    worker_concurrency: int = Field(2, ge=0, le=64, description="task slots in the server process; 0 = none")
    task_lease_seconds: float = Field(30.0, ge=1, le=3600)
    task_aging_seconds: float = Field(300.0, ge=1, description="a waiting task gains one priority level per this")
    task_poll_interval: float = Field(0.5, gt=0, le=60)
    webhook_secret: SecretStr | None = None
    webhook_allow_private: bool = False
    ai_endpoints: list[dict[str, Any]] = Field(default_factory=list,
                                               description="JSON list of endpoints declared at start-up")
    ai_deadline: float = Field(60.0, gt=0, le=600, description="seconds an AI call may take, failovers included")
    ai_allow_private: bool = Field(False, description="allow AI endpoints on loopback / private hosts (local models)")
    ai_key_env_patterns: Annotated[tuple[str, ...], NoDecode] = Field(
        ("*_API_KEY",), description="names an AI endpoint's key variable may have (shell patterns)")
    quote_asset: str = Field("USDT", description="currency equity and PnL are reported in")
    paper_initial_balance: Decimal = Field(Decimal(10_000), gt=0, description="quote balance of a new paper account")
    paper_slippage_bps: Decimal = Field(Decimal(5), ge=0, le=500)
    paper_matcher_interval: float = Field(2.0, gt=0, le=3600, description="seconds between paper order checks")
    streams: bool = Field(True, description="websocket market streams for alerts, paper fills and pushes")
    stream_stale_seconds: float = Field(60.0, ge=1, le=3600, description="a stream silent this long reconnects")
    stream_ping_seconds: float = Field(10.0, ge=1, le=300, description="websocket keepalive ping interval")
    risk_max_order_notional: Decimal = Field(Decimal(1_000), gt=0, description="quote per order")
    risk_max_position_fraction: Decimal = Field(Decimal("0.5"), gt=0, le=1, description="of equity, per symbol")
    risk_max_total_exposure: Decimal = Field(Decimal(1), gt=0, le=100, description="of equity, all symbols")
    risk_max_open_orders: int = Field(10, ge=1, le=1000)
    risk_daily_loss_limit: Decimal = Field(Decimal(500), gt=0, description="quote, realised PnL + fees today")
    risk_allow_symbols: Annotated[tuple[str, ...], NoDecode] = ("*",)
    risk_deny_symbols: Annotated[tuple[str, ...], NoDecode] = ()
    risk_max_leverage: Decimal = Field(Decimal(3), ge=1, le=125)
    risk_per_trade_pct: Decimal = Field(Decimal(1), gt=0, le=100)
    risk_max_per_trade_pct: Decimal = Field(Decimal(2), gt=0, le=100)
    transport: Transport = "stdio"
    host: str = "127.0.0.1"
    port: int = Field(8765, ge=1, le=65535)
    auth_token: SecretStr | None = None
    http_header_timeout: float = Field(10.0, gt=0, le=300, description="seconds a client has to send request headers")
    allowed_hosts: Annotated[tuple[str, ...], NoDecode] = ()
    http_stateless: bool = Field(False, description="streamable HTTP without sessions, so any of several servers "
                                                     "behind a load balancer can answer any request")
    toolsets: Annotated[tuple[str, ...], NoDecode] = TOOLSET_NAMES
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    db_busy_timeout: float = Field(10.0, gt=0, le=600, description="seconds a write waits for another process's lock")
    db_synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    database_url: str | None = Field(None, description="postgresql://… to share one database between servers and "
                                                        "workers; unset = the SQLite file in home")
    redis_url: str | None = Field(None, description="redis://… to share AI endpoint health and budgets between "
                                                     "processes; unset = each process keeps its own")
    http_proxy: str | None = None
    https_proxy: str | None = None
    socks_proxy: str | None = None

    @field_validator("auth_token", "webhook_secret", mode="before")
    @classmethod
    def _blank_secret_is_none(cls, value: Any) -> Any:
        """An empty or blank secret is no secret (HEABLCOIN_AUTH_TOKEN='' must not count as a token)."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("database_url", mode="after")
    @classmethod
    def _postgresql_url(cls, value: str | None) -> str | None:
        return None if value is None or not value.strip() else check_database_url(value)

    @field_validator("redis_url", mode="after")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("home", mode="after")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("exchange", mode="before")
    @classmethod
    def _normalise_exchange(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().lower()
            if not value or not value.replace("_", "").isalnum():
                raise ValueError("should be a ccxt exchange id such as 'binance', or 'sim'")
        return value

    @field_validator("quote_asset", "risk_allow_symbols", "risk_deny_symbols", mode="after")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else tuple(v.upper() for v in value)

    @field_validator("trading_mode", "market_type", "transport", "log_level", "db_synchronous", mode="before")
    @classmethod
    def _normalise_choice(cls, value: Any, info: Any) -> Any:
        if not isinstance(value, str):
            return value
        value = value.strip()
        return value.upper() if info.field_name in ("log_level", "db_synchronous") else value.lower()

    @field_validator("allowed_hosts", "risk_allow_symbols", "risk_deny_symbols", "ai_key_env_patterns", mode="before")
    @classmethod
    def _split_hosts(cls, value: Any) -> Any:
        return split_csv(value) if isinstance(value, str) else value

    @field_validator("toolsets", mode="before")
    @classmethod
    def _split_toolsets(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = split_csv(value.lower())
            if not value or value == ["all"]:
                return TOOLSET_NAMES
        return value

    @field_validator("toolsets", mode="after")
    @classmethod
    def _known_toolsets(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [name for name in value if name not in TOOLSET_NAMES]
        if unknown:
            raise ValueError(f"unknown toolset(s) {', '.join(unknown)}; allowed: {', '.join(TOOLSET_NAMES)}")
        return tuple(dict.fromkeys(value))

    @property
    def db_path(self) -> Path:
        return self.home / "heablcoin.db"

    @property
    def host_is_loopback(self) -> bool:
        return is_loopback(self.host)


def check_database_url(value: str) -> str:
    if not value.startswith(("postgresql://", "postgres://")):
        raise ValueError("must be a postgresql:// URL (leave it unset for the embedded SQLite database)")
    return value


def split_csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def env_files(environ: Mapping[str, str]) -> tuple[Path, ...]:
    """The .env files read, lowest priority first: HEABLCOIN_HOME/.env, then ./.env."""
    home = Path(environ.get(f"{ENV_PREFIX}HOME", DEFAULT_HOME)).expanduser()
    return (home / ".env", Path(".env"))


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build Settings from the environment and .env files.

    Raises:
        ConfigError: naming every invalid variable and what it accepts.
    """
    environ = os.environ if environ is None else environ
    try:
        return Settings(_env_file=env_files(environ), **overrides)  # type: ignore[call-arg]
    except ValidationError as exc:
        raise config_error(exc) from None
    except SettingsError as exc:  # a value that is not even JSON; its text may hold a secret, so not shown
        field = re.search(r'field "(\w+)"', str(exc))
        name = f"{ENV_PREFIX}{field[1].upper()}" if field else "a setting"
        raise ConfigError(f"invalid configuration: {name} is not valid JSON (value not shown)",
                          hint="Fix it in the environment or .env; `heablcoin-mcp doctor` shows every setting."
                          ) from None


def config_error(exc: ValidationError) -> ConfigError:
    problems = []
    for err in exc.errors(include_url=False):
        field = str(err["loc"][0]) if err["loc"] else "settings"
        message = err["msg"].removeprefix("Value error, ")
        problems.append(f"{ENV_PREFIX}{field.upper()}: {message} (got {_shown(field, err.get('input'))})")
    return ConfigError(
        "invalid configuration: " + "; ".join(problems),
        hint="Fix these variables in the environment or .env; `heablcoin-mcp doctor` shows every setting.",
        details={"problems": problems},
    )


def _shown(field: str, value: Any) -> str:
    # ai_endpoints: a key pasted into the wrong field of the JSON must not be printed back.
    if field in ("auth_token", "webhook_secret", "ai_endpoints", "database_url", "redis_url") or "proxy" in field:
        return "<hidden>"
    return repr(value)
