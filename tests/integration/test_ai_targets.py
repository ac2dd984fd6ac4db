"""No tool call can make the server send a secret somewhere the user did not choose.

add_api_endpoint(base_url=<anywhere>, api_key_env=<any variable>) would make the server send that
variable's value on the next ask_ai. Key variables must look like AI keys and never be a server
setting or an exchange account's key; every new target needs the user's answer; link-local and
metadata addresses are refused always, loopback and private ones unless local models are allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.types import ElicitResult, InputRequiredResult

from heablcoin_mcp.app import App
from heablcoin_mcp.server import build_server
from tests.envelope import error_envelope
from tests.fakes.llm import FakeLLM, fake_llms
from tests.integration.test_ai_tools import ENV, app_for, ok
from tests.integration.test_trading_tools import answering

pytestmark = pytest.mark.anyio
SECRETS = {**ENV, "HEABLCOIN_AUTH_TOKEN": "bearer-of-the-server-0451", "EXCHANGE_SECRET_API_KEY": "exch-secret-77"}


@pytest.fixture
def llm() -> Any:
    with fake_llms("evil") as (server,):
        yield server


def secrets_app(tmp_path: Path, **settings: Any) -> App:
    app = app_for(tmp_path, **settings)
    app.environ = SECRETS
    app.ai.environ = SECRETS
    return app


def stored(app: App) -> list[str]:
    return [e.name for e in app.endpoints.all()]


@pytest.mark.parametrize("variable", ["HEABLCOIN_AUTH_TOKEN", "HEABLCOIN_WEBHOOK_SECRET", "PRIMARY_KEY",
                                      "EXCHANGE_SECRET_API_KEY"])
async def test_a_variable_that_is_not_an_ai_key_is_refused_even_with_the_users_yes(
        tmp_path: Path, llm: FakeLLM, variable: str) -> None:
    app = secrets_app(tmp_path)
    async with Client(build_server(app), elicitation_callback=answering(True)) as client:
        await client.call_tool("add_account", {"name": "main", "exchange": "binance", "mode": "live",
                                               "api_key_env": "EXCHANGE_KEY", "secret_env": "EXCHANGE_SECRET_API_KEY"})
        refused = error_envelope(await client.call_tool("add_api_endpoint", {
            "name": "evil", "base_url": llm.url, "model": "m", "api_key_env": variable}))
        asked = error_envelope(await client.call_tool("ask_ai", {"prompt": "hello"}))
    assert refused["code"] == "invalid_input" and variable in refused["message"]
    assert asked["code"] == "not_found"
    assert stored(app) == [] and llm.seen == []


async def test_without_the_users_yes_no_endpoint_is_added(tmp_path: Path, llm: FakeLLM) -> None:
    app = secrets_app(tmp_path)
    arguments = {"name": "evil", "base_url": llm.url, "model": "m", "api_key_env": "PRIMARY_API_KEY"}
    async with Client(build_server(app)) as client:  # a client that cannot ask
        cannot_ask = error_envelope(await client.call_tool("add_api_endpoint", arguments))
    async with Client(build_server(app), elicitation_callback=answering(False)) as client:
        declined = error_envelope(await client.call_tool("add_api_endpoint", arguments))
    assert cannot_ask["code"] == declined["code"] == "confirmation_required"
    assert "HEABLCOIN_AI_ENDPOINTS" in cannot_ask["hint"]
    assert stored(app) == [] and llm.seen == []


async def test_repointing_an_endpoint_asks_the_user_and_a_no_keeps_it(tmp_path: Path, llm: FakeLLM) -> None:
    app = secrets_app(tmp_path)
    questions: list[str] = []

    async def decline(context: Any, params: Any) -> ElicitResult:
        questions.append(params.message)
        return ElicitResult(action="decline")

    async with Client(build_server(app), elicitation_callback=answering(True)) as client:
        ok(await client.call_tool("add_api_endpoint", {"name": "mine", "base_url": llm.url, "model": "m",
                                                       "api_key_env": "PRIMARY_API_KEY"}))
    async with Client(build_server(app), elicitation_callback=decline) as client:
        ok(await client.call_tool("update_api_endpoint", {"name": "mine", "priority": 3}))  # nothing new: no question
        moved = error_envelope(await client.call_tool("update_api_endpoint", {"name": "mine",
                                                                              "api_key_env": "BACKUP_API_KEY"}))
    assert moved["code"] == "confirmation_required" and len(questions) == 1
    assert "BACKUP_API_KEY" in questions[0]
    assert app.endpoints.get("mine").api_key_env == "PRIMARY_API_KEY"
    assert app.endpoints.get("mine").priority == 3


@pytest.mark.parametrize("url", ["http://169.254.169.254/v1", "http://metadata.google.internal/v1",
                                 "http://[::ffff:169.254.169.254]/v1", "http://[::169.254.169.254]/v1",
                                 "http://[fe80::1]/v1", "http://[64:ff9b::a9fe:a9fe]/v1", "http://0.0.0.0:80/v1"])
async def test_link_local_and_metadata_targets_are_refused_even_for_local_models(tmp_path: Path, url: str) -> None:
    app = secrets_app(tmp_path, ai_allow_private=True)
    async with Client(build_server(app), elicitation_callback=answering(True)) as client:
        refused = error_envelope(await client.call_tool("add_api_endpoint", {
            "name": "meta", "base_url": url, "model": "m", "api_key_env": "PRIMARY_API_KEY"}))
    assert refused["code"] == "invalid_input" and stored(app) == []


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]", "[::ffff:127.0.0.1]", "[::127.0.0.1]", "[2002:7f00:1::]",
                                  "10.1.2.3", "192.168.0.10", "[fd12::1]"])
async def test_loopback_and_private_targets_need_the_user_to_allow_local_models(tmp_path: Path, host: str) -> None:
    app = secrets_app(tmp_path, ai_allow_private=False)
    async with Client(build_server(app), elicitation_callback=answering(True)) as client:
        refused = error_envelope(await client.call_tool("add_api_endpoint", {
            "name": "local", "base_url": f"http://{host}:11434/v1", "model": "m", "api_key_env": "PRIMARY_API_KEY"}))
    assert refused["code"] == "invalid_input" and "HEABLCOIN_AI_ALLOW_PRIVATE" in refused["hint"]
    assert stored(app) == []


async def test_an_endpoint_stored_before_the_policy_never_gets_a_secret(tmp_path: Path, llm: FakeLLM) -> None:
    app = secrets_app(tmp_path)
    async with Client(build_server(app)) as client:
        with app.db.write() as conn:  # as an older build could have stored it
            conn.execute("INSERT INTO api_endpoints (name, provider, base_url, model, api_key_env, priority, weight, "
                         "max_requests_per_minute, timeout, enabled, source, created_at, updated_at) VALUES "
                         "('old', 'openai', ?, 'm', 'HEABLCOIN_AUTH_TOKEN', 1, 1, 60, 30, 1, 'tool', 0, 0)",
                         (llm.url,))
        app.endpoints.version += 1
        failed = error_envelope(await client.call_tool("ask_ai", {"prompt": "hello"}))
    assert failed["code"] == "provider_unavailable" and "server's own settings" in failed["message"]
    assert llm.seen == []


async def test_a_replayed_yes_adds_no_second_endpoint(tmp_path: Path, llm: FakeLLM) -> None:
    app = secrets_app(tmp_path)
    arguments = {"name": "mine", "base_url": llm.url, "model": "m", "api_key_env": "PRIMARY_API_KEY"}
    async with Client(build_server(app), mode="auto", elicitation_callback=answering(True)) as client:
        first = await client.session.call_tool("add_api_endpoint", arguments, allow_input_required=True)
        assert isinstance(first, InputRequiredResult)
        answers = {key: ElicitResult(action="accept", content={"confirm": True}) for key in first.input_requests}
        retry = {"input_responses": answers, "request_state": first.request_state, "allow_input_required": True}
        assert ok(await client.session.call_tool("add_api_endpoint", arguments, **retry))["key_set"] is True
        await client.call_tool("remove_api_endpoint", {"name": "mine"})
        replay = await client.session.call_tool("add_api_endpoint", arguments, **retry)
    assert isinstance(replay, InputRequiredResult) and stored(app) == []
