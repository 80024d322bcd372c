"""The client matrix's cases: which client runs which operation over which upstream,
what each must report, and the failures known today.

One declaration serves three readers: the tests parametrize over ``cases()`` and mark
the known failures ``xfail(strict=True)`` (so a fix turns the suite red until its entry
goes), the checks below say what "works" means, and ``tests/matrix/table.py`` renders
``docs/clients.md`` from the same entries (``tests/matrix/test_table.py`` keeps it equal).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = Path(__file__).resolve().parent / "node"

PROMPT = "Say hello to the matrix"
MOCK_TEXT = "Hello from the LiteLLM mock."
REASONING = "The user wants 1 items echoed."  # what the echo backend reasons, for one item
TOOL: dict[str, Any] = {
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
}
TOOL_RESULT_PREFIX = "The tool returned: sunny in "  # echo's answer to the tool's output


@dataclass(frozen=True)
class Client:
    id: str
    label: str  # as the table names it
    language: str  # "python" or "node"
    api: str  # "chat", "responses" or "messages"
    package: str  # the package whose version the table shows
    auth_error: str  # the class (or AI SDK name) a 401 raises
    not_found_error: str
    rate_limit_error: str


_OPENAI_PY = ("AuthenticationError", "NotFoundError", "RateLimitError")
_AI_SDK = ("AI_APICallError",) * 3
# langchain-openai raises its own subclasses of openai's errors.
_LANGCHAIN = ("OpenAIAuthenticationError", "OpenAIModelNotFoundError", "OpenAIRateLimitError")
CLIENTS: tuple[Client, ...] = (
    Client("py-openai-chat", "openai · chat.completions", "python", "chat", "openai", *_OPENAI_PY),
    Client(
        "py-openai-responses", "openai · responses", "python", "responses", "openai", *_OPENAI_PY
    ),
    Client(
        "py-agents-responses",
        "openai-agents · OpenAIResponsesModel",
        "python",
        "responses",
        "openai-agents",
        *_OPENAI_PY,
    ),
    Client(
        "py-agents-chat",
        "openai-agents · OpenAIChatCompletionsModel",
        "python",
        "chat",
        "openai-agents",
        *_OPENAI_PY,
    ),
    Client("py-anthropic", "anthropic · messages", "python", "messages", "anthropic", *_OPENAI_PY),
    Client(
        "py-langchain-chat",
        "langchain-openai · ChatOpenAI",
        "python",
        "chat",
        "langchain-openai",
        *_LANGCHAIN,
    ),
    Client(
        "py-langchain-responses",
        "langchain-openai · ChatOpenAI(use_responses_api)",
        "python",
        "responses",
        "langchain-openai",
        *_LANGCHAIN,
    ),
    Client("node-openai-chat", "openai · chat.completions", "node", "chat", "openai", *_OPENAI_PY),
    Client(
        "node-openai-responses", "openai · responses", "node", "responses", "openai", *_OPENAI_PY
    ),
    Client(
        "node-ai-openai-chat",
        "ai + @ai-sdk/openai · chat",
        "node",
        "chat",
        "@ai-sdk/openai",
        *_AI_SDK,
    ),
    Client(
        "node-ai-openai-responses",
        "ai + @ai-sdk/openai · responses",
        "node",
        "responses",
        "@ai-sdk/openai",
        *_AI_SDK,
    ),
    Client(
        "node-ai-anthropic",
        "ai + @ai-sdk/anthropic",
        "node",
        "messages",
        "@ai-sdk/anthropic",
        *_AI_SDK,
    ),
)
CLIENT = {c.id: c for c in CLIENTS}

# operation -> what the table calls it
OPERATIONS: dict[str, str] = {
    "text": "text",
    "stream": "streamed text",
    "tools": "tool loop",
    "reasoning": "reasoning",
    "reasoning_stream": "streamed reasoning",
    "usage": "usage",
    "usage_stream": "streamed usage",
    "error_auth": "bad key → 401",
    "error_model": "unknown model → 404",
    "error_upstream": "upstream 429",
}

# upstream -> (what the table calls it, the agent each operation calls)
UPSTREAMS: dict[str, tuple[str, dict[str, str]]] = {
    "echo": (
        "the `echo` backend",
        {
            "text": "echo",
            "stream": "echo",
            "tools": "echo",
            "reasoning": "think",
            "reasoning_stream": "think",
            "usage": "echo",
            "usage_stream": "echo",
            "error_auth": "echo",
            "error_model": "no-such-agent",
        },
    ),
    "litellm": (
        "the LiteLLM proxy as an `openai_chat` upstream",
        {
            "text": "litellm-mock",
            "stream": "litellm-mock",
            "tools": "litellm-relay",
            "reasoning": "litellm-think",
            "reasoning_stream": "litellm-think",
            "usage": "litellm-mock",
            "usage_stream": "litellm-mock",
            "error_upstream": "litellm-limited",
        },
    ),
}

_CHAT_REASONING = (
    "the client does not read Chat Completions' `reasoning_content` (an extension OpenAI's "
    "API does not have)"
)
# (client, operation) -> why the cell does not apply
NOT_APPLICABLE: dict[tuple[str, str], str] = {
    ("py-langchain-chat", "reasoning"): _CHAT_REASONING,
    ("py-langchain-chat", "reasoning_stream"): _CHAT_REASONING,
    ("node-ai-openai-chat", "reasoning"): _CHAT_REASONING,
    ("node-ai-openai-chat", "reasoning_stream"): _CHAT_REASONING,
}

# (client, operation, upstream or "*") -> why it fails today. Empty: the failures the
# matrix found (`"citations": null` in Messages text blocks; reasoning streamed as
# `response.reasoning.delta` and never as a summary) are fixed in the renderers.
KNOWN_FAILURES: dict[tuple[str, str, str], str] = {}


# (client, operation) -> how it works (shown in the table beside "works")
WORKS_WITH: dict[tuple[str, str], str] = {
    ("py-agents-chat", "usage_stream"): (
        "with `ModelSettings(include_usage=True)`: over Chat Completions the Agents SDK asks "
        "for streamed usage only from api.openai.com, and reports 0 tokens otherwise"
    ),
    ("py-openai-chat", "reasoning"): (
        "as `reasoning_content`, a field the SDK keeps but does not type (`model_extra`)"
    ),
    ("node-openai-chat", "reasoning"): "as `reasoning_content`, a field the SDK's types lack",
}
WORKS_WITH[("py-openai-chat", "reasoning_stream")] = WORKS_WITH[("py-openai-chat", "reasoning")]
WORKS_WITH[("node-openai-chat", "reasoning_stream")] = WORKS_WITH[("node-openai-chat", "reasoning")]


@dataclass(frozen=True)
class Case:
    client: Client
    op: str
    upstream: str

    @property
    def id(self) -> str:
        return f"{self.client.id}-{self.op}-{self.upstream}"

    @property
    def model(self) -> str:
        return UPSTREAMS[self.upstream][1][self.op]

    @property
    def known_failure(self) -> str | None:
        for upstream in (self.upstream, "*"):
            reason = KNOWN_FAILURES.get((self.client.id, self.op, upstream))
            if reason is not None:
                return reason
        return None


def cases(language: str | None = None, upstream: str | None = None) -> list[Case]:
    """Every applicable case, in table order."""
    return [
        Case(client, op, up)
        for up, (_, models) in UPSTREAMS.items()
        if upstream in (None, up)
        for client in CLIENTS
        if language in (None, client.language)
        for op in OPERATIONS
        if op in models and (client.id, op) not in NOT_APPLICABLE
    ]


def param(case: Case) -> Any:
    """``case`` as a pytest parameter, a strict xfail when it is a known failure."""
    marks = []
    if case.known_failure:
        hint = " [fixed? delete its KNOWN_FAILURES entry, run python -m tests.matrix.table]"
        marks.append(pytest.mark.xfail(strict=True, reason=case.known_failure + hint))
    return pytest.param(case, id=case.id, marks=marks)


def expected_text(case: Case) -> str:
    return MOCK_TEXT if case.model == "litellm-mock" else PROMPT


def check(case: Case, result: dict[str, Any]) -> None:
    """Assert that ``result`` (what the client reported, as the scripts print it) is right."""
    op, client = case.op, case.client
    if op.startswith("error_"):
        assert not result["ok"], f"expected an error, the client reported {result}"
        status, name = {
            "error_auth": (401, client.auth_error),
            "error_model": (404, client.not_found_error),
            "error_upstream": (429, client.rate_limit_error),
        }[op]
        assert (result["error"]["name"], result["error"]["status"]) == (name, status), result
        return
    assert result["ok"], f"{case.id} failed: {json.dumps(result['error'])}"
    if op in ("text", "stream"):
        assert result["text"] == expected_text(case), result
    elif op == "tools":
        assert [c["name"] for c in result["calls"]] == [TOOL["name"]], result
        assert result["text"].startswith(TOOL_RESULT_PREFIX), result
    elif op in ("reasoning", "reasoning_stream"):
        assert result["text"] == PROMPT, result
        assert result["reasoning"] == REASONING, result
    elif op in ("usage", "usage_stream"):
        assert result["input"] > 0 and result["output"] > 0, result
        assert result["total"] == result["input"] + result["output"], result


def versions() -> dict[str, str]:
    """Package -> the version the locks pin (Python: requirements/; Node: the npm lock)."""
    found: dict[str, str] = {}
    test_lock = (ROOT / "requirements" / "test.txt").read_text()
    for name in ("openai", "openai-agents", "anthropic", "langchain-openai"):
        found[name] = re.findall(rf"(?m)^{re.escape(name)}==(\S+)", test_lock)[0]
    litellm_lock = (ROOT / "requirements" / "litellm.txt").read_text()
    found["litellm"] = re.findall(r"(?m)^litellm==(\S+)", litellm_lock)[0]
    packages = json.loads((NODE_DIR / "package-lock.json").read_text())["packages"]
    for name in ("openai", "ai", "@ai-sdk/openai", "@ai-sdk/anthropic"):
        found[f"node:{name}"] = packages[f"node_modules/{name}"]["version"]
    return found
