"""`heablcoin-mcp [serve|doctor|demo]`: settings are parsed here once and handed down."""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from heablcoin_mcp import __version__
from heablcoin_mcp.config import Settings, load_settings
from heablcoin_mcp.errors import ConfigError, InvalidInput

if TYPE_CHECKING:
    from heablcoin_mcp.app import App

log = logging.getLogger("heablcoin_mcp")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="heablcoin-mcp", description="Crypto trading assistant MCP server.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="run the MCP server (default: stdio)")
    serve.add_argument("--transport", choices=["stdio", "sse", "streamable-http"])
    serve.add_argument("--host", help="bind address for HTTP transports (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port for HTTP transports")
    commands.add_parser("doctor", help="check the configuration; exit 1 on errors")
    commands.add_parser("demo", help="run a guided tour against an offline server over stdio")
    work = commands.add_parser("worker", help="run only the task worker against the database")
    work.add_argument("--metrics-port", type=int, metavar="PORT",
                      help="serve Prometheus metrics at http://127.0.0.1:PORT/metrics")
    client = commands.add_parser("client-config", help="print the config block for a desktop client")
    client.add_argument("client", choices=["claude", "cursor", "windsurf", "vscode"])
    client.add_argument("--sim", action="store_true", help="use the offline simulated market")
    client.add_argument("--uvx", metavar="SOURCE", help="start it with uvx from SOURCE (a path or git+https URL)")
    state = commands.add_parser("trading-state", help="set the trading state yourself (e.g. leave HALTED)")
    state.add_argument("state", choices=["active", "reducing", "halted"])
    state.add_argument("--reason", default="set from the command line")
    risk = commands.add_parser("risk", help="undo a tightened limit or a denied symbol yourself")
    risk_actions = risk.add_subparsers(dest="risk_action", required=True)
    reset = risk_actions.add_parser("reset", help="put limits back to their configured values (all if none named)")
    reset.add_argument("names", nargs="*", metavar="LIMIT", help="e.g. max_order_notional, deny_symbols")
    allow = risk_actions.add_parser("allow", help="lift the denials a tool added for these symbols")
    allow.add_argument("symbols", nargs="+", metavar="SYMBOL")
    move = commands.add_parser("migrate-db", help="copy the embedded SQLite database into an empty PostgreSQL one")
    move.add_argument("--to", required=True, metavar="URL", help="postgresql://… (the password is never printed)")
    move.add_argument("--from", dest="source", metavar="FILE", help="the SQLite file (default: the one in home)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = args.command or "serve"
    if command == "doctor":
        return doctor()
    if command == "client-config":
        from heablcoin_mcp.client_config import render

        block, where = render(args.client, sim=args.sim, uvx_source=args.uvx)
        sys.stdout.write(block + "\n")
        sys.stderr.write(where + "\n")
        return 0
    if command == "demo":
        from heablcoin_mcp.demo import run_demo

        return run_demo(sys.stdout)
    overrides = {k: v for k in ("transport", "host", "port") if (v := getattr(args, k, None)) is not None}
    try:
        settings = load_settings(**overrides)
        configure_logging(settings)
        if command == "worker":
            return worker(settings, args.metrics_port)
        if command == "trading-state":
            return trading_state(settings, args.state.upper(), args.reason)
        if command == "migrate-db":
            return migrate_db(settings, args.to, args.source)
        if command == "risk":
            return risk_limits(settings, args.names if args.risk_action == "reset" else None,
                               args.symbols if args.risk_action == "allow" else None)
        return serve(settings)
    except InvalidInput as exc:  # a bad setting, or a bad request of a CLI command: one line and a hint
        sys.stderr.write(f"heablcoin-mcp: {exc.message}\n" + (f"hint: {exc.hint}\n" if exc.hint else ""))
        return 2


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def build_app(settings: Settings) -> App:
    """The App for this process, with every log record scrubbed of its secrets.

    Raises:
        ConfigError: the database cannot be used (damaged, read-only, from a newer build).
    """
    from heablcoin_mcp.app import App
    from heablcoin_mcp.core.redact import redact_logs

    app = App(settings, environ=os.environ)
    redact_logs(app.redactor)
    app.db.verify()  # one clear line now, not a traceback from inside the transport later
    return app


@contextlib.contextmanager
def frozen_startup() -> Iterator[None]:
    """Start-up makes ~150,000 objects, nearly all living as long as the process (the SDK, pydantic
    models, tool schemas): collecting while they are made costs ~50 ms of a 600 ms start and frees
    ~5,000 (about 1 MB, kept instead), and freezing them afterwards keeps every later collection,
    and the exit, from walking them again (~150 ms less to exit)."""
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


def serve(settings: Settings) -> int:
    import anyio

    with frozen_startup():
        from heablcoin_mcp.server import build_server

        app = build_app(settings)
        server = build_server(app)
    try:
        if settings.transport == "stdio":
            from heablcoin_mcp.stdio import run_stdio

            anyio.run(run_stdio, server)
        else:
            from heablcoin_mcp.http import serve_http

            serve_http(server, settings)
    except KeyboardInterrupt:
        pass
    finally:
        if app.started:
            anyio.run(app.aclose)
    return 0


def doctor() -> int:
    from heablcoin_mcp.doctor import diagnose, render, report_for_error

    report: Any
    try:
        report = diagnose(load_settings())
    except ConfigError as exc:
        report = report_for_error(exc)
    sys.stdout.write(render(report) + "\n")
    return 0 if report.ok else 1


def trading_state(settings: Settings, state: str, reason: str) -> int:
    """The user at a terminal is the user: this may leave HALTED without a further confirmation."""
    import anyio

    async def apply() -> str:
        async with build_app(settings) as app:
            view, cancelled = await app.orders.set_trading_state(state, reason, confirmed=True)  # type: ignore[arg-type]
            return f"trading {view.state} ({view.reason}); {len(cancelled)} open order(s) cancelled\n"

    sys.stdout.write(anyio.run(apply))
    return 0


def risk_limits(settings: Settings, reset: list[str] | None, allow: list[str] | None) -> int:
    """`risk reset` / `risk allow`: the user at a terminal may loosen back to their own configuration."""
    import anyio

    from heablcoin_mcp.core.risk.engine import RESETTABLE

    async def apply() -> str:
        async with build_app(settings) as app:
            names = None if reset is None else (reset or list(RESETTABLE))
            planned = app.risk.plan_limit_changes({}, reset=names, deny_symbols_remove=allow)
            if planned:
                app.risk.apply_limit_changes(planned, "set from the command line", confirmed=True)
            return "".join(f"{c.name}: {c.before} -> {c.after}\n" for c in planned) or "nothing to change\n"

    sys.stdout.write(anyio.run(apply))
    return 0


def migrate_db(settings: Settings, url: str, source: str | None) -> int:
    """Copy every table (journal included, ids kept) into PostgreSQL and verify counts and balances."""
    from pathlib import Path

    from heablcoin_mcp.config import check_database_url
    from heablcoin_mcp.core.storage import Database, PostgresDatabase
    from heablcoin_mcp.core.storage.copy import copy_database

    try:
        check_database_url(url)
    except ValueError as exc:
        raise InvalidInput(f"--to {exc}") from None
    path = Path(source).expanduser() if source else settings.db_path
    if not path.exists():
        raise InvalidInput(f"no database at {path}", hint="Name the file with --from.")
    sqlite, postgres = Database(path), PostgresDatabase(url)
    try:
        report = copy_database(sqlite, postgres)
    finally:
        sqlite.close()
        postgres.close()
    sys.stdout.write(f"{path} -> {postgres.location}\n" + "".join(f"{line}\n" for line in report.lines()))
    sys.stdout.write("Set HEABLCOIN_DATABASE_URL to use it.\n")
    return 0


def worker(settings: Settings, metrics_port: int | None = None) -> int:
    """The task worker alone: several processes may share one database. Its metrics listen on
    loopback only (put a scraper beside it, or a proxy with its own authentication)."""
    import anyio

    if settings.worker_concurrency < 1:
        sys.stderr.write("heablcoin-mcp: HEABLCOIN_WORKER_CONCURRENCY is 0; nothing to run\n")
        return 2

    async def run() -> None:
        async with build_app(settings) as app:
            if metrics_port is not None:
                from prometheus_client import start_http_server

                start_http_server(metrics_port, addr="127.0.0.1", registry=app.metrics.registry())
                log.info("metrics at http://127.0.0.1:%d/metrics", metrics_port)
            log.info("worker %s running %d slot(s)", app.worker.worker_id, settings.worker_concurrency)
            await app.run_background(matcher=False)

    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(run)
    return 0
