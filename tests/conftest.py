from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from heablcoin_mcp.app import App
from heablcoin_mcp.config import Settings
from tests.fakes.clock import ManualClock


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No test sees the developer's HEABLCOIN_* variables or ./.env."""
    for key in list(os.environ):
        if key.startswith("HEABLCOIN_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    yield


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(_env_file=None, home=tmp_path / "home", exchange="sim")  # type: ignore[call-arg]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def app(settings: Settings, clock: ManualClock) -> AsyncIterator[App]:
    application = App(settings, clock=clock)
    yield application
    await application.aclose()
