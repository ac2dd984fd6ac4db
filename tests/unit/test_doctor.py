from __future__ import annotations

from pathlib import Path

import pytest

from heablcoin_mcp import cli
from heablcoin_mcp.config import Settings
from heablcoin_mcp.doctor import diagnose, mask_secret, mask_url

TOKEN = "tok-0123456789abcdefWXYZ"


def settings(tmp_path: Path, **values: object) -> Settings:
    values = {"exchange": "sim", **values}
    return Settings(_env_file=None, home=tmp_path / "home", **values)  # type: ignore[call-arg]


def check(report: object, variable: str) -> object:
    return next(c for c in report.checks if c.variable == variable)  # type: ignore[attr-defined]


def test_secrets_are_masked_to_prefix_and_last_four() -> None:
    assert mask_secret("sk-abcdefghijklmnop1234") == "sk-…1234"
    assert mask_secret("short") == "…****"
    assert mask_secret(None) is None


def test_proxy_passwords_are_hidden() -> None:
    assert mask_url("socks5://me:hunter2@proxy.local:1080") == "socks5://me:****@proxy.local:1080"
    assert mask_url("http://proxy.local:3128") == "http://proxy.local:3128"


def test_a_clean_paper_setup_passes(tmp_path: Path) -> None:
    report = diagnose(settings(tmp_path))
    assert report.ok and report.errors == 0
    assert check(report, "HEABLCOIN_TRADING_MODE").status == "ok"  # type: ignore[attr-defined]


def test_http_on_a_public_address_without_token_is_an_error(tmp_path: Path) -> None:
    report = diagnose(settings(tmp_path, transport="streamable-http", host="0.0.0.0"))
    assert not report.ok
    assert check(report, "HEABLCOIN_TRANSPORT").status == "error"  # type: ignore[attr-defined]


def test_the_token_is_shown_masked_and_never_whole(tmp_path: Path) -> None:
    report = diagnose(settings(tmp_path, auth_token=TOKEN, https_proxy="http://u:hunter2@p:1"))
    dumped = report.model_dump_json()
    assert TOKEN not in dumped and "hunter2" not in dumped
    assert check(report, "HEABLCOIN_AUTH_TOKEN").value == "tok…WXYZ"  # type: ignore[attr-defined]


def test_an_unknown_exchange_id_is_an_error(tmp_path: Path) -> None:
    report = diagnose(settings(tmp_path, exchange="notanexchange"))
    assert check(report, "HEABLCOIN_EXCHANGE").status == "error"  # type: ignore[attr-defined]


def test_live_mode_is_flagged(tmp_path: Path) -> None:
    report = diagnose(settings(tmp_path, trading_mode="live"))
    assert check(report, "HEABLCOIN_TRADING_MODE").status == "warn"  # type: ignore[attr-defined]


def test_doctor_command_exits_1_on_errors_and_masks_secrets(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HEABLCOIN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HEABLCOIN_EXCHANGE", "sim")
    monkeypatch.setenv("HEABLCOIN_AUTH_TOKEN", TOKEN)
    assert cli.main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "tok…WXYZ" in out and TOKEN not in out
    assert "required:" in out and "recommended:" in out and "optional:" in out

    monkeypatch.setenv("HEABLCOIN_TRADING_MODE", "yolo")
    assert cli.main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "HEABLCOIN_TRADING_MODE" in out and "FAILED" in out


def test_ai_keys_and_the_webhook_secret_are_reported_without_their_values(tmp_path: Path) -> None:
    declared = [{"name": "deepseek", "base_url": "https://api.deepseek.com/v1", "model": "m",
                 "api_key_env": "DEEPSEEK_API_KEY"}]
    report = diagnose(settings(tmp_path, ai_endpoints=declared, webhook_secret="whsec-0123456789abcdef"), environ={})
    assert check(report, "HEABLCOIN_AI_ENDPOINTS").status == "warn"  # type: ignore[attr-defined]
    assert "DEEPSEEK_API_KEY" in check(report, "HEABLCOIN_AI_ENDPOINTS").message  # type: ignore[attr-defined]
    assert check(report, "HEABLCOIN_WEBHOOK_SECRET").value == "whs…cdef"  # type: ignore[attr-defined]
    fine = diagnose(settings(tmp_path, ai_endpoints=declared), environ={"DEEPSEEK_API_KEY": "sk-x"})
    assert check(fine, "HEABLCOIN_AI_ENDPOINTS").status == "ok"  # type: ignore[attr-defined]
    assert "sk-x" not in fine.model_dump_json() and "whsec-0123456789abcdef" not in report.model_dump_json()


def test_the_shared_database_and_redis_are_checked_without_their_passwords(tmp_path: Path) -> None:
    from tests.services import REDIS_URL, postgres_schema

    with postgres_schema() as url:
        with_password = url.replace("postgresql://", "postgresql://root:hunter2-db@", 1)  # trust auth ignores it
        report = diagnose(settings(tmp_path, database_url=with_password,
                                   redis_url=REDIS_URL.replace("redis://", "redis://:hunter2-redis@", 1)))
        database = check(report, "HEABLCOIN_DATABASE_URL")
        assert database.status == "ok" and "empty" in database.message  # type: ignore[attr-defined]
        assert "hunter2" not in report.model_dump_json()
    gone = diagnose(settings(tmp_path, database_url="postgresql://127.0.0.1:1/test"))
    assert check(gone, "HEABLCOIN_DATABASE_URL").status == "error" and not gone.ok  # type: ignore[attr-defined]
