"""Refusals shared by the backends that cannot honour part of a request.

A request field that changes what the client gets back is refused with a 400
naming it, never dropped: a client that asked for logprobs and got an answer
without them cannot tell "none asked" from "none given".
"""

from __future__ import annotations

from gateway.plugin import AgentInvocation, InvalidRequest


def refuse_logprobs(invocation: AgentInvocation, backend_type: str) -> None:
    """``InvalidRequest`` if ``invocation`` asks for logprobs."""
    if invocation.logprobs:
        raise InvalidRequest(
            f"This agent's backend ({backend_type}) cannot return logprobs.",
            param="logprobs",
            code="unsupported_parameter",
        )
