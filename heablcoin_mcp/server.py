"""build_server(app): the MCP surface over one App."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import anyio
from mcp import MCPError
from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult, InputRequiredResult
from mcp.types import Tool as MCPTool
from pydantic import AnyUrl

from heablcoin_mcp import __version__
from heablcoin_mcp.app import App
from heablcoin_mcp.core.redact import Redactor
from heablcoin_mcp.tools import _envelope, _schemas, accounts, ai, analysis, market, risk, system, tasks, trading

INSTRUCTIONS = """\
heablcoin-mcp is a careful crypto trading assistant's toolbox. Paper trading is the default; live
orders need the user's explicit configuration and a confirmation per order. Errors come back as
{"error": {"code", "message", "hint", "retryable"}}: read the hint before retrying. Start with
get_system_health to see the trading mode and whether the market is simulated."""

# Every name in config.TOOLSET_NAMES, mapped to its register(); a surface test keeps the two equal.
TOOLSETS: dict[str, Callable[[MCPServer, App], None]] = {
    "accounts": accounts.register,
    "ai": ai.register,
    "analysis": analysis.register,
    "market": market.register,
    "risk": risk.register,
    "system": system.register,
    "tasks": tasks.register,
    "trading": trading.register,
}


class HeablServer(MCPServer[App]):
    """MCPServer whose every tool call goes through the one envelope (tools/_envelope.py), and whose
    every result and resource is scrubbed of configured secrets on the way out."""

    def __init__(self, *args: Any, redactor: Redactor, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.redactor = redactor
        self._listed: list[MCPTool] | None = None

    async def list_tools(self) -> list[MCPTool]:
        """The tools with compact schemas (tools/_schemas.py), built once: tools do not change after start."""
        if self._listed is None:
            self._listed = [tool.model_copy(update={
                "description": _schemas.plain(tool.description),
                "input_schema": _schemas.without_titles(tool.input_schema),
                "output_schema": _schemas.shallow(tool.output_schema) if tool.output_schema else None,
            }) for tool in await super().list_tools()]
        return self._listed

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[App, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        try:
            outcome = await super().call_tool(name, arguments, context)
        except MCPError:
            raise
        except Exception as exc:
            outcome = _envelope.error_result(_envelope.translate(name, exc))
        return _envelope.scrubbed(_envelope.as_tool_result(name, outcome), self.redactor)

    async def read_resource(
        self, uri: AnyUrl | str, context: Context[App, Any] | None = None
    ) -> Iterable[ReadResourceContents] | InputRequiredResult:
        contents = await super().read_resource(uri, context)
        if isinstance(contents, InputRequiredResult):
            return contents
        return [replace(c, content=self.redactor.scrub(c.content)) if isinstance(c.content, str) else c
                for c in contents]


def build_server(app: App) -> HeablServer:
    @asynccontextmanager
    async def lifespan(_: MCPServer[App]) -> AsyncIterator[App]:
        async with app, anyio.create_task_group() as background:
            background.start_soon(app.run_background)
            yield app
            background.cancel_scope.cancel()

    server = HeablServer(
        "heablcoin-mcp",
        redactor=app.redactor,
        title="Heablcoin crypto trading assistant",
        instructions=INSTRUCTIONS,
        version=__version__,
        lifespan=lifespan,
        log_level=app.settings.log_level,
    )
    for name in app.settings.toolsets:
        TOOLSETS[name](server, app)
    return server
