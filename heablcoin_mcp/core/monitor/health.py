"""Health of the running server: one entry per component, each with its own status."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Protocol

from pydantic import BaseModel, Field

from heablcoin_mcp.errors import InvalidInput

Status = Literal["ok", "degraded", "down"]


class ComponentHealth(BaseModel):
    name: str
    status: Status
    detail: str = ""
    metrics: dict[str, float | int | str | None] = Field(default_factory=dict)


class HealthReporter(Protocol):
    def health(self) -> ComponentHealth: ...


class DatabaseInfo(BaseModel):
    path: str = Field(description="the SQLite file, or the PostgreSQL URL without its password")
    engine: Literal["sqlite", "postgresql"]
    journal_mode: str | None = None
    synchronous: str | None = None
    schema_version: int
    size_bytes: int


class SystemHealth(BaseModel):
    status: Status = Field(description="worst status over all components")
    version: str
    uptime_seconds: float
    transport: str
    trading_mode: str
    exchange: str
    simulated_market: bool
    database: DatabaseInfo | None = Field(description="null when the database cannot be read")
    toolsets: list[str]
    components: list[ComponentHealth]

    def only(self, names: list[str] | None) -> SystemHealth:
        """This report narrowed to the named components.

        Raises:
            InvalidInput: a name is not one of the components.
        """
        if not names:
            return self
        known = [c.name for c in self.components]
        unknown = [n for n in names if n not in known]
        if unknown:
            raise InvalidInput(f"unknown component(s): {', '.join(unknown)}",
                               hint=f"Known components: {', '.join(known)}.")
        return self.model_copy(update={"components": [c for c in self.components if c.name in names]})


def overall(components: list[ComponentHealth]) -> Status:
    statuses = {c.status for c in components}
    if "down" in statuses:
        return "down"
    return "degraded" if "degraded" in statuses else "ok"


class HealthMonitor:
    """Assembles one SystemHealth from each component's own report (components never raise)."""

    def __init__(
        self,
        *,
        facts: dict[str, object],
        uptime: Callable[[], float],
        database: Callable[[], tuple[DatabaseInfo | None, ComponentHealth]],
        components: list[Callable[[], ComponentHealth]],
    ) -> None:
        """``facts`` are the fixed fields of the report: version, transport, trading_mode, exchange,
        simulated_market, toolsets."""
        self.facts, self.uptime, self.database, self.components = facts, uptime, database, components

    def report(self) -> SystemHealth:
        database, database_health = self.database()
        components = [database_health, *(component() for component in self.components)]
        return SystemHealth.model_validate({**self.facts, "status": overall(components),
                                            "uptime_seconds": round(self.uptime(), 3), "database": database,
                                            "components": components})
