from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from heablcoin_mcp.app import App
from heablcoin_mcp.config import Settings
from heablcoin_mcp.core.storage import Storage, open_storage
from tests.fakes.clock import ManualClock
from tests.services import postgres_schema

ENGINES = ("sqlite", "postgresql")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "both_engines: run each test on SQLite and on PostgreSQL (the storage "
                                       "contract: the same tests, parametrised by engine)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "engine_name" in metafunc.fixturenames and metafunc.definition.get_closest_marker("both_engines"):
        metafunc.parametrize("engine_name", ENGINES, indirect=True)


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
def engine_name(request: pytest.FixtureRequest) -> str:
    """The storage engine under test: SQLite unless the test is marked ``both_engines``."""
    return getattr(request, "param", "sqlite")


@pytest.fixture(autouse=True)
def database_url(engine_name: str, clean_environ: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[str | None]:
    """None for SQLite. For PostgreSQL a URL into a schema of this test's own (dropped after), set as
    HEABLCOIN_DATABASE_URL so that every App and CLI the test starts uses it."""
    if engine_name == "sqlite":
        yield None
        return
    with postgres_schema() as url:
        monkeypatch.setenv("HEABLCOIN_DATABASE_URL", url)
        yield url


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(_env_file=None, home=tmp_path / "home", exchange="sim")  # type: ignore[call-arg]


@pytest.fixture
def storage(tmp_path: Path, database_url: str | None) -> Iterator[Storage]:
    """A migrated, empty database on the engine under test."""
    db = open_storage(database_url, tmp_path / "heablcoin.db")
    db.migrate()
    yield db
    db.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def app(settings: Settings, clock: ManualClock) -> AsyncIterator[App]:
    application = App(settings, clock=clock)
    yield application
    await application.aclose()
