"""HTTP transports (SSE, streamable HTTP): loopback by default, bearer token when exposed."""

from __future__ import annotations

import hmac
import logging
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from heablcoin_mcp.config import ENV_PREFIX, Settings
from heablcoin_mcp.errors import ConfigError

log = logging.getLogger(__name__)

_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


class BearerAuth:
    """Require ``Authorization: Bearer <token>`` on every HTTP request (constant-time compare)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            got = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(got, self.expected):
                response = JSONResponse(
                    {"error": {"code": "unauthorized", "message": "missing or wrong bearer token",
                               "hint": "Send Authorization: Bearer <HEABLCOIN_AUTH_TOKEN>.", "retryable": False}},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def check_exposure(settings: Settings) -> None:
    """Refuse to listen beyond loopback without a token.

    Raises:
        ConfigError: HEABLCOIN_HOST is not loopback and HEABLCOIN_AUTH_TOKEN is unset.
    """
    if not settings.host_is_loopback and settings.auth_token is None:
        raise ConfigError(
            f"refusing to serve {settings.transport} on {settings.host}: a non-loopback address needs "
            f"{ENV_PREFIX}AUTH_TOKEN",
            hint=f"Set {ENV_PREFIX}AUTH_TOKEN to a long random string, or bind to 127.0.0.1.",
        )


def transport_security(settings: Settings) -> TransportSecuritySettings:
    """DNS-rebinding protection stays on, allowing loopback names, the configured host and
    HEABLCOIN_ALLOWED_HOSTS (the public names clients use when binding 0.0.0.0)."""
    names = list(_LOOPBACK_NAMES) + list(settings.allowed_hosts)
    if settings.host not in names and settings.host not in ("0.0.0.0", "::"):
        names.append(f"[{settings.host}]" if ":" in settings.host else settings.host)
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[h for name in names for h in (name, f"{name}:*")],
        allowed_origins=[o for name in names for o in (f"http://{name}", f"http://{name}:*",
                                                       f"https://{name}", f"https://{name}:*")],
    )


def build_http_app(server: MCPServer[Any], settings: Settings) -> ASGIApp:
    check_exposure(settings)
    security = transport_security(settings)
    if settings.transport == "sse":
        inner = server.sse_app(transport_security=security)
    else:
        inner = server.streamable_http_app(transport_security=security)
    if settings.auth_token is None:
        return inner
    return BearerAuth(inner, settings.auth_token.get_secret_value())


def serve_http(server: MCPServer[Any], settings: Settings) -> None:
    import uvicorn

    app = build_http_app(server, settings)
    log.info("serving %s on http://%s:%d%s", settings.transport, settings.host, settings.port,
             " (bearer token required)" if settings.auth_token else "")
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level.lower())
