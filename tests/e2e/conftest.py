from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

SERVER = [sys.executable, "-m", "heablcoin_mcp"]
# The official TypeScript SDK client, MCP Inspector and the conformance suite, pinned in
# package-lock.json, installed on first use.
CLIENT_DIR = Path(__file__).parent / "ts_client"


def server_env(home: Path, **extra: str) -> dict[str, str]:
    # HEABLCOIN_DATABASE_URL is the test's own (a PostgreSQL schema, see tests/conftest.py)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEABLCOIN_") or k == "HEABLCOIN_DATABASE_URL"}
    env.update(HEABLCOIN_HOME=str(home), HEABLCOIN_EXCHANGE="sim", HEABLCOIN_LOG_LEVEL="WARNING", **extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"server did not listen on {port} within {timeout}s")


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Start `heablcoin-mcp serve` over HTTP; returns the base URL. Stopped after the test."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(transport: str, **extra: str) -> str:
        port = free_port()
        process = subprocess.Popen(
            [*SERVER, "serve", "--transport", transport, "--port", str(port)],
            env=server_env(tmp_path / "home", **extra),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        processes.append(process)
        wait_for_port(port, process)
        return f"http://127.0.0.1:{port}"

    yield start
    for process in processes:
        process.terminate()
        try:
            process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


@pytest.fixture(scope="session")
def node() -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI needs Node.js and npm for the TypeScript SDK client checks")
        pytest.skip("Node.js and npm are not installed: the TypeScript SDK and Inspector checks need them")
    installed = CLIENT_DIR / "node_modules" / "@modelcontextprotocol"
    if not all((installed / package).exists() for package in ("sdk", "inspector", "conformance")):
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=CLIENT_DIR, check=True,
                       timeout=300, stdin=subprocess.DEVNULL)
    return node
