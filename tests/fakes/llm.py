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
from typing import Any

from tests.fakes.http import FakeHandler, Loopback

JSON = {"Content-Type": "application/json"}


@dataclass
class Behaviour:
    status: int = 200
    text: str = "ok"
    retry_after: float | None = None
    stall: float = 0.0
    malformed: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    echo_key: bool = False  # put the credential the request carried into the answer or the error message


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
        self._loopback = Loopback(self._handler())

    @property
    def url(self) -> str:
        return f"{self._loopback.origin}/v1"

    def then(self, *behaviours: Behaviour) -> FakeLLM:
        with self._lock:
            self.script.extend(behaviours)
        return self

    def start(self) -> FakeLLM:
        self._loopback.start_serving()
        return self

    def stop(self) -> None:
        self._loopback.stop()

    def _next(self) -> Behaviour:
        with self._lock:
            return self.script.pop(0) if self.script else Behaviour(text=f"answer from {self.name}")

    def _handler(self) -> type[FakeHandler]:
        fake = self

        class Handler(FakeHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real providers: httpx reuses pooled connections

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                fake.seen.append(Seen(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                behaviour = fake._next()
                if behaviour.echo_key:
                    key = self.headers.get("x-api-key") or self.headers.get("Authorization", "").removeprefix("Bearer ")
                    behaviour.text = f"{behaviour.text} (your key {key} was noted)"
                time.sleep(behaviour.stall)
                if behaviour.malformed:
                    self.send(200, "{not json", JSON)
                elif behaviour.status != 200:
                    headers = dict(behaviour.headers)
                    if behaviour.retry_after is not None:
                        headers["Retry-After"] = f"{behaviour.retry_after:g}"
                    message = behaviour.text if behaviour.echo_key else f"fake {behaviour.status}"
                    self.send(behaviour.status, json.dumps({"error": {"message": message}}), JSON | headers)
                elif self.path.endswith("/messages"):
                    self.send(200, json.dumps({
                        "id": "msg_1", "type": "message", "role": "assistant", "model": body.get("model"),
                        "content": [{"type": "text", "text": behaviour.text}], "stop_reason": "end_turn",
                        "usage": {"input_tokens": 11, "output_tokens": 7}}), JSON | behaviour.headers)
                else:
                    self.send(200, json.dumps({
                        "id": "chatcmpl-1", "object": "chat.completion", "model": body.get("model"),
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": behaviour.text},
                                     "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}}),
                        JSON | behaviour.headers)

        return Handler


@contextmanager
def fake_llms(*names: str) -> Iterator[list[FakeLLM]]:
    servers = [FakeLLM(n).start() for n in names]
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()
