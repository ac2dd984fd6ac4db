"""LLM endpoints: validated, persisted in SQLite, changed without a restart.

An endpoint names the environment variable that holds its key (``api_key_env``); the key itself is
never a parameter, never stored, never printed. Because the server sends that key to ``base_url``,
``EndpointPolicy`` limits both: the variable must look like an AI key (``*_API_KEY`` unless the user
widens it) and never be one of the server's own settings or an exchange account's key; the URL must
not be link-local or a metadata service, nor private unless the user allows local models. Pointing
an endpoint somewhere from a tool (adding one, or a new base_url or key variable) also needs the
user's answer, spent in the same transaction; endpoints the user declares in the settings need none.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field

from heablcoin_mcp.config import ENV_VAR_NAME
from heablcoin_mcp.core.clock import Clock
from heablcoin_mcp.core.netguard import check_target
from heablcoin_mcp.core.redact import Redactor
from heablcoin_mcp.core.storage import Connection, IntegrityError, Row, Storage
from heablcoin_mcp.core.storage.consents import Consents
from heablcoin_mcp.errors import ConfirmationRequired, InvalidInput, NotFound

Provider = Literal["openai", "anthropic"]
NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,47}$")
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
        if not ENV_VAR_NAME.match(self.api_key_env):
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


def _no_other_secrets() -> Iterable[str]:
    return ()


@dataclass(frozen=True)
class EndpointPolicy:
    """Which key variables an endpoint may name and which hosts it may point at."""

    key_patterns: tuple[str, ...] = ("*_API_KEY",)
    allow_private: bool = False
    other_secrets: Callable[[], Iterable[str]] = _no_other_secrets  # e.g. the accounts' exchange key variables

    def check(self, endpoint: ApiEndpoint) -> None:
        """Raises InvalidInput for a key variable or a target the server must not use."""
        self.check_pointing(endpoint.base_url, endpoint.api_key_env)

    def check_pointing(self, base_url: str, api_key_env: str) -> None:
        self.check_key(api_key_env)
        check_target(base_url, what="base_url", allow_private=self.allow_private,
                     setting="HEABLCOIN_AI_ALLOW_PRIVATE")

    def check_key(self, name: str) -> None:
        if name.startswith("HEABLCOIN_"):
            raise InvalidInput(f"api_key_env {name} is one of the server's own settings, not an AI key")
        if name in set(self.other_secrets()):
            raise InvalidInput(f"api_key_env {name} holds an exchange account's key, not an AI key")
        if not any(fnmatchcase(name, pattern) for pattern in self.key_patterns):
            raise InvalidInput(f"api_key_env {name} does not look like an AI key variable "
                               f"({', '.join(self.key_patterns)})",
                               hint="Name the variable like DEEPSEEK_API_KEY, or the user can widen "
                                    "HEABLCOIN_AI_KEY_ENV_PATTERNS.")


def pointing(name: str, base_url: str, api_key_env: str) -> str:
    """What the user's consent to send a key somewhere is bound to."""
    return f"endpoint:{name}|{base_url.rstrip('/')}|{api_key_env}"


class EndpointStore:
    def __init__(self, db: Storage, clock: Clock, consents: Consents,
                 policy: EndpointPolicy | None = None, redactor: Redactor | None = None) -> None:
        self.db = db
        self.clock = clock
        self.consents = consents
        self.policy = policy or EndpointPolicy()
        self.redactor = redactor
        self.version = 0  # bumped on every change, so the manager sees edits at once

    def add(self, endpoint: ApiEndpoint, *, source: str = "tool", replace: bool = False,
            consent: str | None = None) -> ApiEndpoint:
        """Store an endpoint. From a tool (``source="tool"``) it needs the user's ``consent``.

        Raises:
            InvalidInput: a bad field, key variable or target. ConfirmationRequired: no (valid) consent.
        """
        endpoint = endpoint.checked()
        self.policy.check(endpoint)
        if self.redactor is not None:
            self.redactor.watch(endpoint.api_key_env)
        now = self.clock.now()
        values = [getattr(endpoint, f) for f in FIELDS]
        with self.db.write() as conn:
            if source == "tool":
                if self.exists(endpoint.name):
                    raise InvalidInput(f"an endpoint named {endpoint.name!r} already exists",
                                       hint="Use update_api_endpoint to change it.")
                self._spend(conn, consent, endpoint)
            try:
                upsert = (" ON CONFLICT (name) DO UPDATE SET " + ", ".join(
                    f"{f} = excluded.{f}" for f in (*FIELDS, "source", "updated_at"))) if replace else ""
                conn.execute(
                    f"INSERT INTO api_endpoints (name, {', '.join(FIELDS)}, source, created_at, updated_at) "
                    f"VALUES ({', '.join('?' * (len(FIELDS) + 4))}){upsert}",
                    (endpoint.name, *values, source, now, now))
            except IntegrityError:
                raise InvalidInput(f"an endpoint named {endpoint.name!r} already exists",
                                   hint="Use update_api_endpoint to change it.") from None
        self.version += 1
        return endpoint

    def update(self, name: str, consent: str | None = None, **changes: object) -> ApiEndpoint:
        """Change an endpoint; a new base_url or key variable needs the user's ``consent``.

        Raises:
            NotFound, InvalidInput, ConfirmationRequired: as for ``add``.
        """
        current = self.get(name)
        unknown = sorted(set(changes) - set(FIELDS))
        if unknown:
            raise InvalidInput(f"unknown endpoint field(s): {', '.join(unknown)}")
        updated = ApiEndpoint.model_validate(current.model_dump() | changes).checked()
        repointed = (updated.base_url, updated.api_key_env) != (current.base_url, current.api_key_env)
        if repointed:
            self.policy.check(updated)
            if self.redactor is not None:
                self.redactor.watch(updated.api_key_env)
        with self.db.write() as conn:
            if repointed:
                self._spend(conn, consent, updated)
            conn.execute(f"UPDATE api_endpoints SET {', '.join(f'{f} = ?' for f in FIELDS)}, updated_at = ? "
                         "WHERE name = ?", (*[getattr(updated, f) for f in FIELDS], self.clock.now(), name))
        self.version += 1
        return updated

    def _spend(self, conn: Connection, consent: str | None, endpoint: ApiEndpoint) -> None:
        if consent is None:
            raise ConfirmationRequired(
                f"sending the key in {endpoint.api_key_env} to {endpoint.base_url} needs the user's confirmation",
                hint="Ask in a client that supports elicitation, or the user declares the endpoint in "
                     "HEABLCOIN_AI_ENDPOINTS.")
        self.consents.spend(conn, consent, pointing(endpoint.name, endpoint.base_url, endpoint.api_key_env))

    def remove(self, name: str) -> None:
        self.get(name)
        with self.db.write() as conn:
            conn.execute("DELETE FROM api_endpoints WHERE name = ?", (name,))
        self.version += 1

    def exists(self, name: str) -> bool:
        return self.db.conn.execute("SELECT 1 FROM api_endpoints WHERE name = ?", (name,)).fetchone() is not None

    def new_target(self, name: str, base_url: str | None, api_key_env: str | None) -> tuple[str, str] | None:
        """The (base_url, key variable) an add or update would newly send a key to, None when nothing
        new is pointed at or the policy refuses it anyway (the add or update then reports why)."""
        current = self.get(name) if self.exists(name) else None
        url = (base_url or (current.base_url if current else "")).rstrip("/")
        key = api_key_env or (current.api_key_env if current else "")
        if current is not None and (url, key) == (current.base_url, current.api_key_env):
            return None
        try:
            self.policy.check_pointing(url, key)
        except InvalidInput:
            return None
        return url, key

    def get(self, name: str) -> ApiEndpoint:
        row = self.db.conn.execute("SELECT * FROM api_endpoints WHERE name = ?", (name,)).fetchone()
        if row is None:
            names = [e.name for e in self.all()]
            raise NotFound(f"unknown endpoint {name!r}", hint=f"Endpoints: {', '.join(names) or 'none yet'}.")
        return _endpoint(row)

    def all(self) -> list[ApiEndpoint]:
        rows = self.db.conn.execute("SELECT * FROM api_endpoints ORDER BY priority, name").fetchall()
        return [_endpoint(r) for r in rows]


def _endpoint(row: Row) -> ApiEndpoint:
    return ApiEndpoint(name=row["name"], **{f: row[f] for f in FIELDS if f != "enabled"}, enabled=bool(row["enabled"]))
