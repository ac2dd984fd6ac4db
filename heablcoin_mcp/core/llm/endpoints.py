"""LLM endpoints: validated, persisted in SQLite, changed without a restart.

An endpoint names the environment variable that holds its key (``api_key_env``); the key itself is
never a parameter, never stored, never printed.
"""

from __future__ import annotations

import re
import sqlite3
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field

from heablcoin_mcp.core.clock import Clock
from heablcoin_mcp.core.storage import Database
from heablcoin_mcp.errors import InvalidInput, NotFound

Provider = Literal["openai", "anthropic"]
NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,47}$")
ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]{0,63}$")
FIELDS = ("provider", "base_url", "model", "api_key_env", "priority", "weight", "max_requests_per_minute",
          "max_tokens_per_minute", "timeout", "enabled")


class ApiEndpoint(BaseModel):
    name: str
    provider: Provider = "openai"
    base_url: str
    model: str
    api_key_env: str = Field(description="NAME of the environment variable holding the key")
    priority: int = Field(1, description="1 is tried first")
    weight: float = 1.0
    max_requests_per_minute: int = 60
    max_tokens_per_minute: int | None = None
    timeout: float = 30.0
    enabled: bool = True

    def checked(self) -> ApiEndpoint:
        """Raises InvalidInput naming the first bad field."""
        if not NAME.match(self.name):
            raise InvalidInput(f"endpoint name {self.name!r} must be 1-48 of letters, digits, '_', '.', '-'")
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise InvalidInput(f"base_url {self.base_url!r} must be an http(s) URL such as https://api.openai.com/v1")
        if parts.username or parts.password:
            raise InvalidInput("base_url must not contain credentials", hint="Put the key in api_key_env's variable.")
        if not ENV_NAME.match(self.api_key_env):
            raise InvalidInput("api_key_env must be the NAME of an environment variable (e.g. DEEPSEEK_API_KEY), "
                               "never the key itself")
        if not self.model.strip() or len(self.model) > 128:
            raise InvalidInput("model must be a non-empty model name")
        bounds = (("priority", 1, 1000), ("weight", 0.001, 1000), ("max_requests_per_minute", 1, 100_000),
                  ("timeout", 0.1, 600))
        for field, low, high in bounds:
            if not low <= getattr(self, field) <= high:
                raise InvalidInput(f"{field} must be between {low} and {high}, got {getattr(self, field)}")
        if self.max_tokens_per_minute is not None and not 1 <= self.max_tokens_per_minute <= 100_000_000:
            raise InvalidInput("max_tokens_per_minute must be positive")
        return self.model_copy(update={"base_url": self.base_url.rstrip("/")})


class EndpointStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock
        self.version = 0  # bumped on every change, so the manager sees edits at once

    def add(self, endpoint: ApiEndpoint, *, source: str = "tool", replace: bool = False) -> ApiEndpoint:
        endpoint = endpoint.checked()
        now = self.clock.now()
        values = [getattr(endpoint, f) for f in FIELDS]
        with self.db.write() as conn:
            try:
                conn.execute(
                    f"INSERT {'OR REPLACE ' if replace else ''}INTO api_endpoints (name, {', '.join(FIELDS)}, "
                    f"source, created_at, updated_at) VALUES ({', '.join('?' * (len(FIELDS) + 4))})",
                    (endpoint.name, *values, source, now, now))
            except sqlite3.IntegrityError:
                raise InvalidInput(f"an endpoint named {endpoint.name!r} already exists",
                                   hint="Use update_api_endpoint to change it.") from None
        self.version += 1
        return endpoint

    def update(self, name: str, **changes: object) -> ApiEndpoint:
        current = self.get(name)
        unknown = sorted(set(changes) - set(FIELDS))
        if unknown:
            raise InvalidInput(f"unknown endpoint field(s): {', '.join(unknown)}")
        updated = ApiEndpoint.model_validate(current.model_dump() | changes).checked()
        with self.db.write() as conn:
            conn.execute(f"UPDATE api_endpoints SET {', '.join(f'{f} = ?' for f in FIELDS)}, updated_at = ? "
                         "WHERE name = ?", (*[getattr(updated, f) for f in FIELDS], self.clock.now(), name))
        self.version += 1
        return updated

    def remove(self, name: str) -> None:
        self.get(name)
        with self.db.write() as conn:
            conn.execute("DELETE FROM api_endpoints WHERE name = ?", (name,))
        self.version += 1

    def get(self, name: str) -> ApiEndpoint:
        row = self.db.conn.execute("SELECT * FROM api_endpoints WHERE name = ?", (name,)).fetchone()
        if row is None:
            names = [e.name for e in self.all()]
            raise NotFound(f"unknown endpoint {name!r}", hint=f"Endpoints: {', '.join(names) or 'none yet'}.")
        return _endpoint(row)

    def all(self) -> list[ApiEndpoint]:
        rows = self.db.conn.execute("SELECT * FROM api_endpoints ORDER BY priority, name").fetchall()
        return [_endpoint(r) for r in rows]


def _endpoint(row: sqlite3.Row) -> ApiEndpoint:
    return ApiEndpoint(name=row["name"], **{f: row[f] for f in FIELDS if f != "enabled"}, enabled=bool(row["enabled"]))
