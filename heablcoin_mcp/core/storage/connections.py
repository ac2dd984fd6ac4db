"""One connection per thread, for either engine: opened on first use, kept, closed all at once."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

C = TypeVar("C")


class ThreadConnections(Generic[C]):
    def __init__(self, open_connection: Callable[[], C], usable: Callable[[C], bool] = lambda _: True) -> None:
        """``usable``: False for a connection that must be replaced (closed or broken)."""
        self._open = open_connection
        self._usable = usable
        self._local = threading.local()
        self._opened: list[C] = []
        self._lock = threading.Lock()

    def get(self) -> C:
        """This thread's connection."""
        conn: C | None = getattr(self._local, "conn", None)
        if conn is None or not self._usable(conn):
            conn = self._open()
            self._local.conn = conn
            with self._lock:
                self._opened.append(conn)
        return conn

    def opened(self) -> list[C]:
        with self._lock:
            return list(self._opened)

    def close_all(self, close: Callable[[C], None]) -> None:
        """Close every connection opened so far; a thread's next ``get`` opens a new one."""
        with self._lock:
            for conn in self._opened:
                close(conn)
            self._opened.clear()
        self._local = threading.local()
