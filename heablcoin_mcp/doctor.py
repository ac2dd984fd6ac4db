"""`heablcoin-mcp doctor` and the `validate_config` tool: every setting, checked and masked."""

from __future__ import annotations

import importlib.util
import os
import tempfile
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel

from heablcoin_mcp.config import ENV_PREFIX, ENV_VAR_NAME, Settings
from heablcoin_mcp.core.redact import mask_url
from heablcoin_mcp.core.storage import Database, PostgresDatabase
from heablcoin_mcp.errors import ConfigError

Level = Literal["required", "recommended", "optional"]
CheckStatus = Literal["ok", "warn", "error"]
MIN_TOKEN_LENGTH = 16


class ConfigCheck(BaseModel):
    variable: str
    level: Level
    status: CheckStatus
    value: str | None
    message: str


class ConfigReport(BaseModel):
    ok: bool
    errors: int
    warnings: int
    checks: list[ConfigCheck]

    @classmethod
    def of(cls, checks: list[ConfigCheck]) -> ConfigReport:
        errors = sum(c.status == "error" for c in checks)
        return cls(ok=errors == 0, errors=errors, warnings=sum(c.status == "warn" for c in checks),
                   checks=checks)


def mask_secret(secret: str | None) -> str | None:
    """Show enough of a secret to recognise it, never enough to use it: ``sk-…abcd``."""
    if not secret:
        return None
    if len(secret) < 12:
        return "…" + "*" * 4
    return f"{secret[:3]}…{secret[-4:]}"


def report_for_error(error: ConfigError) -> ConfigReport:
    problems = error.details.get("problems", [error.message])
    checks = [
        ConfigCheck(variable=p.split(":", 1)[0], level="required", status="error", value=None,
                    message=p.split(":", 1)[-1].strip())
        for p in problems
    ]
    return ConfigReport.of(checks)


def diagnose(settings: Settings, environ: Mapping[str, str] | None = None) -> ConfigReport:
    """Check every setting. ``environ`` (the server's environment) tells whether key variables are set."""
    environ = os.environ if environ is None else environ
    return ConfigReport.of([
        _check_home(settings),
        _check_database(settings),
        _check(settings, "redis_url", "optional", mask_url(settings.redis_url),
               "AI endpoint health and budgets, and exchange request budgets, shared through Redis"
               if settings.redis_url else "not set: each process keeps its own AI health and rate budgets"),
        _check_trading_mode(settings),
        _check_exchange(settings),
        _check_transport(settings),
        _check_auth_token(settings),
        _check_talib(),
        _check_ai_endpoints(settings, environ),
        _check(settings, "worker_concurrency", "optional", str(settings.worker_concurrency),
               "task worker slots in the server process" if settings.worker_concurrency else
               "no task worker in the server process: run `heablcoin-mcp worker`"),
        _check(settings, "webhook_secret", "optional",
               mask_secret(settings.webhook_secret.get_secret_value()) if settings.webhook_secret else None,
               "signs task callbacks" if settings.webhook_secret else "not set: tasks cannot have callbacks"),
        _check(settings, "toolsets", "optional", ", ".join(settings.toolsets), "toolsets exposed to clients"),
        _check(settings, "log_level", "optional", settings.log_level, "logs go to stderr"),
        _check(settings, "db_synchronous", "optional", settings.db_synchronous,
               "FULL survives power loss at some write cost; NORMAL survives process crashes"),
        *(_check(settings, name, "optional", mask_url(getattr(settings, name)), "proxy for exchange traffic")
          for name in ("http_proxy", "https_proxy", "socks_proxy")),
    ])


def _check(settings: Settings, field: str, level: Level, value: str | None, message: str,
           status: CheckStatus = "ok") -> ConfigCheck:
    return ConfigCheck(variable=ENV_PREFIX + field.upper(), level=level, status=status, value=value,
                       message=message)


def _check_home(settings: Settings) -> ConfigCheck:
    home = settings.home
    try:
        home.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=home, prefix=".doctor-"):
            pass
    except OSError as exc:
        return _check(settings, "home", "required", str(home), f"not writable: {exc.strerror}", "error")
    if settings.db_path.exists():
        try:
            Database(settings.db_path).verify(thorough=True)
        except ConfigError as exc:
            return _check(settings, "home", "required", str(home), f"{exc.message}. {exc.hint}", "error")
    return _check(settings, "home", "required", str(home), f"writable; database at {settings.db_path}")


def _check_database(settings: Settings) -> ConfigCheck:
    """PostgreSQL when configured: reachable, and a schema this build can use (read only)."""
    if settings.database_url is None:
        return _check(settings, "database_url", "optional", None, f"not set: the SQLite file {settings.db_path}")
    shown = mask_url(settings.database_url)
    database = PostgresDatabase(settings.database_url)
    try:
        database.verify()
        version = database.schema_version()
    except ConfigError as exc:
        return _check(settings, "database_url", "optional", shown, f"{exc.message}. {exc.hint}", "error")
    finally:
        database.close()
    return _check(settings, "database_url", "optional", shown,
                  f"PostgreSQL reachable, schema v{version}" if version else "PostgreSQL reachable, empty "
                  "(the first start creates the tables)")


def _check_trading_mode(settings: Settings) -> ConfigCheck:
    if settings.trading_mode == "paper":
        return _check(settings, "trading_mode", "required", "paper", "paper trading: no real orders")
    return _check(settings, "trading_mode", "required", "live",
                  "LIVE trading: orders on live accounts are sent to their exchange (each one confirmed by the user)",
                  "warn")


def _check_exchange(settings: Settings) -> ConfigCheck:
    if settings.exchange == "sim":
        return _check(settings, "exchange", "required", "sim", "offline simulated market (no network needed)")
    import ccxt  # lazy: ccxt takes about a second to import

    if settings.exchange not in ccxt.exchanges:
        return _check(settings, "exchange", "required", settings.exchange,
                      "not a ccxt exchange id (e.g. binance, okx, bybit, kraken) and not 'sim'", "error")
    return _check(settings, "exchange", "required", settings.exchange, "ccxt exchange; needs network access")


def _check_transport(settings: Settings) -> ConfigCheck:
    where = f"{settings.transport} on {settings.host}:{settings.port}"
    if settings.transport == "stdio":
        return _check(settings, "transport", "required", "stdio", "stdio: the client launches the server")
    if not settings.host_is_loopback and settings.auth_token is None:
        return _check(settings, "transport", "required", where,
                      f"{ENV_PREFIX}HOST is not a loopback address: set {ENV_PREFIX}AUTH_TOKEN", "error")
    return _check(settings, "transport", "required", where, "HTTP transport")


def _check_auth_token(settings: Settings) -> ConfigCheck:
    token = settings.auth_token.get_secret_value() if settings.auth_token else None
    if token is None:
        return _check(settings, "auth_token", "recommended", None,
                      "not set: HTTP transports accept only loopback connections")
    if len(token) < MIN_TOKEN_LENGTH:
        return _check(settings, "auth_token", "recommended", mask_secret(token),
                      f"shorter than {MIN_TOKEN_LENGTH} characters; use a long random token", "warn")
    return _check(settings, "auth_token", "recommended", mask_secret(token), "bearer token required on HTTP")


def _check_ai_endpoints(settings: Settings, environ: Mapping[str, str]) -> ConfigCheck:
    declared = settings.ai_endpoints
    names = ", ".join(str(e.get("name"))[:48] for e in declared) or None
    pasted = [str(e.get("name"))[:48] for e in declared if not ENV_VAR_NAME.match(str(e.get("api_key_env")))]
    if pasted:  # never print it: it may be the key itself
        return _check(settings, "ai_endpoints", "optional", names,
                      f"api_key_env of {', '.join(pasted)} is not a variable NAME (value hidden: it may be the key)",
                      "error")
    missing = sorted({str(e.get("api_key_env")) for e in declared if not environ.get(str(e.get("api_key_env")))})
    if missing:
        return _check(settings, "ai_endpoints", "optional", names,
                      f"key variable(s) not set: {', '.join(missing)}", "warn")
    return _check(settings, "ai_endpoints", "optional", names,
                  "AI endpoints declared at start-up" if declared else "none declared (add_api_endpoint adds some)")


def _check_talib() -> ConfigCheck:
    if importlib.util.find_spec("talib") is None:
        return ConfigCheck(variable="TA-Lib", level="recommended", status="warn", value=None,
                           message="TA-Lib not importable: indicators fall back to the `ta` library")
    return ConfigCheck(variable="TA-Lib", level="recommended", status="ok", value="installed",
                       message="indicator engine and reference")


def render(report: ConfigReport) -> str:
    lines = []
    for level in ("required", "recommended", "optional"):
        lines.append(f"{level}:")
        for c in (c for c in report.checks if c.level == level):
            lines.append(f"  [{c.status:5}] {c.variable} = {c.value if c.value is not None else '-'}  {c.message}")
    verdict = "OK" if report.ok else "FAILED"
    lines.append(f"{verdict}: {report.errors} error(s), {report.warnings} warning(s)")
    return os.linesep.join(lines)
