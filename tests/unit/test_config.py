from __future__ import annotations

from pathlib import Path

import pytest

from heablcoin_mcp.config import TOOLSET_NAMES, Settings, load_settings
from heablcoin_mcp.errors import ConfigError


def test_defaults_are_paper_stdio_on_loopback_with_every_toolset() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.trading_mode == "paper"
    assert settings.transport == "stdio"
    assert settings.host == "127.0.0.1"
    assert settings.toolsets == TOOLSET_NAMES
    assert settings.home == Path("~/.heablcoin").expanduser()
    assert settings.db_path == settings.home / "heablcoin.db"


def test_invalid_value_names_the_variable_and_the_allowed_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEABLCOIN_TRADING_MODE", "yolo")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "HEABLCOIN_TRADING_MODE" in caught.value.message
    assert "'paper' or 'live'" in caught.value.message
    assert "'yolo'" in caught.value.message


def test_every_invalid_variable_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEABLCOIN_PORT", "99999")
    monkeypatch.setenv("HEABLCOIN_DB_SYNCHRONOUS", "OFF")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "HEABLCOIN_PORT" in caught.value.message
    assert "HEABLCOIN_DB_SYNCHRONOUS" in caught.value.message
    assert "'NORMAL' or 'FULL'" in caught.value.message


def test_unknown_toolset_is_rejected_with_the_known_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEABLCOIN_TOOLSETS", "system,teleport")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "teleport" in caught.value.message
    assert "allowed: accounts, ai, analysis, market, risk, system, tasks, trading" in caught.value.message


@pytest.mark.parametrize(("raw", "expected"), [("all", TOOLSET_NAMES), (" System , system ", ("system",))])
def test_toolsets_accept_a_comma_list(monkeypatch: pytest.MonkeyPatch, raw: str, expected: tuple[str, ...]) -> None:
    monkeypatch.setenv("HEABLCOIN_TOOLSETS", raw)
    assert load_settings().toolsets == expected


def test_choices_are_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEABLCOIN_TRADING_MODE", "PAPER")
    monkeypatch.setenv("HEABLCOIN_LOG_LEVEL", "debug")
    monkeypatch.setenv("HEABLCOIN_EXCHANGE", " Binance ")
    settings = load_settings()
    assert (settings.trading_mode, settings.log_level, settings.exchange) == ("paper", "DEBUG", "binance")


def test_exchange_must_look_like_an_exchange_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEABLCOIN_EXCHANGE", "binance; rm -rf /")
    with pytest.raises(ConfigError, match="HEABLCOIN_EXCHANGE"):
        load_settings()


def test_env_files_from_home_and_working_directory_with_environment_winning(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    home = tmp_path / "h"
    home.mkdir()
    (home / ".env").write_text("HEABLCOIN_EXCHANGE=kraken\nHEABLCOIN_PORT=9001\nHEABLCOIN_LOG_LEVEL=ERROR\n")
    (tmp_path / ".env").write_text("HEABLCOIN_PORT=9002\nHEABLCOIN_LOG_LEVEL=WARNING\n")  # cwd is tmp_path
    monkeypatch.setenv("HEABLCOIN_HOME", str(home))
    monkeypatch.setenv("HEABLCOIN_LOG_LEVEL", "DEBUG")
    settings = load_settings()
    assert settings.home == home
    assert settings.exchange == "kraken"  # only in HOME/.env
    assert settings.port == 9002  # ./.env beats HOME/.env
    assert settings.log_level == "DEBUG"  # the environment beats both


def test_a_secret_is_never_echoed_in_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEABLCOIN_HTTPS_PROXY", "http://user:hunter2@proxy:8080")
    monkeypatch.setenv("HEABLCOIN_PORT", "not-a-port")
    with pytest.raises(ConfigError) as caught:
        load_settings(https_proxy=["not", "a", "string"])
    assert "hunter2" not in str(caught.value.to_dict())
    assert "<hidden>" in caught.value.message
