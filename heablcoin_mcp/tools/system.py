"""Toolset `system`: is the server healthy, and is it configured the way the user thinks?"""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import MCPServer
from pydantic import Field

from heablcoin_mcp.app import App
from heablcoin_mcp.core.monitor.health import SystemHealth
from heablcoin_mcp.doctor import ConfigReport, diagnose
from heablcoin_mcp.tools._types import READ_ONLY, NameList


def register(server: MCPServer, app: App) -> None:
    @server.tool(title="System health", annotations=READ_ONLY)
    async def get_system_health(
        components: Annotated[
            NameList | None,
            Field(description="Only these components (e.g. ['database']); omit for all."),
        ] = None,
    ) -> SystemHealth:
        """Report whether heablcoin-mcp is working: version, uptime, transport, trading mode (paper or
        live), exchange (or 'sim' for the offline simulated market), database file, enabled toolsets, and
        one status entry per component (ok / degraded / down). Use it first when a tool misbehaves or
        before trading, to confirm the mode and the market source."""
        return app.monitor.report().only(components)

    @server.tool(title="Validate configuration", annotations=READ_ONLY)
    def validate_config() -> ConfigReport:
        """Check every HEABLCOIN_* setting of the running server, grouped as required / recommended /
        optional, with status ok / warn / error and a one-line explanation each. Secrets are masked
        (e.g. 'sk-…abcd'). Same report as the `heablcoin-mcp doctor` command. Use it when the user asks
        how the server is set up or why something is refused."""
        return diagnose(app.settings, app.environ)
