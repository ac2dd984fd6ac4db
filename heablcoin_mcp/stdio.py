"""The stdio transport, with an answer for every line.

The SDK's stdio reader drops a line it cannot parse or validate, so a client that sent one (a lone
surrogate, 1,000 levels of nesting, a byte-order mark, ``"params": "x"``, ``"jsonrpc": "1.0"``)
waits forever. Here each line is screened first: a line that is not JSON gets ``-32700 Parse
error``, a JSON line that is not a valid message gets ``-32600 Invalid Request``, both with the
request's id when it can be read (null otherwise, as JSON-RPC 2.0 says); invalid notifications
get nothing. Valid lines go to the SDK unchanged.
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import mcp_types as types
from mcp.server.mcpserver import MCPServer
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage

PARSE_ERROR, INVALID_REQUEST = -32700, -32600
_ID = re.compile(r'"id"\s*:\s*(-?\d+|"(?:[^"\\]|\\.){0,128}")')

Reject = Callable[[types.JSONRPCError], Any]


def rejection(line: str) -> types.JSONRPCError | None:
    """The error answering an unusable line, None when the line is usable (or an invalid notification)."""
    try:
        types.jsonrpc_message_adapter.validate_json(line, by_name=False)
        return None
    except ValueError:
        pass
    try:
        parsed = json.loads(line)
    except (ValueError, RecursionError):
        return _error(_salvaged_id(line), PARSE_ERROR, "Parse error: not a JSON-RPC message in UTF-8 JSON")
    if isinstance(parsed, dict) and "id" not in parsed and "method" in parsed:
        return None  # an invalid notification: JSON-RPC answers nothing
    request_id = parsed.get("id") if isinstance(parsed, dict) else None
    if not isinstance(request_id, int | str) or isinstance(request_id, bool):
        request_id = None
    return _error(request_id, INVALID_REQUEST, "Invalid Request: not a valid JSON-RPC 2.0 message (check "
                                               "jsonrpc, method, params as an object, and valid Unicode strings)")


def _salvaged_id(line: str) -> int | str | None:
    found = _ID.search(line)
    if found is None:
        return None
    raw = found[1]
    if raw.startswith('"'):
        try:
            value = json.loads(raw)
        except ValueError:
            return None
        return value if isinstance(value, str) else None
    return int(raw)


def _error(request_id: int | str | None, code: int, message: str) -> types.JSONRPCError:
    return types.JSONRPCError(jsonrpc="2.0", id=request_id, error=types.ErrorData(code=code, message=message))


class ScreenedLines:
    """stdin as text lines, holding back (and answering through ``reject``) the unusable ones."""

    def __init__(self, source: Any, reject: Reject) -> None:
        self.source, self.reject = source, reject

    def __aiter__(self) -> AsyncIterator[str]:
        return self._lines()

    async def _lines(self) -> AsyncIterator[str]:
        async for line in self.source:
            if not line.strip():
                continue
            error = rejection(line)
            if error is None:
                yield line
            else:
                await self.reject(error)


async def run_stdio(server: MCPServer[Any]) -> None:
    """Serve ``server`` over stdin / stdout, answering every line."""
    answers_in, answers_out = anyio.create_memory_object_stream[types.JSONRPCError](16)
    raw = os.fdopen(os.dup(sys.stdin.fileno()), "rb", buffering=0)
    stdin = anyio.wrap_file(io.TextIOWrapper(io.BufferedReader(raw), encoding="utf-8", errors="replace"))
    lowlevel = server._lowlevel_server  # the SDK's own run_stdio_async does exactly this
    async with stdio_server(stdin=ScreenedLines(stdin, answers_in.send)) as (read_stream, write_stream):  # type: ignore[arg-type]

        async def answer() -> None:
            async with answers_out:
                async for error in answers_out:
                    await write_stream.send(SessionMessage(error))

        async with anyio.create_task_group() as tg:
            tg.start_soon(answer)
            await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())
            tg.cancel_scope.cancel()
