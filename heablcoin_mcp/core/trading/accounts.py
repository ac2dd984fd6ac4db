"""Named trading accounts: paper (default) or live, with the NAMES of their key variables only."""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field

from heablcoin_mcp.config import ENV_VAR_NAME
from heablcoin_mcp.core.books import ledger
from heablcoin_mcp.core.clock import Clock
from heablcoin_mcp.core.redact import Redactor
from heablcoin_mcp.core.storage import Connection, IntegrityError, Row, Storage
from heablcoin_mcp.errors import InvalidInput, NotFound

DEFAULT_ACCOUNT = "default"
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
Mode = Literal["paper", "live"]


class Account(BaseModel):
    name: str
    mode: Mode
    exchange: str
    weight: float
    group: str | None
    api_key_env: str | None = Field(None, description="name of the variable holding the key (never the key)")
    secret_env: str | None = None
    password_env: str | None = None
    keys_set: dict[str, bool] = Field(default_factory=dict, description="which key variables are set")


class AccountService:
    def __init__(self, db: Storage, clock: Clock, environ: Mapping[str, str], *, default_exchange: str,
                 quote_asset: str, initial_balance: Decimal, redactor: Redactor | None = None) -> None:
        self.db = db
        self.redactor = redactor
        self.clock = clock
        self.environ = environ
        self.default_exchange = default_exchange
        self.quote_asset = quote_asset
        self.initial_balance = initial_balance

    def ensure_default(self) -> None:
        with self.db.write() as conn:
            if conn.execute("SELECT 1 FROM accounts WHERE name = ?", (DEFAULT_ACCOUNT,)).fetchone() is None:
                self._insert(conn, DEFAULT_ACCOUNT, "paper", self.default_exchange, None, None, None, 1.0, None)

    def add(self, name: str, exchange: str, mode: Mode, api_key_env: str | None = None, secret_env: str | None = None,
            password_env: str | None = None, weight: float = 1.0, group: str | None = None) -> Account:
        """Raises InvalidInput for a bad name, mode, weight or key variable name, or a duplicate."""
        name = name.strip().lower()
        if not NAME_PATTERN.match(name):
            raise InvalidInput(f"account name {name!r} must be 1-32 of a-z, 0-9, '_' or '-'")
        if mode not in ("paper", "live"):
            raise InvalidInput(f"mode must be 'paper' or 'live', got {mode!r}")
        if not 0 < weight <= 1000:
            raise InvalidInput(f"weight must be in (0, 1000], got {weight}")
        envs = {"api_key_env": api_key_env, "secret_env": secret_env, "password_env": password_env}
        for field, value in envs.items():
            if value is not None and not ENV_VAR_NAME.match(value):
                raise InvalidInput(f"{field} must be the NAME of an environment variable (e.g. BINANCE_API_KEY), "
                                   "never the key itself", hint="Put the key in the server's environment or .env.")
        if mode == "live" and not (api_key_env and secret_env):
            raise InvalidInput("a live account needs api_key_env and secret_env (the variable names)")
        exchange = exchange.strip().lower()
        if self.redactor is not None:
            self.redactor.watch(api_key_env, secret_env, password_env)
        with self.db.write() as conn:
            try:
                self._insert(conn, name, mode, exchange, api_key_env, secret_env, password_env, weight, group)
            except IntegrityError:
                raise InvalidInput(f"account {name!r} already exists") from None
        return self.get(name)

    def _insert(self, conn: Connection, name: str, mode: str, exchange: str, api_key_env: str | None,
                secret_env: str | None, password_env: str | None, weight: float, group: str | None) -> None:
        conn.execute(
            "INSERT INTO accounts (name, mode, exchange, api_key_env, secret_env, password_env, weight, grp,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (name, mode, exchange, api_key_env, secret_env, password_env, weight, group, self.clock.now()),
        )
        if mode == "paper":
            ledger.credit(conn, name, self.quote_asset, self.initial_balance)

    def get(self, name: str) -> Account:
        """Raises NotFound naming the accounts that exist."""
        row = self.db.conn.execute("SELECT * FROM accounts WHERE name = ?", (name.strip().lower(),)).fetchone()
        if row is None:
            names = [r[0] for r in self.db.conn.execute("SELECT name FROM accounts ORDER BY name")]
            raise NotFound(f"unknown account {name!r}", hint=f"Accounts: {', '.join(names) or 'none'}.")
        return self._account(row)

    def list(self, group: str | None = None) -> list[Account]:
        rows = self.db.conn.execute("SELECT * FROM accounts ORDER BY name").fetchall()
        accounts = [self._account(r) for r in rows]
        return [a for a in accounts if group is None or a.group == group]

    def key_variables(self) -> set[str]:
        """Names of every variable that holds an account's exchange credentials."""
        rows = self.db.conn.execute("SELECT api_key_env, secret_env, password_env FROM accounts").fetchall()
        return {name for row in rows for name in row if name}

    def _account(self, row: Row) -> Account:
        envs = {k: row[k] for k in ("api_key_env", "secret_env", "password_env")}
        return Account(name=row["name"], mode=row["mode"], exchange=row["exchange"], weight=row["weight"],
                       group=row["grp"], **envs,
                       keys_set={k: bool(self.environ.get(v)) for k, v in envs.items() if v})
