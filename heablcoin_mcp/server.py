"""build_server(app): the MCP surface over one App."""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import anyio
from mcp import MCPError
from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, UnexpectedResourceError
from mcp.server.mcpserver.tools import Tool
from mcp.server.subscriptions import InMemorySubscriptionBus
from mcp.types import (
    INVALID_PARAMS,
    CallToolResult,
    GetPromptResult,
    Icon,
    InputRequiredResult,
    SetLevelRequestParams,
    SubscribeRequestParams,
    SubscriptionsListenRequestParams,
    ToolAnnotations,
    UnsubscribeRequestParams,
)
from mcp.types import Tool as MCPTool
from pydantic import AnyUrl, BaseModel

from heablcoin_mcp import __version__
from heablcoin_mcp.app import App
from heablcoin_mcp.core.changes import ChangeFeed
from heablcoin_mcp.core.monitor.metrics import Metrics
from heablcoin_mcp.core.redact import Redactor
from heablcoin_mcp.errors import HeablError, NotFound
from heablcoin_mcp.notifications import Pushes
from heablcoin_mcp.tools import (
    _envelope,
    _schemas,
    accounts,
    ai,
    analysis,
    completions,
    market,
    risk,
    system,
    tasks,
    trading,
)
from heablcoin_mcp.tools._catalogue import Catalogue

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
    every result and resource is scrubbed of configured secrets on the way out. A tool is built
    (argument model, schemas) when it is first needed: listed from a fresh build, or called."""

    def __init__(self, *args: Any, redactor: Redactor, metrics: Metrics, catalogue: Catalogue | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.redactor = redactor
        self.metrics = metrics
        self.catalogue = catalogue
        self._unbuilt: dict[str, Callable[[], None]] = {}
        self._names: list[str] = []
        self._listed: list[MCPTool] | None = None

    def add_tool(self, fn: Callable[..., Any], name: str | None = None, title: str | None = None,
                 description: str | None = None, annotations: ToolAnnotations | None = None,
                 icons: list[Icon] | None = None, meta: dict[str, Any] | None = None,
                 structured_output: bool | None = None) -> None:
        key = name or fn.__name__
        if key in self._names:
            raise ValueError(f"tool {key!r} is registered twice")
        self._names.append(key)
        self._unbuilt[key] = lambda: self._build_tool(fn, key, title, description, annotations, icons, meta,
                                                      structured_output)

    def _build_tool(self, fn: Callable[..., Any], name: str, title: str | None, description: str | None,
                    annotations: ToolAnnotations | None, icons: list[Icon] | None, meta: dict[str, Any] | None,
                    structured_output: bool | None) -> None:
        """A tool whose result is a model is registered without pydantic's output JSON schema (most of
        start-up): its published schema is the model's field names and enums (tools/_schemas.py), and
        results are still validated against the model (the SDK reads these fields on every call)."""
        returns = inspect.signature(fn, eval_str=True).return_annotation
        if structured_output is not None or not (isinstance(returns, type) and issubclass(returns, BaseModel)):
            return super().add_tool(fn, name, title, description, annotations, icons, meta, structured_output)
        super().add_tool(fn, name, title, description, annotations, icons, meta, structured_output=False)
        metadata = self._tool_manager.get_tool(name).fn_metadata  # type: ignore[union-attr]
        metadata.output_model = returns
        metadata.output_schema = _schemas.fields_of(returns)

    def ensure_built(self, name: str) -> None:
        if (build := self._unbuilt.pop(name, None)) is not None:
            build()

    def built_tools(self) -> list[Tool]:
        for name in list(self._unbuilt):
            self.ensure_built(name)
        return self._tool_manager.list_tools()

    async def list_tools(self) -> list[MCPTool]:
        """The tools with compact schemas (tools/_schemas.py), as kept from an earlier start of the
        same code (tools/_catalogue.py) or built now: tools do not change after start."""
        if self._listed is None and self.catalogue is not None:
            self._listed = self.catalogue.read(self._names)
        if self._listed is None:
            self.built_tools()
            self._listed = [tool.model_copy(update={
                "description": _schemas.plain(tool.description),
                "input_schema": _schemas.without_titles(tool.input_schema),
                "output_schema": _schemas.shallow(tool.output_schema) if tool.output_schema else None,
            }) for tool in await super().list_tools()]
            if self.catalogue is not None:
                self.catalogue.write(self._listed)
        return self._listed

    def _tool_input_schema(self, name: str) -> dict[str, Any] | None:
        self.ensure_built(name)  # the 2026-era HTTP transport checks Mcp-Param headers before the call
        return super()._tool_input_schema(name)

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[App, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        began = time.perf_counter()
        try:
            self.ensure_built(name)
            outcome = await super().call_tool(name, arguments, context)
        except MCPError:
            self.metrics.count("heablcoin_tool_calls", name, "protocol_error")
            raise
        except Exception as exc:
            outcome = _envelope.error_result(_envelope.translate(name, exc))
        result = _envelope.scrubbed(_envelope.as_tool_result(name, outcome), self.redactor)
        self.metrics.count("heablcoin_tool_calls", name, _envelope.outcome_of(result))
        self.metrics.observe("heablcoin_tool_call_seconds", time.perf_counter() - began, name)
        return result

    async def read_resource(
        self, uri: AnyUrl | str, context: Context[App, Any] | None = None
    ) -> Iterable[ReadResourceContents] | InputRequiredResult:
        try:
            contents = await super().read_resource(uri, context)
        except UnexpectedResourceError as exc:
            raise resource_error(exc, self.redactor) from exc
        if isinstance(contents, InputRequiredResult):
            return contents
        return [replace(c, content=self.redactor.scrub(c.content)) if isinstance(c.content, str) else c
                for c in contents]


    async def get_prompt(
        self, name: str, arguments: dict[str, Any] | None = None, context: Context[App, Any] | None = None
    ) -> GetPromptResult | InputRequiredResult:
        """An unknown prompt or a missing argument is the caller's mistake: invalid params, said plainly
        (the SDK answers them with code 0 and logs a traceback)."""
        try:
            return await super().get_prompt(name, arguments, context)
        except ValueError as exc:
            raise MCPError(INVALID_PARAMS, str(exc)) from exc

    def add_request_handler(self, method: str, params_type: Any, handler: Any) -> None:
        """For the 2025-era methods MCPServer has no decorator for (subscribe, setLevel)."""
        self._lowlevel_server.add_request_handler(method, params_type, handler)


def resource_error(exc: UnexpectedResourceError, redactor: Redactor) -> ResourceError:
    """A resource's own HeablError, told the client in its words (not found → invalid params) instead of
    an opaque internal error with a traceback in the log; scrubbed like every other output."""
    cause = exc.__cause__
    if not isinstance(cause, HeablError):
        return exc
    text = redactor.scrub(cause.message + (f" ({cause.hint})" if cause.hint else ""))
    return ResourceNotFoundError(text) if isinstance(cause, NotFound) else ResourceError(text)


def build_server(app: App) -> HeablServer:
    bus = InMemorySubscriptionBus()

    @asynccontextmanager
    async def lifespan(_: MCPServer[App]) -> AsyncIterator[App]:
        async with app, anyio.create_task_group() as background:
            background.start_soon(app.run_background)
            background.start_soon(pushes.run)
            yield app
            background.cancel_scope.cancel()

    server = HeablServer(
        "heablcoin-mcp",
        redactor=app.redactor,
        metrics=app.metrics,
        title="Heablcoin crypto trading assistant",
        instructions=INSTRUCTIONS,
        version=__version__,
        lifespan=lifespan,
        log_level=app.settings.log_level,
        subscriptions=bus,
        catalogue=Catalogue(app.settings.home / "cache" / "tools.json", app.settings.toolsets),
    )
    async def symbol_of(market: str) -> str:
        return (await app.market.market(market)).symbol

    pushes = Pushes(ChangeFeed(app.db), bus, app.redactor, server.read_resource, streams=app.streams,
                    symbol_of=symbol_of)
    server.add_request_handler("subscriptions/listen", SubscriptionsListenRequestParams, pushes.listen)
    server.add_request_handler("resources/subscribe", SubscribeRequestParams, pushes.subscribe)
    server.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, pushes.unsubscribe)
    server.add_request_handler("logging/setLevel", SetLevelRequestParams, pushes.set_level)
    completions.register(server, app)
    for name in app.settings.toolsets:
        TOOLSETS[name](server, app)
    return server
