"""HTTP transports (SSE, streamable HTTP): loopback by default, bearer token when exposed."""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
from urllib.parse import urlsplit

from mcp.server.transport_security import TransportSecuritySettings
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from heablcoin_mcp.config import ENV_PREFIX, Settings
from heablcoin_mcp.core.monitor.metrics import Metrics
from heablcoin_mcp.errors import ConfigError
from heablcoin_mcp.server import HeablServer

log = logging.getLogger(__name__)

_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
# A Host header is a name or address and an optional port: nothing else may ride along.
_HOST_HEADER = re.compile(r"^(?P<name>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::(?P<port>[0-9]{1,5}))?$")


def _error(code: str, message: str, hint: str, status: int, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "hint": hint, "retryable": False}},
                        status_code=status, headers=headers)


def host_name(value: str) -> str | None:
    """The name in a Host header, lower-cased, or None when the header is not exactly name[:port]."""
    match = _HOST_HEADER.match(value)
    if match is None or (match["port"] is not None and not 0 < int(match["port"]) < 65536):
        return None
    return match["name"].lower().rstrip(".")


def origin_name(value: str) -> str | None:
    """The host name of an Origin header (scheme://host[:port], nothing more), or None."""
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or parts.username is not None or parts.password is not None \
            or parts.path not in ("", "/") or parts.query or parts.fragment or not parts.hostname:
        return None
    if port is not None and not 0 < port < 65536:
        return None
    return host_name(parts.netloc)


class HostGuard:
    """DNS-rebinding protection by exact comparison: the Host header (421 otherwise) and any Origin
    header (403 otherwise) must name one of the allowed hosts, on any port. The SDK's own check
    matches prefixes (``127.0.0.1:*`` admits ``127.0.0.1:1@evil.com``), so this runs in front of it."""

    def __init__(self, app: ASGIApp, names: list[str]) -> None:
        self.app = app
        self.names = {n.lower() for n in names}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = {k: v.decode("latin-1") for k, v in scope["headers"]}
            if host_name(headers.get(b"host", "")) not in self.names:
                await _error("misdirected", "this server does not answer for that Host",
                             "Use http://127.0.0.1 or a name in HEABLCOIN_ALLOWED_HOSTS.", 421)(scope, receive, send)
                return
            if b"origin" in headers and origin_name(headers[b"origin"]) not in self.names:
                await _error("forbidden_origin", "requests from that Origin are refused",
                             "Add the page's host name to HEABLCOIN_ALLOWED_HOSTS.", 403)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class BearerAuth:
    """Require ``Authorization: Bearer <token>`` on every HTTP request (constant-time compare)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            got = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(got, self.expected):
                await _error("unauthorized", "missing or wrong bearer token",
                             "Send Authorization: Bearer <HEABLCOIN_AUTH_TOKEN>.", 401,
                             {"WWW-Authenticate": "Bearer"})(scope, receive, send)
                return
        await self.app(scope, receive, send)


class MetricsEndpoint:
    """``GET /metrics``: the Prometheus text format, behind the same Host check and bearer token as
    the MCP endpoint (it is wrapped by them)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/metrics" and scope["method"] in ("GET", "HEAD"):
            body, content_type = await asyncio.to_thread(self.metrics.exposition)
            await Response(body, media_type=content_type)(scope, receive, send)
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


def allowed_names(settings: Settings) -> list[str]:
    """Loopback names, the configured host and HEABLCOIN_ALLOWED_HOSTS (the public names clients use
    when binding 0.0.0.0)."""
    names = list(_LOOPBACK_NAMES) + list(settings.allowed_hosts)
    if settings.host not in names and settings.host not in ("0.0.0.0", "::"):
        names.append(f"[{settings.host}]" if ":" in settings.host else settings.host)
    return names


def transport_security(settings: Settings) -> TransportSecuritySettings:
    """The SDK's DNS-rebinding protection stays on too (it also checks the POST content type)."""
    names = allowed_names(settings)
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[h for name in names for h in (name, f"{name}:*")],
        allowed_origins=[o for name in names for o in (f"http://{name}", f"http://{name}:*",
                                                       f"https://{name}", f"https://{name}:*")],
    )


def build_http_app(server: HeablServer, settings: Settings) -> ASGIApp:
    check_exposure(settings)
    security = transport_security(settings)
    if settings.transport == "sse":
        inner = server.sse_app(transport_security=security)
    else:
        inner = server.streamable_http_app(transport_security=security, stateless_http=settings.http_stateless)
    guarded: ASGIApp = HostGuard(MetricsEndpoint(inner, server.metrics), allowed_names(settings))
    if settings.auth_token is None:
        return guarded
    return BearerAuth(guarded, settings.auth_token.get_secret_value())


def serve_http(server: HeablServer, settings: Settings) -> None:
    import uvicorn

    app = build_http_app(server, settings)
    log.info("serving %s on http://%s:%d%s", settings.transport, settings.host, settings.port,
             " (bearer token required)" if settings.auth_token else "")
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level.lower(),
                http=bounded_headers_protocol(settings.http_header_timeout))


def bounded_headers_protocol(timeout: float) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol with a deadline for each request's head: a connection that has not sent
    complete headers ``timeout`` seconds after it opened (or after its last response) is closed, so
    half-open connections cannot pile up (uvicorn itself only times out idle keep-alive ones)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class BoundedHeaders(H11Protocol):
        _head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

        def handle_events(self) -> None:
            cycle = self.cycle
            super().handle_events()
            if self.cycle is not cycle:  # a request's head arrived complete
                self._disarm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._head_timer = self.loop.call_later(timeout, self._too_slow)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _too_slow(self) -> None:
            self._head_timer = None
            if not self.transport.is_closing():
                self.transport.close()

    return BoundedHeaders
