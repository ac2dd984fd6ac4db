"""Reading tool results as a client does."""

from __future__ import annotations

import json
from typing import Any

from mcp.types import CallToolResult, TextContent


def error_envelope(result: CallToolResult) -> dict[str, Any]:
    """The ``error`` object of a failed tool call: JSON text in ``content``, with no structured content
    that could contradict the tool's output schema."""
    assert result.is_error is True, result.content
    assert result.structured_content is None
    first = result.content[0]
    assert isinstance(first, TextContent)
    error: dict[str, Any] = json.loads(first.text)["error"]
    return error
