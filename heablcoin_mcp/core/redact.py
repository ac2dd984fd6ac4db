"""Secrets never cross a trust boundary: every configured secret value is scrubbed from text.

A provider or an exchange may echo a key back ("key sk-… rejected"), and a model may be fed that
text. The Redactor knows the values of every variable that holds a secret — the server's own
(auth token, webhook secret, proxy credentials), every variable whose name says it is a secret
(``*KEY*``, ``*SECRET*``, ``*TOKEN*``, ``*PASSWORD*``, ``*PASSPHRASE*``), and every variable an
account or an AI endpoint names — and replaces each value, and its base64, URL and hex encodings,
with ``[redacted]``. It is applied where text enters (provider replies and errors) and where text
leaves (tool results, resources, logs).
"""

from __future__ import annotations

import base64
import logging
import re
import threading
import traceback
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit, urlunsplit

REDACTED = "[redacted]"
MIN_SECRET_LENGTH = 6  # shorter values ("1", "true") would scrub ordinary words
SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|PASSPHRASE|CREDENTIAL", re.IGNORECASE)


def encodings(value: str) -> set[str]:
    """The value and the spellings it commonly travels in."""
    raw = value.encode()
    forms = {value, quote(value, safe=""), quote_plus(value), raw.hex(),
             base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()}
    forms |= {form.rstrip("=") for form in forms}
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH}


class Redactor:
    def __init__(self, environ: Mapping[str, str], *, values: Iterable[str] = ()) -> None:
        """``values`` are secrets that live outside the environment (the parsed settings' secrets)."""
        self.environ = environ
        self._lock = threading.Lock()
        self._names = {name for name in environ if SECRET_NAME.search(name)}
        self._values = {v for v in values if v}
        self._pattern: re.Pattern[str] | None = None
        self._compile()

    def watch(self, *names: str | None) -> None:
        """Also treat these variables' values as secrets (the key variables an account or endpoint names)."""
        fresh = {n for n in names if n and n not in self._names}
        if fresh:
            with self._lock:
                self._names |= fresh
                self._compile()

    def _compile(self) -> None:
        secrets = set(self._values)
        secrets |= {self.environ[n] for n in self._names if self.environ.get(n)}
        forms = {form for secret in secrets if len(secret) >= MIN_SECRET_LENGTH for form in encodings(secret)}
        # Longest first, so a secret is replaced whole before any shorter one inside it.
        alternatives = sorted(forms, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, alternatives))) if alternatives else None

    def scrub(self, text: str) -> str:
        pattern = self._pattern
        return pattern.sub(REDACTED, text) if pattern is not None and text else text

    def scrub_data(self, data: Any) -> Any:
        """The same structure with every string scrubbed (dict keys included)."""
        if self._pattern is None:
            return data
        if isinstance(data, str):
            return self.scrub(data)
        if isinstance(data, dict):
            return {self.scrub(k) if isinstance(k, str) else k: self.scrub_data(v) for k, v in data.items()}
        if isinstance(data, list | tuple):
            return type(data)(self.scrub_data(v) for v in data)
        return data


class RedactingFilter(logging.Filter):
    """Scrubs every record, its arguments and its traceback, before any handler formats it."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self.redactor.scrub(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        if record.exc_text:
            record.exc_text = self.redactor.scrub(record.exc_text)
        return True


def redact_logs(redactor: Redactor, root: logging.Logger | None = None) -> None:
    """Scrub everything the process logs, and keep ccxt's request dumps (headers, signed query strings)
    out of the log even at DEBUG."""
    root = root or logging.getLogger()
    for handler in root.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter(redactor))
    logging.getLogger("ccxt").setLevel(max(root.getEffectiveLevel(), logging.INFO))


def mask_url(url: str | None) -> str | None:
    """Hide the password in a URL such as ``socks5://user:pass@host:1080`` (proxies, databases), for
    reports and logs."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:****@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
