from __future__ import annotations

from typing import Any

import openresponses_types as ort
import pytest
from pydantic import BaseModel

from gateway.errors import InvalidRequest
from gateway.invocation import (
    FilePart,
    FunctionCall,
    FunctionCallOutput,
    ImagePart,
    InputItem,
    Message,
    Reasoning,
    TextPart,
)
from gateway.wire.responses_items import (
    ItemReference,
    item_id,
    item_json,
    parse_item,
    response_of,
)

PARAM_MODELS: dict[str, type[BaseModel]] = {
    "user": ort.UserMessageItemParam,
    "system": ort.SystemMessageItemParam,
    "developer": ort.DeveloperMessageItemParam,
    "assistant": ort.AssistantMessageItemParam,
    "function_call": ort.FunctionCallItemParam,
    "function_call_output": ort.FunctionCallOutputItemParam,
}

ITEMS: list[InputItem] = [
    Message("user", (TextPart("hello"),)),
    Message("user", (TextPart(""),)),
    Message(
        "user",
        (
            TextPart("look"),
            ImagePart("https://example.com/a.png", "high"),
            ImagePart("data:image/png;base64,iVBO", "low"),
            FilePart(filename="a.pdf", data="data:application/pdf;base64,JVBE"),
            FilePart(url="https://example.com/b.pdf"),
        ),
    ),
    Message("system", (TextPart("be kind"),)),
    Message("developer", (TextPart("dev"), TextPart(" two"))),
    Message("assistant", (TextPart("answer"),)),
    Message("assistant", (TextPart("one"), TextPart("two"))),
    FunctionCall("call_1", "get_weather", '{"city": "Oslo"}'),
    FunctionCall("call_2", "no_args", ""),
    FunctionCallOutput("call_1", "64F"),
    FunctionCallOutput("call_3", ""),
    Reasoning("thinking hard"),
    Reasoning("", encrypted_content="gAAAA"),
    Reasoning(),
]


@pytest.mark.parametrize("item", ITEMS, ids=lambda i: type(i).__name__)
def test_round_trip(item: InputItem) -> None:
    raw = item_json(item)
    assert parse_item(raw, "input[0]") == item
    # with an id and status, as stored and as listed by input_items
    assert parse_item({**raw, "id": "msg_x_in0", "status": "completed"}, "input[0]") == item


@pytest.mark.parametrize(
    "item", [i for i in ITEMS if not isinstance(i, Reasoning)], ids=lambda i: type(i).__name__
)
def test_item_json_is_a_spec_input_item(item: InputItem) -> None:
    raw = item_json(item)
    key = item.role if isinstance(item, Message) else raw["type"]
    PARAM_MODELS[key].model_validate(raw)


def test_reasoning_json() -> None:
    assert item_json(Reasoning("why", encrypted_content="enc")) == {
        "type": "reasoning",
        "summary": [],
        "content": [{"type": "reasoning_text", "text": "why"}],
        "encrypted_content": "enc",
    }
    ort.ReasoningItemParam.model_validate({**item_json(Reasoning()), "content": None})


def test_assistant_content_is_output_text() -> None:
    raw = item_json(Message("assistant", (TextPart("hi"),)))
    assert raw == {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "hi", "annotations": []}],
    }


def test_image_detail_defaults_to_auto_and_file_ids_survive() -> None:
    raw = item_json(Message("user", (ImagePart("https://x/y.png"), ImagePart(file_id="file_1"))))
    assert raw["content"] == [
        {"type": "input_image", "image_url": "https://x/y.png", "detail": "auto"},
        {"type": "input_image", "file_id": "file_1", "detail": "auto"},
    ]
    parsed = parse_item(raw, "input[0]")
    assert parsed == Message(
        "user", (ImagePart("https://x/y.png", "auto"), ImagePart("", "auto", "file_1"))
    )
    file = Message("user", (FilePart(file_id="file_2"),))
    assert parse_item(item_json(file), "input[0]") == file


def test_output_items_parse_as_input() -> None:
    """The output items of a response object are valid context for the next request."""
    message = {
        "type": "message",
        "id": "msg_abc_0",
        "status": "completed",
        "role": "assistant",
        "content": [
            {"type": "output_text", "text": "a", "annotations": [], "logprobs": []},
            {"type": "refusal", "refusal": "b"},
        ],
    }
    assert parse_item(message, "x") == Message("assistant", (TextPart("a"), TextPart("b")))
    call = {
        "type": "function_call",
        "id": "fc_abc_1",
        "call_id": "call_9",
        "name": "f",
        "arguments": "{}",
        "status": "completed",
    }
    assert parse_item(call, "x") == FunctionCall("call_9", "f", "{}")
    reasoning = {
        "type": "reasoning",
        "id": "rs_abc_2",
        "summary": [{"type": "summary_text", "text": "sum"}],
        "content": [{"type": "reasoning_text", "text": "raw"}],
    }
    assert parse_item(reasoning, "x") == Reasoning("raw")  # content wins over the summary
    assert parse_item({**reasoning, "content": None}, "x") == Reasoning("sum")


def test_lenient_forms() -> None:
    assert parse_item({"role": "user", "content": "hi"}, "x") == Message("user", (TextPart("hi"),))
    assert parse_item({"id": "msg_a_0"}, "x") == ItemReference("msg_a_0")
    assert parse_item({"type": "item_reference", "id": "msg_a_0"}, "x") == ItemReference("msg_a_0")
    output = [{"type": "input_text", "text": "a"}, {"type": "input_image", "image_url": "u"}]
    assert parse_item(
        {"type": "function_call_output", "call_id": "c", "output": output}, "x"
    ) == FunctionCallOutput("c", "a")


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        ({}, "input[2]"),
        ([], "input[2]"),
        ({"type": "nope"}, "input[2].type"),
        ({"type": "message", "content": "x"}, "input[2].role"),
        ({"type": "message", "role": "tool", "content": "x"}, "input[2].role"),
        ({"type": "message", "role": "user", "content": 3}, "input[2].content"),
        ({"type": "message", "role": "user", "content": [3]}, "input[2].content[0]"),
        ({"role": "user", "content": [{"type": "output_text", "text": "x"}]}, None),
        (
            {"role": "assistant", "content": [{"type": "input_image", "image_url": "u"}]},
            "input[2].content[0].type",
        ),
        (
            {"role": "system", "content": [{"type": "input_file", "file_data": "d"}]},
            "input[2].content[0].type",
        ),
        ({"role": "user", "content": [{"type": "input_image"}]}, "input[2].content[0].image_url"),
        (
            {"role": "user", "content": [{"type": "input_file", "filename": "a"}]},
            "input[2].content[0]",
        ),
        ({"role": "user", "content": [{"text": "x"}]}, "input[2].content[0].type"),
        (
            {"role": "user", "content": [{"type": "input_text", "text": 1}]},
            "input[2].content[0].text",
        ),
        ({"type": "function_call", "name": "f", "arguments": "{}"}, "input[2].call_id"),
        ({"type": "function_call", "call_id": "c", "arguments": "{}"}, "input[2].name"),
        ({"type": "function_call", "call_id": "c", "name": "f"}, "input[2].arguments"),
        ({"type": "function_call_output", "call_id": "c", "output": 5}, "input[2].output"),
        ({"type": "item_reference"}, "input[2].id"),
    ],
)
def test_invalid_items(raw: Any, param: str | None) -> None:
    if param is None:  # output_text in a user message: lenient, it is text
        assert parse_item(raw, "input[2]") == Message("user", (TextPart("x"),))
        return
    with pytest.raises(InvalidRequest) as caught:
        parse_item(raw, "input[2]")
    assert caught.value.param == param


def test_item_ids_name_their_response() -> None:
    rid = "resp_0123abcd"
    assert item_id("message", rid, "3") == "msg_0123abcd_3"
    assert item_id("function_call", rid, "in0") == "fc_0123abcd_in0"
    assert item_id("function_call_output", rid, "in1") == "fco_0123abcd_in1"
    assert item_id("reasoning", rid, "0") == "rs_0123abcd_0"
    for kind in ("message", "function_call", "function_call_output", "reasoning"):
        for position in ("0", "12", "in0", "in7"):
            assert response_of(item_id(kind, rid, position)) == rid
    assert response_of("msg_client") is None
    assert response_of("nothing") is None
    assert response_of("") is None
