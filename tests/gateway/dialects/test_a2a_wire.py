"""The A2A JSON-RPC binding: requests read, messages as canonical input, errors coded."""

from __future__ import annotations

import orjson
import pytest

from gateway.dialects import a2a_wire as wire
from gateway.dialects.request_limits import DefaultRequestLimits
from gateway.errors import (
    AuthenticationFailed,
    InsufficientQuota,
    InvalidRequest,
    PayloadTooLarge,
)
from gateway.invocation import FilePart, FunctionCallOutput, ImagePart, Message, TextPart


def test_a_request_needs_jsonrpc_2_a_method_and_object_params() -> None:
    req = wire.rpc_request({"jsonrpc": "2.0", "id": 7, "method": "GetTask", "params": {"id": "t"}})
    assert req == wire.RpcRequest(7, "GetTask", {"id": "t"})
    for body, code, rid in [
        ([{"jsonrpc": "2.0", "method": "GetTask"}], wire.INVALID_REQUEST, None),  # a batch
        ({"jsonrpc": "1.0", "id": 1, "method": "GetTask"}, wire.INVALID_REQUEST, 1),
        ({"jsonrpc": "2.0", "id": True, "method": "GetTask"}, wire.INVALID_REQUEST, None),
        ({"jsonrpc": "2.0", "id": 1, "method": ""}, wire.INVALID_REQUEST, 1),
        ({"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": [1]}, wire.INVALID_PARAMS, 1),
    ]:
        with pytest.raises(wire.A2AError) as caught:
            wire.rpc_request(body)
        assert caught.value.rpc_code == code, body
        assert caught.value.rpc_id == rid, body  # the id to answer with, once known valid


def test_the_version_header_is_1_x_or_absent() -> None:
    wire.check_version(None)
    wire.check_version("1.0")
    wire.check_version("1.0.1")
    with pytest.raises(wire.A2AError) as caught:
        wire.check_version("0.3")
    assert caught.value.rpc_code == wire.VERSION_NOT_SUPPORTED


def test_errors_carry_a2a_codes_and_the_gateway_status() -> None:
    body = wire.error(3, wire.task_not_found("t1"))
    assert body["id"] == 3 and body["error"]["code"] == wire.TASK_NOT_FOUND
    assert wire.error(1, InvalidRequest("bad"))["error"]["code"] == wire.INVALID_PARAMS
    quota = wire.error(1, InsufficientQuota("no money"))["error"]
    assert quota["code"] == wire.INTERNAL_ERROR and quota["message"] == "no money"
    [info] = quota["data"]
    assert info["@type"] == wire.ERROR_INFO and info["reason"] == "INSUFFICIENT_QUOTA"
    assert info["metadata"]["status"] == "402"
    status, raw = wire.error_body(AuthenticationFailed("who are you"), "req_1")
    assert status == 401 and orjson.loads(raw)["error"]["message"] == "who are you"


def test_a_message_becomes_a_user_message_and_function_results() -> None:
    params = {
        "message": {
            "messageId": "m1",
            "contextId": "ctx-1",
            "role": "ROLE_USER",
            "parts": [
                {"text": "look"},
                {"url": "https://x/cat.png", "mediaType": "image/png"},
                {"raw": "aGk=", "mediaType": "text/plain", "filename": "hi.txt"},
                {"data": {"a": 1}},
                {"data": {"functionCallOutput": {"callId": "c1", "output": {"ok": True}}}},
            ],
        },
        "configuration": {"historyLength": 2, "returnImmediately": True},
    }
    send = wire.send_params(params)
    assert send.history_length == 2 and send.return_immediately
    msg = send.message
    assert (msg.message_id, msg.context_id, msg.task_id) == ("m1", "ctx-1", None)
    assert msg.items == (
        FunctionCallOutput("c1", '{"ok":true}'),
        Message(
            "user",
            (
                TextPart("look"),
                ImagePart(url="https://x/cat.png"),
                FilePart(filename="hi.txt", data="data:text/plain;base64,aGk="),
                TextPart('{"a":1}'),
            ),
        ),
    )


@pytest.mark.parametrize(
    ("message", "param"),
    [
        ({"role": "ROLE_USER", "parts": [{"text": "x"}]}, "message.messageId"),
        ({"messageId": "m", "role": "ROLE_AGENT", "parts": [{"text": "x"}]}, "message.role"),
        ({"messageId": "m", "role": "ROLE_USER", "parts": []}, "message.parts"),
        ({"messageId": "m", "role": "ROLE_USER", "parts": [{"raw": "%%"}]}, "message.parts[0]"),
    ],
)
def test_a_bad_message_is_an_invalid_request_naming_the_field(
    message: dict[str, object], param: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        wire.send_params({"message": message})
    assert caught.value.param == param


def test_a_part_of_no_known_kind_is_a_content_type_error() -> None:
    with pytest.raises(wire.A2AError) as caught:
        wire.message({"messageId": "m", "role": "ROLE_USER", "parts": [{"video": 1}]})
    assert caught.value.rpc_code == wire.CONTENT_TYPE_NOT_SUPPORTED


def test_a_message_is_held_to_the_request_limits() -> None:
    limits = DefaultRequestLimits(max_input_items=2, max_text_chars=10)
    parts = [{"text": "a"}, {"text": "b"}, {"text": "c"}]
    message = {"messageId": "m", "role": "ROLE_USER", "parts": parts}
    with pytest.raises(InvalidRequest) as caught:
        wire.send_params({"message": message}, limits)
    assert caught.value.code == "too_many_items"
    long = {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "x" * 50}]}
    with pytest.raises(PayloadTooLarge):
        wire.send_params({"message": long}, limits)
    assert wire.error(1, PayloadTooLarge("big"))["error"]["code"] == wire.INVALID_PARAMS
