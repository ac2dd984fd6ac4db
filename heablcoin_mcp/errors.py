"""One error tree for the whole product.

    HeablError                      code, message, hint, retryable
    ├── InvalidInput                the caller sent something we cannot use; fix the arguments
    │   └── ConfigError             a setting is invalid; fix the environment / .env
    ├── NotFound                    the named thing does not exist
    ├── RiskRejected                the risk engine refused; carries the failed rule codes
    ├── ConfirmationRequired        the user must confirm before anything is sent
    ├── UpstreamError               someone else failed; usually worth retrying
    │   ├── ExchangeUnavailable     network, timeout, 5xx, maintenance
    │   ├── ExchangeRejected        the exchange answered no (not retryable as is)
    │   ├── ProviderUnavailable
    │   └── RateLimited             carries retry_after seconds
    ├── Busy                        the database is locked by another process for too long; retry soon
    ├── OutcomeUnknown              a write was sent but its answer was lost: reconcile, never resend
    └── Internal                    our bug; details go to the log, never to the caller

Data travels as attributes, not inside formatted strings. Control-flow signals (e.g. "retry this
task") deliberately stay outside this tree so that `except HeablError` cannot swallow them.
"""

from __future__ import annotations

from typing import Any


class HeablError(Exception):
    code = "error"
    retryable = False

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        retryable: bool | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details or {}
        if retryable is not None:
            self.retryable = retryable

    def to_dict(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "hint": self.hint,
            "retryable": self.retryable,
        }
        if self.details:
            error["details"] = self.details
        return error


class InvalidInput(HeablError):
    code = "invalid_input"


class ConfigError(InvalidInput):
    code = "invalid_config"


class NotFound(HeablError):
    code = "not_found"


class RiskRejected(HeablError):
    code = "risk_rejected"


class ConfirmationRequired(HeablError):
    code = "confirmation_required"


class UpstreamError(HeablError):
    code = "upstream_error"
    retryable = True


class ExchangeUnavailable(UpstreamError):
    code = "exchange_unavailable"


class ExchangeRejected(UpstreamError):
    code = "exchange_rejected"
    retryable = False


class ProviderUnavailable(UpstreamError):
    code = "provider_unavailable"


class RateLimited(UpstreamError):
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after
        if retry_after is not None:
            self.details.setdefault("retry_after_seconds", round(retry_after, 3))


class Busy(HeablError):
    code = "busy"
    retryable = True


class OutcomeUnknown(HeablError):
    code = "outcome_unknown"


class Internal(HeablError):
    code = "internal"
