"""Toolset `ai`: LLM endpoints routed with failover, and AI commentary on the market.

No `from __future__ import annotations` here: the SDK must evaluate `Resolve(<local resolver>)` in the
signatures while the resolver is in scope."""

import json
from typing import Annotated, Literal

from mcp.server.mcpserver import Context, Elicit, ElicitationResult, MCPServer, Resolve
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from heablcoin_mcp.app import App
from heablcoin_mcp.core.analysis.reports import MarketAnalysis
from heablcoin_mcp.core.llm.endpoints import ApiEndpoint, pointing
from heablcoin_mcp.core.llm.manager import AiReply, EndpointStats
from heablcoin_mcp.errors import ConfirmationRequired
from heablcoin_mcp.tools._confirm import Confirm, answered_yes, client_can_ask, question, was_asked
from heablcoin_mcp.tools._types import Lower, Symbol, Timeframe

CONFIGURES = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False)
REMOVES = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False)
READS = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
CALLS_LLM = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=False, open_world_hint=True)
Strategy = Annotated[Literal["priority", "round_robin", "least_latency", "random"], Lower,
                     Field(description="priority (1 first), round_robin, least_latency or random (weighted)")]
COMMENTARY_SYSTEM = (
    "You are a careful crypto market analyst. You describe what the data shows in plain language: trend, "
    "momentum, structure, volatility regime, and what would change the picture. You never give financial "
    "advice or tell the user to buy or sell. If the data is simulated, say so in your first sentence."
)


class EndpointView(BaseModel):
    endpoint: ApiEndpoint
    key_set: bool = Field(description="whether api_key_env is set in the server's environment (value never shown)")
    message: str


class EndpointsResult(BaseModel):
    count: int
    endpoints: list[EndpointStats]


class ResetResult(BaseModel):
    reset: int = Field(description="endpoints whose stats and health were reset")


class Commentary(BaseModel):
    commentary: AiReply
    analysis: MarketAnalysis


def register(server: MCPServer, app: App) -> None:
    store, manager = app.endpoints, app.ai

    def view(endpoint: ApiEndpoint, verb: str) -> EndpointView:
        key_set = bool(manager.environ.get(endpoint.api_key_env))
        state = "is set" if key_set else "is NOT set — set it in the server's environment or .env, then restart"
        return EndpointView(endpoint=endpoint, key_set=key_set,
                            message=f"{verb} {endpoint.name}; environment variable {endpoint.api_key_env} {state}")

    def consent_to_point(name: str, base_url: str | None, api_key_env: str | None,
                         ctx: Context) -> tuple[str, str] | None:
        """For a new target (a new endpoint, or a new base_url / key variable): the question and the
        single-use token its answer is bound to. None when nothing new is pointed at or nobody can be asked."""
        target = store.new_target(name, base_url, api_key_env) if client_can_ask(ctx) else None
        if target is None:
            return None
        url, key = target
        ask = f"Let the server send the key in {key} to {url} (AI endpoint {name})?"
        return ask, app.consents.ask(pointing(name, url, key))

    def ask_to_point(
        consent: Annotated[tuple[str, str] | None, Resolve(consent_to_point)],
    ) -> Elicit[Confirm] | None:
        return question(*consent) if consent is not None else None

    def granted(answer: ElicitationResult[Confirm], consent: tuple[str, str] | None) -> str | None:
        """The consent token to spend, once the user said yes. Raises ConfirmationRequired if they said no."""
        if was_asked(answer) and not answered_yes(answer):
            raise ConfirmationRequired("the user declined; the endpoint was not changed")
        return consent[1] if consent is not None and answered_yes(answer) else None

    @server.tool(title="Add AI endpoint", annotations=CONFIGURES)
    def add_api_endpoint(
        answer: Annotated[ElicitationResult[Confirm], Resolve(ask_to_point)],
        consent: Annotated[tuple[str, str] | None, Resolve(consent_to_point)],
        name: Annotated[str, Field(description="Unique name, e.g. 'deepseek'.", max_length=48)],
        base_url: Annotated[str, Field(description="API base, e.g. https://api.deepseek.com/v1")],
        model: Annotated[str, Field(description="Model name, e.g. deepseek-chat", max_length=128)],
        api_key_env: Annotated[str, Field(description="NAME of the environment variable holding the key "
                                                      "(e.g. DEEPSEEK_API_KEY) — never the key itself.")],
        provider: Annotated[Literal["openai", "anthropic"], Lower,
                            Field(description="openai = any OpenAI-compatible chat API; anthropic = Messages API")]
        = "openai",
        priority: Annotated[int, Field(description="1 is tried first.", ge=1, le=1000)] = 1,
        weight: Annotated[float, Field(description="Share for the random strategy.", gt=0, le=1000)] = 1.0,
        max_requests_per_minute: Annotated[int, Field(description="Local request budget.", ge=1)] = 60,
        max_tokens_per_minute: Annotated[int | None, Field(description="Local token budget (optional).")] = None,
        timeout: Annotated[float, Field(description="Seconds per request.", gt=0, le=600)] = 30.0,
    ) -> EndpointView:
        """Register an LLM endpoint for ask_ai and ai_market_commentary. The server sends the key held in
        `api_key_env` (the variable's NAME, e.g. DEEPSEEK_API_KEY) to `base_url`, so the user is asked
        first; without their yes nothing is added. Private hosts need HEABLCOIN_AI_ALLOW_PRIVATE. The
        result says whether the variable is set."""
        endpoint = ApiEndpoint(
            name=name, provider=provider, base_url=base_url, model=model, api_key_env=api_key_env, priority=priority,
            weight=weight, max_requests_per_minute=max_requests_per_minute,
            max_tokens_per_minute=max_tokens_per_minute, timeout=timeout)
        return view(store.add(endpoint, consent=granted(answer, consent)), "added")

    @server.tool(title="Update AI endpoint", annotations=CONFIGURES)
    def update_api_endpoint(
        answer: Annotated[ElicitationResult[Confirm], Resolve(ask_to_point)],
        consent: Annotated[tuple[str, str] | None, Resolve(consent_to_point)],
        name: Annotated[str, Field(description="Endpoint to change.")],
        base_url: Annotated[str | None, Field(description="New API base.")] = None,
        model: Annotated[str | None, Field(description="New model.")] = None,
        api_key_env: Annotated[str | None, Field(description="New key variable NAME.")] = None,
        provider: Annotated[Literal["openai", "anthropic"] | None, Lower, Field(description="New provider.")] = None,
        priority: Annotated[int | None, Field(description="New priority (1 first).")] = None,
        weight: Annotated[float | None, Field(description="New weight.")] = None,
        max_requests_per_minute: Annotated[int | None, Field(description="New request budget.")] = None,
        max_tokens_per_minute: Annotated[int | None, Field(description="New token budget.")] = None,
        timeout: Annotated[float | None, Field(description="New timeout (s).")] = None,
        enabled: Annotated[bool | None, Field(description="Enable or disable.")] = None,
    ) -> EndpointView:
        """Change an endpoint's settings (or enable / disable it); takes effect at once, health is kept. A new
        base_url or key variable asks the user first, as add_api_endpoint does."""
        changes = {k: v for k, v in {"base_url": base_url, "model": model, "api_key_env": api_key_env,
                                     "provider": provider, "priority": priority, "weight": weight,
                                     "max_requests_per_minute": max_requests_per_minute,
                                     "max_tokens_per_minute": max_tokens_per_minute, "timeout": timeout,
                                     "enabled": enabled}.items() if v is not None}
        return view(store.update(name, consent=granted(answer, consent), **changes), "updated")

    @server.tool(title="Remove AI endpoint", annotations=REMOVES)
    def remove_api_endpoint(name: Annotated[str, Field(description="Endpoint to remove.")]) -> ResetResult:
        """Remove an endpoint: calls stop using it at once and its stats are dropped. The key variable stays
        in the server's environment (remove it there yourself if it is no longer needed)."""
        store.remove(name)
        manager.forget(name)
        return ResetResult(reset=1)

    @server.tool(title="List AI endpoints", annotations=READS)
    def list_api_endpoints() -> EndpointsResult:
        """Every endpoint with provider, model, status (ACTIVE / DEGRADED / RATE_LIMITED / FAILED /
        DISABLED) and why, and whether its key variable is set. Keys are never shown."""
        stats = manager.stats()
        return EndpointsResult(count=len(stats), endpoints=stats)

    @server.tool(title="AI manager stats", annotations=READS)
    def get_api_manager_stats() -> EndpointsResult:
        """Per endpoint: status and reason, requests, successes, failures by kind, success rate, latency
        p50/p95, in flight, tokens used, rate budget used/limit, last error (sanitised), last success and
        failure times."""
        stats = manager.stats()
        return EndpointsResult(count=len(stats), endpoints=stats)

    @server.tool(title="Reset AI stats", annotations=CONFIGURES)
    def reset_api_stats(name: Annotated[str | None, Field(description="One endpoint; omit for all.")] = None,
                        ) -> ResetResult:
        """Clear the counters and the health of one endpoint or all: open circuits close and rate-limit waits
        end, so the next call tries them again. Use after fixing a key or when a provider has recovered."""
        return ResetResult(reset=manager.reset_stats(name))

    @server.tool(title="Ask AI", annotations=CALLS_LLM)
    async def ask_ai(
        prompt: Annotated[str, Field(description="The question or instruction.", min_length=1, max_length=100_000)],
        system: Annotated[str | None, Field(description="Optional system prompt.", max_length=20_000)] = None,
        strategy: Strategy = "priority",
        endpoint: Annotated[str | None, Field(description="Use only this endpoint.")] = None,
        max_tokens: Annotated[int, Field(description="Answer length limit (1-32000).", ge=1, le=32_000)] = 1024,
        temperature: Annotated[float, Field(description="0-2.", ge=0, le=2)] = 0.3,
    ) -> AiReply:
        """Send a prompt to the configured LLM endpoints: routed by the strategy, failing over at once to
        the next endpoint when one is down, slow or rate-limited, within a deadline. The reply says
        which endpoint answered and lists the failed attempts."""
        return await manager.call(prompt, system=system, strategy=strategy, endpoint=endpoint,
                                  max_tokens=max_tokens, temperature=temperature)

    @server.tool(title="AI market commentary", annotations=CALLS_LLM)
    async def ai_market_commentary(symbol: Symbol, timeframe: Timeframe = "1h") -> Commentary:
        """Run market_analysis for a symbol and have the configured LLM write a short commentary on it;
        returns the commentary with the analysis attached. Describes, never advises."""
        analysis = await app.analysis.analyse(symbol, timeframe)
        prompt = ("Write a 5-8 sentence commentary on this market analysis (JSON). Use its numbers.\n"
                  + json.dumps(analysis.model_dump(mode="json", exclude={"indicators": {"macd", "bollinger"}})))
        reply = await manager.call(prompt, system=COMMENTARY_SYSTEM, max_tokens=600)
        return Commentary(commentary=reply, analysis=analysis)
