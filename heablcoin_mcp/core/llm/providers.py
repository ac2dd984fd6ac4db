"""LLM clients over httpx: OpenAI-compatible chat completions and Anthropic Messages, normalised.

Every failure is classified by whose fault it is. The endpoint's fault (5xx, 429, timeout,
connection error, auth failure, unreadable answer) counts against its health; a caller's bad
request (other 4xx) does not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from heablcoin_mcp.core.llm.endpoints import ApiEndpoint

if TYPE_CHECKING:  # httpx loads with the first call, not at start-up
    import httpx

FaultKind = Literal["server_error", "rate_limited", "timeout", "connection", "auth", "bad_response", "bad_request"]
ENDPOINT_FAULTS = {"server_error", "rate_limited", "timeout", "connection", "auth", "bad_response"}
ANTHROPIC_VERSION = "2023-06-01"
MAX_ERROR_CHARS = 200
# Read this much of a provider's error message: the manager scrubs secrets from it, then cuts it to
# MAX_ERROR_CHARS (cutting first could leave the front half of an echoed key behind).
READ_ERROR_CHARS = 4000


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


@dataclass
class Reply:
    text: str
    model: str
    usage: Usage
    headers: dict[str, str] = field(default_factory=dict)


class CallFailed(Exception):
    """One endpoint call failed. Internal to the llm package: the manager turns these into HeablErrors."""

    def __init__(self, kind: FaultKind, reason: str, *, status: int | None = None, retry_after: float | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.kind, self.reason, self.status, self.retry_after = kind, reason, status, retry_after
        self.headers = headers or {}

    @property
    def endpoint_fault(self) -> bool:
        return self.kind in ENDPOINT_FAULTS


def _retry_after(headers: httpx.Headers) -> float | None:
    value = headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


async def complete(client: httpx.AsyncClient, endpoint: ApiEndpoint, key: str, messages: list[dict[str, str]],
                   system: str | None, max_tokens: int, temperature: float) -> Reply:
    """One call to one endpoint. Raises CallFailed."""
    import httpx

    if endpoint.provider == "anthropic":
        base = endpoint.base_url
        url = f"{base}/messages" if base.endswith("/v1") else f"{base}/v1/messages"
        headers = {"x-api-key": key, "anthropic-version": ANTHROPIC_VERSION}
        body: dict[str, Any] = {"model": endpoint.model, "max_tokens": max_tokens, "temperature": temperature,
                                "messages": messages}
        if system:
            body["system"] = system
    else:
        url = f"{endpoint.base_url}/chat/completions"
        headers = {"Authorization": f"Bearer {key}"}
        body = {"model": endpoint.model, "max_tokens": max_tokens, "temperature": temperature,
                "messages": ([{"role": "system", "content": system}] if system else []) + messages}
    try:
        response = await client.post(url, json=body, headers=headers, timeout=endpoint.timeout)
    except httpx.TimeoutException as exc:
        raise CallFailed("timeout", f"no answer within {endpoint.timeout:g} s") from exc
    except httpx.HTTPError as exc:
        raise CallFailed("connection", f"connection failed ({type(exc).__name__})") from exc
    rate_headers = {k: v for k, v in response.headers.items() if k.lower().startswith(("x-ratelimit", "anthropic-"
                                                                                         "ratelimit"))}
    if response.status_code >= 400:
        raise _http_failure(response, rate_headers)
    try:
        data = response.json()
        return _parse(endpoint, data, rate_headers)
    except (json.JSONDecodeError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise CallFailed("bad_response", "the answer was not the provider's JSON format",
                         status=response.status_code) from exc


def _http_failure(response: httpx.Response, rate_headers: dict[str, str]) -> CallFailed:
    status = response.status_code
    detail = _error_text(response)
    if status == 429:
        return CallFailed("rate_limited", f"429 rate limited{detail}", status=status,
                          retry_after=_retry_after(response.headers), headers=rate_headers)
    if status in (401, 403):
        return CallFailed("auth", f"{status} authentication refused", status=status)
    if status >= 500 or status == 408:
        return CallFailed("server_error", f"{status} server error{detail}", status=status,
                          retry_after=_retry_after(response.headers))
    return CallFailed("bad_request", f"{status} bad request{detail}", status=status)


def _error_text(response: httpx.Response) -> str:
    """The provider's own error message. Some echo the key: the manager scrubs it before anyone sees it."""
    try:
        payload = response.json()
        message = (payload.get("error") or {}).get("message") if isinstance(payload, dict) else None
    except (json.JSONDecodeError, AttributeError):
        message = None
    return f": {str(message)[:READ_ERROR_CHARS]}" if message else ""


def _parse(endpoint: ApiEndpoint, data: dict[str, Any], headers: dict[str, str]) -> Reply:
    if endpoint.provider == "anthropic":
        text = "".join(part["text"] for part in data["content"] if part.get("type") == "text")
        usage = data.get("usage") or {}
        prompt, completion = int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0))
    else:
        text = data["choices"][0]["message"]["content"]
        usage = data.get("usage") or {}
        prompt, completion = int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
    if not isinstance(text, str):
        raise ValueError("no text in the answer")
    return Reply(text=text, model=str(data.get("model") or endpoint.model),
                 usage=Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion),
                 headers=headers)
