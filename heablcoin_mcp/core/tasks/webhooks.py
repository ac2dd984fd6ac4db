"""Signed webhooks for finished tasks.

Body: the task summary as JSON. Headers: ``X-Heablcoin-Timestamp`` (unix seconds) and
``X-Heablcoin-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" with the shared secret>``.
Deliveries are queued in SQLite with the task's final state (so none is lost), claimed before each
POST (so two worker processes never send the same one at once) and retried with backoff (1, 2, 4,
... s, up to ``MAX_ATTEMPTS``). Private, loopback and link-local targets are
refused unless explicitly allowed, link-local and metadata targets always (core/netguard.py), checked at
publish and again at delivery; redirects are never followed.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Any

from heablcoin_mcp.core.clock import Clock
from heablcoin_mcp.core.netguard import check_target
from heablcoin_mcp.core.storage import Storage
from heablcoin_mcp.errors import ConfigError, InvalidInput

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 6
TIMEOUT_SECONDS = 10.0
SENDING_GRACE = 3 * TIMEOUT_SECONDS


def sign(secret: str, timestamp: str, body: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()


class Webhooks:
    def __init__(self, db: Storage, clock: Clock, secret: str | None, *, allow_private: bool = False) -> None:
        self.db, self.clock, self.secret, self.allow_private = db, clock, secret, allow_private
        self._client: Any = None

    def check(self, url: str) -> str:
        """Raises ConfigError without a secret, InvalidInput for a bad or private target."""
        if not self.secret:
            raise ConfigError("callbacks need HEABLCOIN_WEBHOOK_SECRET to sign them",
                              hint="Set HEABLCOIN_WEBHOOK_SECRET in the server's configuration.")
        check_target(url, what="callback_url", allow_private=self.allow_private,
                     setting="HEABLCOIN_WEBHOOK_ALLOW_PRIVATE")
        return url

    async def deliver_due(self) -> int:
        """POST every due delivery once; returns how many succeeded."""
        now = self.clock.now()
        rows = self.db.conn.execute("SELECT * FROM webhook_deliveries WHERE status IN ('pending', 'sending') AND "
                                    "next_attempt <= ? ORDER BY id LIMIT 50", (now,)).fetchall()
        delivered = 0
        for row in rows:
            if not self._claim(row["id"], now):
                continue  # another worker process is sending it
            error = await self._post(row["url"], row["body"])
            attempts = row["attempts"] + 1
            with self.db.write() as conn:
                if error is None:
                    conn.execute("UPDATE webhook_deliveries SET status = 'delivered', attempts = ? WHERE id = ?",
                                 (attempts, row["id"]))
                    delivered += 1
                else:
                    final = attempts >= MAX_ATTEMPTS
                    conn.execute("UPDATE webhook_deliveries SET status = ?, attempts = ?, next_attempt = ?, "
                                 "last_error = ? WHERE id = ?", ("failed" if final else "pending", attempts,
                                                                 now + 2 ** (attempts - 1), error, row["id"]))
                    log.warning("webhook for %s failed (attempt %d): %s", row["task_id"], attempts, error)
        return delivered

    def _claim(self, delivery_id: int, now: float) -> bool:
        """Mark a delivery as being sent, so two worker processes never POST it at once. A claim
        left by a process that died mid-send is due again after ``SENDING_GRACE`` seconds."""
        with self.db.write() as conn:
            return conn.execute("UPDATE webhook_deliveries SET status = 'sending', next_attempt = ? WHERE id = ? AND "
                                "status IN ('pending', 'sending') AND next_attempt <= ?",
                                (now + SENDING_GRACE, delivery_id, now)).rowcount == 1

    async def _post(self, url: str, body: str) -> str | None:
        import httpx

        try:
            self.check(url)
        except (InvalidInput, ConfigError) as exc:
            return exc.message
        timestamp = str(int(self.clock.now()))
        headers = {"Content-Type": "application/json", "X-Heablcoin-Timestamp": timestamp,
                   "X-Heablcoin-Signature": sign(self.secret or "", timestamp, body)}
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=TIMEOUT_SECONDS, follow_redirects=False)
        try:
            response = await self._client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return type(exc).__name__
        return None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

