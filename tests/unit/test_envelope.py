from __future__ import annotations

import logging

import pytest
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent

from heablcoin_mcp.errors import ExchangeUnavailable, HeablError, RateLimited, RiskRejected
from heablcoin_mcp.tools import _envelope
from tests.envelope import error_envelope


def test_a_heabl_error_becomes_the_envelope_as_json_text_without_structured_content() -> None:
    error = ExchangeUnavailable("binance did not answer", hint="Check the network or use HEABLCOIN_EXCHANGE=sim.")
    result = _envelope.error_result(error)
    assert result.is_error is True
    assert result.structured_content is None  # it would contradict the tool's output schema
    assert error_envelope(result) == {
        "code": "exchange_unavailable",
        "message": "binance did not answer",
        "hint": "Check the network or use HEABLCOIN_EXCHANGE=sim.",
        "retryable": True,
    }


def test_rate_limited_carries_retry_after_as_data() -> None:
    error = RateLimited("slow down", retry_after=2.5)
    assert error.to_dict()["details"] == {"retry_after_seconds": 2.5}
    assert error.retryable is True


def test_risk_rejection_is_not_retryable_by_default_and_can_say_otherwise() -> None:
    assert RiskRejected("too big").retryable is False
    assert HeablError("x", retryable=True).retryable is True


def test_a_crash_becomes_internal_without_its_message_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    wrapped = ToolError("Error executing tool place")
    wrapped.__cause__ = RuntimeError("db password is sk-secret-1234")
    with caplog.at_level(logging.ERROR):
        error = _envelope.translate("place", wrapped)
    assert error.code == "internal"
    assert "sk-secret" not in str(error.to_dict())
    assert "sk-secret-1234" in caplog.text  # the traceback goes to the log (stderr), not to the client


def test_unknown_tool_is_not_found() -> None:
    assert _envelope.translate("nope", ToolError("Unknown tool: nope")).code == "not_found"


def test_an_oversized_result_is_refused_with_a_hint_and_valid_json() -> None:
    big = CallToolResult(content=[], structured_content={"rows": ["x" * 100] * 2000})
    shaped = _envelope.shape_success("get_rows", big)
    assert error_envelope(shaped)["code"] == "invalid_input"
    assert error_envelope(shaped)["details"]["limit"] == _envelope.MAX_RESULT_CHARS


def test_a_normal_result_is_compact_json_text() -> None:
    shaped = _envelope.shape_success("t", CallToolResult(content=[], structured_content={"a": 1, "b": [1, 2]}))
    text = shaped.content[0]
    assert isinstance(text, TextContent)
    assert text.text == '{"a":1,"b":[1,2]}'


def test_floats_are_rounded_to_what_they_mean_and_nothing_else_changes() -> None:
    raw = {"spread": 10.459999999991851, "change_24h_pct": 4.695344257048206, "ema": 104503.24706525182,
           "rows": [[1796073720000.0, 0.000012345678912]], "fee": "0.10548128", "count": 3, "nan": float("nan")}
    shaped = _envelope.meaningful(raw)
    assert shaped["spread"] == 10.46 and shaped["change_24h_pct"] == 4.7 and shaped["ema"] == 104503.2471
    assert shaped["rows"] == [[1796073720000.0, 0.00001234567891]]
    assert shaped["fee"] == "0.10548128" and shaped["count"] == 3 and shaped["nan"] != shaped["nan"]
