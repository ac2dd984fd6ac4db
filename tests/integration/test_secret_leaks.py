"""Distinctive secrets in every place the server reads them, and providers that echo them back:
none of them may reach a tool result, a resource, a stored row or a log line, at any log level."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from mcp import Client

from heablcoin_mcp.app import App
from heablcoin_mcp.config import Settings, load_settings
from heablcoin_mcp.core.redact import encodings, redact_logs
from heablcoin_mcp.doctor import diagnose, render
from heablcoin_mcp.errors import ConfigError
from heablcoin_mcp.server import build_server
from tests.fakes.llm import Behaviour, fake_llms
from tests.integration.test_trading_tools import answering
from tests.services import stored_text

pytestmark = pytest.mark.anyio
SECRETS = {
    "PRIMARY_API_KEY": "sk-leak-primary-7Qx9Zk2Lm4",
    "BACKUP_API_KEY": "sk-leak-backup-3Nc5Vb8Hj1",
    "HEABLCOIN_AUTH_TOKEN": "tok-leak-bearer-5Hs8Pq1Wn3",
    "HEABLCOIN_WEBHOOK_SECRET": "whsec-leak-3Jd7Kf0Vb6x",
    "EXCHANGE_SECRET": "exch-leak-secret-8Tg2Ry6Uc1",
}
PADDING = "x" * 190  # so an echoed key straddles the point where error text is cut


def leaked(text: str) -> list[str]:
    return sorted(name for name, value in SECRETS.items() for form in encodings(value) if form in text)


async def test_echoed_keys_never_reach_results_rows_or_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture
                                                            ) -> None:
    settings = Settings(_env_file=None, home=tmp_path / "home", exchange="sim", ai_allow_private=True,  # type: ignore[call-arg]
                        auth_token=SECRETS["HEABLCOIN_AUTH_TOKEN"], webhook_secret=SECRETS["HEABLCOIN_WEBHOOK_SECRET"],
                        log_level="DEBUG")
    app = App(settings, environ=SECRETS)
    seen: list[str] = []
    caplog.set_level(logging.DEBUG)
    redact_logs(app.redactor)
    with fake_llms("primary", "backup") as (primary, backup):
        primary.then(Behaviour(status=500, text=PADDING + " upstream refused", echo_key=True),
                     Behaviour(status=429, text="slow down", echo_key=True, retry_after=0))
        backup.then(Behaviour(text="here is my answer", echo_key=True),
                    Behaviour(status=400, text=PADDING + " bad request from", echo_key=True))
        async with Client(build_server(app), elicitation_callback=answering(True)) as client:
            for name, fake, priority in (("primary", primary, 1), ("backup", backup, 2)):
                seen.append(str(await client.call_tool("add_api_endpoint", {
                    "name": name, "base_url": fake.url, "model": "m", "api_key_env": f"{name.upper()}_API_KEY",
                    "priority": priority})))
            answered = await client.call_tool("ask_ai", {"prompt": "hello"})
            refused = await client.call_tool("ask_ai", {"prompt": "again", "endpoint": "backup"})
            published = await client.call_tool("publish_enhanced_task", {
                "name": "ai_analysis", "payload": {"symbol": "BTC/USDT", "question": "what now?"}})
            task_id = published.structured_content["task"]["id"]  # type: ignore[index]
            waited = await client.call_tool("wait_for_task", {"task_id": task_id, "timeout": 30})
            resource = await client.read_resource(f"heablcoin://tasks/{task_id}")
            for tool in ("get_api_manager_stats", "list_api_endpoints", "get_system_health", "validate_config"):
                seen.append(str(await client.call_tool(tool, {})))
            seen += [str(answered), str(refused), str(waited), str(resource)]
        rows = stored_text(app.db)
    assert "here is my answer" in str(answered) and "[redacted]" in str(answered)
    assert refused.is_error and "bad request" in str(refused)
    assert primary.seen and backup.seen  # the fakes really were called, and really echoed
    assert leaked("\n".join(seen)) == []
    assert leaked(rows) == []
    assert leaked(caplog.text) == []


def test_malformed_endpoint_json_is_a_clear_config_error_without_the_value(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    pasted = '[{"name": "x", "api_key_env": "' + SECRETS["PRIMARY_API_KEY"] + '"'  # cut off: not JSON
    monkeypatch.setenv("HEABLCOIN_HOME", str(tmp_path))
    monkeypatch.setenv("HEABLCOIN_AI_ENDPOINTS", pasted)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert "HEABLCOIN_AI_ENDPOINTS" in raised.value.message
    assert leaked(str(raised.value.to_dict())) == []


def test_a_key_pasted_as_the_variable_name_is_never_printed(tmp_path: Path) -> None:
    declared = [{"name": "x", "base_url": "https://api.example.com/v1", "model": "m",
                 "api_key_env": SECRETS["PRIMARY_API_KEY"]}]
    settings = Settings(_env_file=None, home=tmp_path, ai_endpoints=declared)  # type: ignore[call-arg]
    report = diagnose(settings, environ={})
    assert not report.ok and leaked(render(report)) == []
