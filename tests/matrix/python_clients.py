"""The Python clients of the matrix: each operation as a client library's user writes it.

Every operation returns what the client reported, in the shape ``node/matrix.mjs``
prints (``{"ok": True, ...}``, or ``{"ok": False, "error": {name, status, message}}``),
so ``cases.check`` judges both languages alike.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anthropic
import openai

from tests.matrix.cases import PROMPT, TOOL, Case

Result = dict[str, Any]


@dataclass(frozen=True)
class Profile:
    base_url: str  # the gateway, without /v1
    key: str
    bad_key: str


def tool_output(args: dict[str, Any]) -> str:
    return f"sunny in {args.get('city', '?')}"


def run(case: Case, profile: Profile) -> Result:
    """Run one case's operation with its client; an exception becomes a failed result."""
    operation = OPERATIONS[case.client.id][case.op]
    key = profile.bad_key if case.op == "error_auth" else profile.key
    try:
        return {"ok": True, **operation(profile.base_url, key, case.model)}
    except Exception as exc:
        return {
            "ok": False,
            "error": {
                "name": type(exc).__name__,
                "status": getattr(exc, "status_code", None),
                "message": str(exc)[:500],
            },
        }


def _oai(base: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0, timeout=20)


# ---- openai: chat.completions -----------------------------------------------------------


def chat_text(base: str, key: str, model: str) -> Result:
    r = _oai(base, key).chat.completions.create(
        model=model, messages=[{"role": "user", "content": PROMPT}]
    )
    return {"text": r.choices[0].message.content}


def chat_stream(base: str, key: str, model: str) -> Result:
    stream = _oai(base, key).chat.completions.create(
        model=model, messages=[{"role": "user", "content": PROMPT}], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    return {"text": text}


def chat_tools(base: str, key: str, model: str) -> Result:
    client = _oai(base, key)
    messages: list[Any] = [{"role": "user", "content": PROMPT}]
    calls = []
    for _ in range(4):
        r = client.chat.completions.create(
            model=model, messages=messages, tools=[{"type": "function", "function": TOOL}]
        )
        message = r.choices[0].message
        if not message.tool_calls:
            return {"calls": calls, "text": message.content}
        messages.append(message.model_dump(exclude_none=True))
        for call in message.tool_calls:
            assert call.type == "function"
            args = json.loads(call.function.arguments)
            calls.append({"name": call.function.name, "args": args})
            messages.append({"role": "tool", "tool_call_id": call.id, "content": tool_output(args)})
    raise AssertionError("the tool loop did not end")


def chat_reasoning(base: str, key: str, model: str) -> Result:
    r = _oai(base, key).chat.completions.create(
        model=model, messages=[{"role": "user", "content": PROMPT}]
    )
    message = r.choices[0].message
    return {
        "text": message.content,
        "reasoning": (message.model_extra or {}).get("reasoning_content"),
    }


def chat_reasoning_stream(base: str, key: str, model: str) -> Result:
    stream = _oai(base, key).chat.completions.create(
        model=model, messages=[{"role": "user", "content": PROMPT}], stream=True
    )
    text = reasoning = ""
    for chunk in stream:
        if chunk.choices:
            delta = chunk.choices[0].delta
            text += delta.content or ""
            reasoning += (delta.model_extra or {}).get("reasoning_content") or ""
    return {"text": text, "reasoning": reasoning}


def chat_usage(base: str, key: str, model: str) -> Result:
    r = _oai(base, key).chat.completions.create(
        model=model, messages=[{"role": "user", "content": PROMPT}]
    )
    assert r.usage is not None
    u = r.usage
    return {"input": u.prompt_tokens, "output": u.completion_tokens, "total": u.total_tokens}


def chat_usage_stream(base: str, key: str, model: str) -> Result:
    stream = _oai(base, key).chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": PROMPT}],
        stream=True,
        stream_options={"include_usage": True},
    )
    u = [c.usage for c in stream if c.usage][-1]
    return {"input": u.prompt_tokens, "output": u.completion_tokens, "total": u.total_tokens}


# ---- openai: responses ------------------------------------------------------------------


def responses_text(base: str, key: str, model: str) -> Result:
    r = _oai(base, key).responses.create(model=model, input=PROMPT)
    return {"text": r.output_text}


def responses_stream(base: str, key: str, model: str) -> Result:
    with _oai(base, key).responses.stream(model=model, input=PROMPT) as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert final.output_text == text
    return {"text": text}


def responses_tools(base: str, key: str, model: str) -> Result:
    client = _oai(base, key)
    items: list[Any] = [{"role": "user", "content": PROMPT}]
    calls = []
    for _ in range(4):
        r = client.responses.create(model=model, input=items, tools=[{"type": "function", **TOOL}])
        function_calls = [item for item in r.output if item.type == "function_call"]
        if not function_calls:
            return {"calls": calls, "text": r.output_text}
        items += [item.model_dump(exclude_none=True) for item in r.output]
        for call in function_calls:
            args = json.loads(call.arguments)
            calls.append({"name": call.name, "args": args})
            items.append(
                {
                    "type": "function_call_output",
                    "call_id": call.call_id,
                    "output": tool_output(args),
                }
            )
    raise AssertionError("the tool loop did not end")


def responses_reasoning(base: str, key: str, model: str) -> Result:
    """Reasoning as OpenAI's docs read it: the item's summary, else its reasoning text."""
    r = _oai(base, key).responses.create(model=model, input=PROMPT)
    reasoning = "".join(
        part.text
        for item in r.output
        if item.type == "reasoning"
        for part in [*(item.summary or ()), *(item.content or ())]
    )
    return {"text": r.output_text, "reasoning": reasoning}


def responses_reasoning_stream(base: str, key: str, model: str) -> Result:
    text = reasoning = ""
    with _oai(base, key).responses.stream(model=model, input=PROMPT) as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                text += event.delta
            elif event.type in (
                "response.reasoning_summary_text.delta",
                "response.reasoning_text.delta",
            ):
                reasoning += event.delta
        stream.get_final_response()
    return {"text": text, "reasoning": reasoning}


def responses_usage(base: str, key: str, model: str) -> Result:
    u = _oai(base, key).responses.create(model=model, input=PROMPT).usage
    assert u is not None
    return {"input": u.input_tokens, "output": u.output_tokens, "total": u.total_tokens}


def responses_usage_stream(base: str, key: str, model: str) -> Result:
    with _oai(base, key).responses.stream(model=model, input=PROMPT) as stream:
        for _ in stream:
            pass
        u = stream.get_final_response().usage
    assert u is not None
    return {"input": u.input_tokens, "output": u.output_tokens, "total": u.total_tokens}


# ---- openai-agents ----------------------------------------------------------------------


def _agents(chat: bool) -> dict[str, Callable[[str, str, str], Result]]:
    """The Agents SDK's operations over its Responses model or its Chat Completions one."""
    import agents

    # Its traces would go to OpenAI's servers: none leave a test.
    agents.set_tracing_disabled(True)

    def agent(base: str, key: str, model: str, tools: bool = False) -> tuple[Any, Any]:
        client = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0, timeout=20)
        llm = (
            agents.OpenAIChatCompletionsModel(model=model, openai_client=client)
            if chat
            else agents.OpenAIResponsesModel(model=model, openai_client=client)
        )

        @agents.function_tool
        def get_weather(city: str) -> str:
            """The weather in a city."""
            return tool_output({"city": city})

        # Over Chat Completions the SDK asks for streamed usage only from api.openai.com:
        # anyone else's server needs include_usage, as its docs say.
        settings = agents.ModelSettings(include_usage=True if chat else None)
        found = agents.Agent(
            name="matrix", model=llm, tools=[get_weather] if tools else [], model_settings=settings
        )
        return found, client

    def run_agent(base: str, key: str, model: str, *, stream: bool, tools: bool = False) -> Any:
        async def go() -> Any:
            found, client = agent(base, key, model, tools)
            try:
                if not stream:
                    return await agents.Runner.run(found, PROMPT)
                result = agents.Runner.run_streamed(found, PROMPT)
                async for _ in result.stream_events():
                    pass
                return result
            finally:
                await client.close()

        return asyncio.run(go())

    def reasoning_of(result: Any) -> str:
        texts = []
        for item in result.new_items:
            if isinstance(item, agents.ReasoningItem):
                raw = item.raw_item
                texts += [part.text for part in raw.content or ()]
                texts += [part.text for part in raw.summary or ()] if not raw.content else []
        return "".join(texts)

    def text(base: str, key: str, model: str) -> Result:
        return {"text": run_agent(base, key, model, stream=False).final_output}

    def stream(base: str, key: str, model: str) -> Result:
        return {"text": run_agent(base, key, model, stream=True).final_output}

    def tools(base: str, key: str, model: str) -> Result:
        result = run_agent(base, key, model, stream=False, tools=True)
        calls = [
            {"name": item.raw_item.name, "args": json.loads(item.raw_item.arguments)}
            for item in result.new_items
            if isinstance(item, agents.ToolCallItem)
        ]
        return {"calls": calls, "text": result.final_output}

    def reasoning(base: str, key: str, model: str) -> Result:
        result = run_agent(base, key, model, stream=False)
        return {"text": result.final_output, "reasoning": reasoning_of(result)}

    def reasoning_stream(base: str, key: str, model: str) -> Result:
        result = run_agent(base, key, model, stream=True)
        return {"text": result.final_output, "reasoning": reasoning_of(result)}

    def usage_of(result: Any) -> Result:
        u = result.context_wrapper.usage
        return {"input": u.input_tokens, "output": u.output_tokens, "total": u.total_tokens}

    return {
        "text": text,
        "stream": stream,
        "tools": tools,
        "reasoning": reasoning,
        "reasoning_stream": reasoning_stream,
        "usage": lambda b, k, m: usage_of(run_agent(b, k, m, stream=False)),
        "usage_stream": lambda b, k, m: usage_of(run_agent(b, k, m, stream=True)),
        "error_auth": text,
        "error_model": text,
        "error_upstream": text,
    }


# ---- anthropic --------------------------------------------------------------------------


def _ant(base: str, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=base, api_key=key, max_retries=0, timeout=20)


def _messages(model: str) -> dict[str, Any]:
    return {"model": model, "max_tokens": 256, "messages": [{"role": "user", "content": PROMPT}]}


def messages_text(base: str, key: str, model: str) -> Result:
    r = _ant(base, key).messages.create(**_messages(model))
    return {"text": "".join(b.text for b in r.content if b.type == "text")}


def messages_stream(base: str, key: str, model: str) -> Result:
    with _ant(base, key).messages.stream(**_messages(model)) as stream:
        text = "".join(stream.text_stream)
        stream.get_final_message()
    return {"text": text}


def messages_tools(base: str, key: str, model: str) -> Result:
    client = _ant(base, key)
    messages: list[Any] = [{"role": "user", "content": PROMPT}]
    tool = {"name": TOOL["name"], "description": TOOL["description"]}
    tool["input_schema"] = TOOL["parameters"]
    calls = []
    for _ in range(4):
        r = client.messages.create(model=model, max_tokens=256, messages=messages, tools=[tool])
        uses = [b for b in r.content if b.type == "tool_use"]
        if not uses:
            return {"calls": calls, "text": "".join(b.text for b in r.content if b.type == "text")}
        messages.append({"role": "assistant", "content": [b.model_dump() for b in r.content]})
        results = []
        for use in uses:
            calls.append({"name": use.name, "args": use.input})
            results.append(
                {"type": "tool_result", "tool_use_id": use.id, "content": tool_output(use.input)}
            )
        messages.append({"role": "user", "content": results})
    raise AssertionError("the tool loop did not end")


def messages_reasoning(base: str, key: str, model: str) -> Result:
    r = _ant(base, key).messages.create(**_messages(model))
    return {
        "text": "".join(b.text for b in r.content if b.type == "text"),
        "reasoning": "".join(b.thinking for b in r.content if b.type == "thinking"),
    }


def messages_reasoning_stream(base: str, key: str, model: str) -> Result:
    text = reasoning = ""
    with _ant(base, key).messages.stream(**_messages(model)) as stream:
        for event in stream:
            if event.type == "text":
                text += event.text
            elif event.type == "thinking":
                reasoning += event.thinking
    return {"text": text, "reasoning": reasoning}


def messages_usage(base: str, key: str, model: str) -> Result:
    u = _ant(base, key).messages.create(**_messages(model)).usage
    return {
        "input": u.input_tokens,
        "output": u.output_tokens,
        "total": u.input_tokens + u.output_tokens,
    }


def messages_usage_stream(base: str, key: str, model: str) -> Result:
    with _ant(base, key).messages.stream(**_messages(model)) as stream:
        u = stream.get_final_message().usage
    return {
        "input": u.input_tokens,
        "output": u.output_tokens,
        "total": u.input_tokens + u.output_tokens,
    }


# ---- langchain-openai -------------------------------------------------------------------


def _langchain(responses: bool) -> dict[str, Callable[[str, str, str], Result]]:
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
    from langchain_openai import ChatOpenAI

    def llm(base: str, key: str, model: str, **extra: Any) -> ChatOpenAI:
        return ChatOpenAI(
            model=model,
            base_url=f"{base}/v1",
            api_key=key,  # type: ignore[arg-type]
            max_retries=0,
            timeout=20,
            use_responses_api=responses,
            **extra,
        )

    def reasoning_of(message: AIMessage) -> str:
        texts = []
        for block in message.content_blocks:
            if block["type"] == "reasoning":
                texts.append(block.get("reasoning", ""))
        return "".join(texts)

    def text(base: str, key: str, model: str) -> Result:
        return {"text": llm(base, key, model).invoke(PROMPT).text}

    def stream(base: str, key: str, model: str) -> Result:
        return {"text": "".join(chunk.text for chunk in llm(base, key, model).stream(PROMPT))}

    def tools(base: str, key: str, model: str) -> Result:
        bound = llm(base, key, model).bind_tools([{"type": "function", "function": TOOL}])
        messages: list[Any] = [HumanMessage(PROMPT)]
        calls = []
        for _ in range(4):
            answer = bound.invoke(messages)
            if not answer.tool_calls:
                return {"calls": calls, "text": answer.text}
            messages.append(answer)
            for call in answer.tool_calls:
                calls.append({"name": call["name"], "args": call["args"]})
                messages.append(ToolMessage(tool_output(call["args"]), tool_call_id=call["id"]))
        raise AssertionError("the tool loop did not end")

    def reasoning(base: str, key: str, model: str) -> Result:
        answer = llm(base, key, model).invoke(PROMPT)
        return {"text": answer.text, "reasoning": reasoning_of(answer)}

    def reasoning_stream(base: str, key: str, model: str) -> Result:
        chunks = list(llm(base, key, model).stream(PROMPT))
        whole = chunks[0]
        for chunk in chunks[1:]:
            whole += chunk
        return {"text": whole.text, "reasoning": reasoning_of(whole)}

    def usage_of(message: AIMessage) -> Result:
        u = message.usage_metadata
        assert u is not None, "no usage_metadata"
        return {
            "input": u["input_tokens"],
            "output": u["output_tokens"],
            "total": u["total_tokens"],
        }

    def usage_stream(base: str, key: str, model: str) -> Result:
        chunks = list(llm(base, key, model, stream_usage=True).stream(PROMPT))
        whole = chunks[0]
        for chunk in chunks[1:]:
            whole += chunk
        return usage_of(whole)

    return {
        "text": text,
        "stream": stream,
        "tools": tools,
        "reasoning": reasoning,
        "reasoning_stream": reasoning_stream,
        "usage": lambda b, k, m: usage_of(llm(b, k, m).invoke(PROMPT)),
        "usage_stream": usage_stream,
        "error_auth": text,
        "error_model": text,
        "error_upstream": text,
    }


_CHAT = {
    "text": chat_text,
    "stream": chat_stream,
    "tools": chat_tools,
    "reasoning": chat_reasoning,
    "reasoning_stream": chat_reasoning_stream,
    "usage": chat_usage,
    "usage_stream": chat_usage_stream,
    "error_auth": chat_text,
    "error_model": chat_text,
    "error_upstream": chat_text,
}
_RESPONSES = {
    "text": responses_text,
    "stream": responses_stream,
    "tools": responses_tools,
    "reasoning": responses_reasoning,
    "reasoning_stream": responses_reasoning_stream,
    "usage": responses_usage,
    "usage_stream": responses_usage_stream,
    "error_auth": responses_text,
    "error_model": responses_text,
    "error_upstream": responses_text,
}
_MESSAGES = {
    "text": messages_text,
    "stream": messages_stream,
    "tools": messages_tools,
    "reasoning": messages_reasoning,
    "reasoning_stream": messages_reasoning_stream,
    "usage": messages_usage,
    "usage_stream": messages_usage_stream,
    "error_auth": messages_text,
    "error_model": messages_text,
    "error_upstream": messages_text,
}
OPERATIONS: dict[str, dict[str, Callable[[str, str, str], Result]]] = {
    "py-openai-chat": _CHAT,
    "py-openai-responses": _RESPONSES,
    "py-agents-responses": _agents(chat=False),
    "py-agents-chat": _agents(chat=True),
    "py-anthropic": _MESSAGES,
    "py-langchain-chat": _langchain(responses=False),
    "py-langchain-responses": _langchain(responses=True),
}
