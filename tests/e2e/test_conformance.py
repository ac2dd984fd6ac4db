"""The official MCP conformance suite against `heablcoin-mcp serve --transport streamable-http`.

Every scenario passes except those in conformance/baseline.yml (the suite's own fixtures, each with
its reason); the suite exits non-zero on a new failure and on a baseline entry that starts passing.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.e2e.conftest import CLIENT_DIR

BASELINE = Path(__file__).parent / "conformance" / "baseline.yml"


def test_the_conformance_suite_passes_all_but_its_own_fixtures(
        node: str, http_server: Callable[..., str], tmp_path: Path) -> None:
    url = http_server("streamable-http") + "/mcp"
    run = subprocess.run(
        [node, str(CLIENT_DIR / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"),
         "server", "--url", url, "--suite", "all", "--expected-failures", str(BASELINE),
         "-o", str(tmp_path / "results")],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )
    summary = run.stdout[run.stdout.find("=== SUMMARY"):]
    assert run.returncode == 0, summary + run.stderr[-2000:]
    assert "server-initialize: 1 passed" in summary and "completion-complete: 1 passed" in summary
