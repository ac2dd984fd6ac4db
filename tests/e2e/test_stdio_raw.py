"""Every line a client sends over stdio gets an answer, so no client ever hangs on a bad message."""

from __future__ import annotations

import json
import select
import subprocess
from pathlib import Path
from typing import Any

from tests.e2e.conftest import SERVER, server_env

INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
              "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                         "clientInfo": {"name": "raw", "version": "0"}}}
BAD_LINES: list[tuple[bytes, int | str | None, int]] = [
    (b'{"jsonrpc":"2.0","id":2,', 2, -32700),
    (b'{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"get_ticker","arguments":{"symbol":"\\ud800"}}}',
     3, -32600),
    (b'{"jsonrpc":"2.0","id":4,"method":"tools/list","params":' + b"[" * 1500 + b"]" * 1500 + b"}", 4, -32700),
    (b'\xef\xbb\xbf{"jsonrpc":"2.0","id":5,"method":"tools/list"}', 5, -32700),
    (b'{"jsonrpc":"2.0","id":"six","method":"tools/list","params":"x"}', "six", -32600),
    (b'{"jsonrpc":"1.0","id":7,"method":"tools/list"}', 7, -32600),
    (b"[1,2]", None, -32600),
    (b"\x00\x01garbage", None, -32700),
]


class Raw:
    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process

    def send(self, line: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + b"\n")
        self.process.stdin.flush()

    def receive(self, timeout: float = 10) -> dict[str, Any]:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        assert ready, "no answer: the client would hang"
        answer: dict[str, Any] = json.loads(self.process.stdout.readline())
        return answer


def test_every_malformed_line_gets_a_json_rpc_error_and_the_session_goes_on(tmp_path: Path) -> None:
    process = subprocess.Popen([*SERVER, "serve"], env=server_env(tmp_path / "home"), stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    raw = Raw(process)
    try:
        raw.send(json.dumps(INITIALIZE).encode())
        assert raw.receive(30)["result"]["serverInfo"]["name"] == "heablcoin-mcp"
        raw.send(b'{"jsonrpc":"2.0","method":"notifications/initialized"}')
        answers = []
        for line, _, _ in BAD_LINES:
            raw.send(line)
            answers.append(raw.receive())
        raw.send(b'{"jsonrpc":"2.0","method":"notifications/nonsense","params":"x"}')  # a notification: no answer
        raw.send(b'{"jsonrpc":"2.0","id":99,"method":"ping"}')
        pong = raw.receive()
    finally:
        assert process.stdin is not None and process.stdout is not None
        process.stdin.close()
        process.wait(30)
        process.stdout.close()
    assert [(a["id"], a["error"]["code"]) for a in answers] == [(i, c) for _, i, c in BAD_LINES]
    assert pong == {"jsonrpc": "2.0", "id": 99, "result": {}}
