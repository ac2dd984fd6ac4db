"""A loopback fake LLM provider speaking OpenAI chat completions and Anthropic Messages.

Script it with a queue of behaviours (answer, HTTP status with optional Retry-After, a stall past
the client's timeout, malformed JSON); when the queue is empty it answers normally. It records
every request (path, headers, body) so tests can assert what was sent.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class LoopbackServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # many concurrent clients; the default backlog of 5 resets connections

@dataclass
class Behaviour:
    status: int = 200
    text: str = "ok"
    retry_after: float | None = None
    stall: float = 0.0
    malformed: bool = False
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class FakeLLM:
    def __init__(self, name: str = "fake") -> None:
        self.name = name
        self.script: list[Behaviour] = []
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._server = LoopbackServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def then(self, *behaviours: Behaviour) -> FakeLLM:
        with self._lock:
            self.script.extend(behaviours)
        return self

    def start(self) -> FakeLLM:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _next(self) -> Behaviour:
        with self._lock:
            return self.script.pop(0) if self.script else Behaviour(text=f"answer from {self.name}")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms delayed-ACK stall
            protocol_version = "HTTP/1.1"  # keep-alive, as real providers: httpx reuses pooled connections

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                fake.seen.append(Seen(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                behaviour = fake._next()
                time.sleep(behaviour.stall)
                if behaviour.malformed:
                    self._send(200, "{not json", {})
                elif behaviour.status != 200:
                    headers = dict(behaviour.headers)
                    if behaviour.retry_after is not None:
                        headers["Retry-After"] = f"{behaviour.retry_after:g}"
                    self._send(behaviour.status, json.dumps({"error": {"message": f"fake {behaviour.status}"}}),
                               headers)
                elif self.path.endswith("/messages"):
                    self._send(200, json.dumps({
                        "id": "msg_1", "type": "message", "role": "assistant", "model": body.get("model"),
                        "content": [{"type": "text", "text": behaviour.text}], "stop_reason": "end_turn",
                        "usage": {"input_tokens": 11, "output_tokens": 7}}), behaviour.headers)
                else:
                    self._send(200, json.dumps({
                        "id": "chatcmpl-1", "object": "chat.completion", "model": body.get("model"),
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": behaviour.text},
                                     "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}}),
                        behaviour.headers)

            def _send(self, status: int, text: str, headers: dict[str, str]) -> None:
                data = text.encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        return Handler


@contextmanager
def fake_llms(*names: str) -> Iterator[list[FakeLLM]]:
    servers = [FakeLLM(n).start() for n in names]
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()
