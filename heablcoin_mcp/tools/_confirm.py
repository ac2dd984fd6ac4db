"""Asking the user: MCP elicitation when the client supports it.

The model can never confirm on the user's behalf: these resolvers run before the tool body and
their answer comes from the client's UI, not from tool arguments. Every question names the
single-use token it is about (``question``), so an answer re-sent after that token was spent meets a
different question and the client must ask the user again.
"""

from __future__ import annotations

from mcp.server.mcpserver import AcceptedElicitation, Context, Elicit, ElicitationResult
from pydantic import BaseModel, Field

from heablcoin_mcp.core.storage.consents import reference


class Confirm(BaseModel):
    confirm: bool = Field(description="Yes, go ahead")


def client_can_ask(ctx: Context) -> bool:
    caps = ctx.client_capabilities
    return caps is not None and caps.elicitation is not None


def answered_yes(answer: ElicitationResult[Confirm]) -> bool:
    return isinstance(answer, AcceptedElicitation) and answer.data is not None and answer.data.confirm


def was_asked(answer: ElicitationResult[Confirm]) -> bool:
    """False when nothing was asked (the resolver returned no question)."""
    return not (isinstance(answer, AcceptedElicitation) and answer.data is None)


def question(text: str, token: str) -> Elicit[Confirm]:
    """Ask ``text``, bound to the single-use ``token`` the answer will be spent on."""
    return Elicit(f"{text} [ref {reference(token)}]", Confirm)
