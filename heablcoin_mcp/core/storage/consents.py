"""One answer buys one action.

A question put to the user (leave HALTED, loosen a limit) is bound to a single-use token for the
exact action asked about. The token is spent in the same transaction as the action, so an answer
re-sent later finds it spent, and the question, asked again, carries a new token: the user is
asked again. Orders and distributions bind their questions to their confirmation tokens the same
way (``reference``). It lives with storage because every layer that asks the user (risk, trading,
the AI endpoints) sits above it.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3

from heablcoin_mcp.core.clock import Clock
from heablcoin_mcp.core.storage import Storage
from heablcoin_mcp.errors import ConfirmationRequired

CONSENT_TTL = 60.0


def reference(token: str) -> str:
    """A short tag for a token that can be shown in a question without revealing the token."""
    return hashlib.sha256(token.encode()).hexdigest()[:8]


class Consents:
    def __init__(self, db: Storage, clock: Clock) -> None:
        self.db, self.clock = db, clock

    def ask(self, action: str) -> str:
        """The live token for this action, or a new one: asking twice before answering is one question."""
        now = self.clock.now()
        with self.db.write() as conn:
            row = conn.execute("SELECT token FROM consents WHERE action = ? AND used_at IS NULL AND expires_at > ? "
                               "ORDER BY created_at DESC LIMIT 1", (action, now)).fetchone()
            if row is not None:
                return str(row["token"])
            token = f"ask_{secrets.token_urlsafe(18)}"
            conn.execute("INSERT INTO consents (token, action, created_at, expires_at) VALUES (?, ?, ?, ?)",
                         (token, action, now, now + CONSENT_TTL))
        return token

    def spend(self, conn: sqlite3.Connection, token: str | None, action: str) -> None:
        """Spend the user's answer on this action, inside the caller's transaction.

        Raises:
            ConfirmationRequired: no token, a token for another action, one already spent, or expired.
        """
        now = self.clock.now()
        row = conn.execute("SELECT action, expires_at, used_at FROM consents WHERE token = ?",
                           (token or "",)).fetchone()
        if row is None or row["action"] != action:
            problem = "the answer is not for this change"
        elif row["used_at"] is not None:
            problem = "this answer was already used once"
        elif row["expires_at"] <= now:
            problem = "the answer expired"
        else:
            conn.execute("UPDATE consents SET used_at = ? WHERE token = ?", (now, token))
            return
        raise ConfirmationRequired(f"{problem}; nothing changed",
                                   hint="Call the tool again: the user is asked once more.")
