"""The one tool envelope.

- a result model becomes ``structuredContent`` plus the same data as compact JSON text;
- a ``HeablError`` becomes ``isError: true`` with ``{"error": {code, message, hint, retryable}}`` as
  JSON text and no ``structuredContent`` (a tool's output schema describes its success result, and
  clients such as the TypeScript SDK validate ``structuredContent`` against it even on errors);
- arguments that fail validation become ``invalid_input`` naming each bad field;
- anything else becomes ``code="internal"``; the traceback goes to the log, never to the client;
- output is capped at ``MAX_RESULT_CHARS`` and always valid JSON.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent
from pydantic import ValidationError

from heablcoin_mcp.core.redact import Redactor
from heablcoin_mcp.core.storage.database import busy, is_lock_contention
from heablcoin_mcp.errors import HeablError, Internal, InvalidInput, NotFound

log = logging.getLogger(__name__)

# About 25k tokens: more than that crowds a model's context and several clients truncate silently,
# so we refuse with a hint to narrow the request rather than hand back a cut-off document.
MAX_RESULT_CHARS = 100_000
_MAX_SHOWN_INPUT = 60


def error_result(error: HeablError) -> CallToolResult:
    return CallToolResult(is_error=True, content=[TextContent(type="text", text=compact({"error": error.to_dict()}))])


def compact(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str)


def translate(tool: str, exc: Exception) -> HeablError:
    """Map whatever a tool call raised to our error tree (logging real crashes)."""
    cause = exc.__cause__ if isinstance(exc, ToolError) and exc.__cause__ is not None else exc
    if isinstance(cause, HeablError):
        return cause
    if isinstance(cause, ValidationError):
        return invalid_arguments(tool, cause)
    if is_lock_contention(cause):
        return busy(cause)  # type: ignore[arg-type]
    if isinstance(exc, ToolError) and str(exc).startswith("Unknown tool"):
        return NotFound(f"unknown tool {tool!r}", hint="Call tools/list to see the available tools.")
    log.error("tool %r crashed", tool, exc_info=cause)
    return Internal(f"internal error in {tool}", hint="This is a bug in heablcoin-mcp; the server log has details.")


def invalid_arguments(tool: str, exc: ValidationError) -> InvalidInput:
    problems = []
    for err in exc.errors(include_url=False):
        field = ".".join(str(p) for p in err["loc"]) or "arguments"
        shown = repr(err.get("input"))
        if len(shown) > _MAX_SHOWN_INPUT:
            shown = shown[:_MAX_SHOWN_INPUT] + "…"
        message = err["msg"].removeprefix("Value error, ")
        problems.append(f"{field}: {message}" + ("" if err["type"] == "missing" else f" (got {shown})"))
    return InvalidInput(
        f"invalid arguments for {tool}: " + "; ".join(problems),
        hint="Check the tool's input schema and send corrected arguments.",
        details={"problems": problems},
    )


def shape_success(tool: str, result: CallToolResult) -> CallToolResult:
    """Round floats to what they mean, compact the JSON text and enforce the size cap."""
    if result.structured_content is None:
        return result
    data = meaningful(result.structured_content)
    text = compact(data)
    if len(text) > MAX_RESULT_CHARS:
        return error_result(result_too_large(tool, len(text)))
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=data)


def meaningful(data: Any, key: str = "") -> Any:
    """Percentages (``*_pct``) to 2 decimals and every other float to 10 significant digits: a
    spread of 10.459999999991851 is 10.46, an EMA of 104503.24706525182 is 104503.2471. Ten digits
    keep every price tick and minute timestamp exact; money computed in Decimal travels as strings
    and is never touched."""
    if isinstance(data, float):
        if not math.isfinite(data) or data.is_integer():  # timestamps and counts stay exact
            return data
        return round(data, 2) if key.endswith("_pct") else float(f"{data:.10g}")
    if isinstance(data, dict):
        return {k: meaningful(v, k) for k, v in data.items()}
    if isinstance(data, list):
        return [meaningful(v, key) for v in data]
    return data


def result_too_large(tool: str, size: int) -> InvalidInput:
    return InvalidInput(
        f"{tool} result is {size} characters, over the {MAX_RESULT_CHARS} limit",
        hint="Ask for less: a smaller limit, fewer symbols or a narrower time range.",
        details={"size": size, "limit": MAX_RESULT_CHARS},
    )


def as_tool_result(tool: str, outcome: Any) -> Any:
    if isinstance(outcome, CallToolResult) and not outcome.is_error:
        return shape_success(tool, outcome)
    return outcome


def scrubbed(outcome: Any, redactor: Redactor) -> Any:
    """The result with every configured secret replaced, in the text and the structured content."""
    if not isinstance(outcome, CallToolResult):
        return outcome
    content = [c.model_copy(update={"text": redactor.scrub(c.text)}) if isinstance(c, TextContent) else c
               for c in outcome.content]
    return outcome.model_copy(update={"content": content,
                                      "structured_content": redactor.scrub_data(outcome.structured_content)})


def outcome_of(result: Any) -> str:
    """What a tool call came to, for metrics: ``ok``, the error code, or ``input_required``."""
    if not isinstance(result, CallToolResult):
        return "input_required"
    if not result.is_error:
        return "ok"
    try:
        return str(json.loads(result.content[0].text)["error"]["code"])  # type: ignore[union-attr]
    except (IndexError, KeyError, TypeError, AttributeError, ValueError):
        return "error"
