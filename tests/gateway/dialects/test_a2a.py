"""``gateway.dialects.a2a``: A2A's JSON-RPC as a ``Methods`` dialect (envelope, answers, errors)."""

from __future__ import annotations

import orjson
import pytest

from gateway.dialects import a2a_wire as wire
from gateway.dialects.a2a import A2A, AGENT_NOT_FOUND
from gateway.dialects.request_limits import DEFAULTS
from gateway.errors import InsufficientQuota, InvalidRequest, NotFound, PayloadTooLarge


def rpc(method: str, rid: object = 3) -> dict[str, object]:
    return {"jsonrpc": "2.0", "id": rid, "method": method, "params": {"id": "t"}}


def test_it_reads_the_envelope_and_names_its_method() -> None:
    parsed = A2A.parse(rpc("GetTask"), DEFAULTS)
    assert parsed == wire.RpcRequest(3, "GetTask", {"id": "t"})
    assert A2A.method(parsed) == "GetTask"
    assert A2A.name == "a2a"


@pytest.mark.parametrize(
    ("method", "code"),
    [
        ("tasks/get", wire.METHOD_NOT_FOUND),
        ("Nope", wire.METHOD_NOT_FOUND),
        # capabilities the card does not declare: the spec's errors (section 3.3.4)
        ("CreateTaskPushNotificationConfig", wire.PUSH_NOTIFICATION_NOT_SUPPORTED),
        ("ListTaskPushNotificationConfigs", wire.PUSH_NOTIFICATION_NOT_SUPPORTED),
        ("GetExtendedAgentCard", wire.UNSUPPORTED_OPERATION),
    ],
)
def test_a_method_it_does_not_serve_is_refused_with_the_request_id(method: str, code: int) -> None:
    with pytest.raises(wire.A2AError) as caught:
        A2A.parse(rpc(method, rid="r"), DEFAULTS)
    assert caught.value.rpc_code == code
    status, body = A2A.failure(None, caught.value) or (0, b"")
    reply = orjson.loads(body)
    assert status == 200 and reply["id"] == "r" and reply["error"]["code"] == code
    if method == "tasks/get":
        assert "'GetTask'" in reply["error"]["message"]


def test_answers_are_json_rpc_responses_whole_or_as_sse_frames() -> None:
    parsed = A2A.parse(rpc("GetTask", rid=9), DEFAULTS)
    assert orjson.loads(A2A.result(parsed, {"a": 1})) == {
        "jsonrpc": "2.0",
        "id": 9,
        "result": {"a": 1},
    }
    frame = A2A.frame(parsed, {"b": 2})
    assert frame.startswith(b"data: ") and frame.endswith(b"\n\n")
    assert orjson.loads(frame[6:]) == {"jsonrpc": "2.0", "id": 9, "result": {"b": 2}}


def test_a_methods_error_is_its_answer_but_the_http_requests_own_keep_their_status() -> None:
    parsed = A2A.parse(rpc("GetTask", rid=1), DEFAULTS)
    status, body = A2A.failure(parsed, InsufficientQuota("no credits")) or (0, b"")
    assert status == 200 and orjson.loads(body)["error"]["code"] == wire.INTERNAL_ERROR
    not_json = InvalidRequest("The request body is not valid JSON")
    status, body = A2A.failure(None, not_json) or (0, b"")
    reply = orjson.loads(body)
    assert status == 200 and reply["id"] is None and reply["error"]["code"] == wire.PARSE_ERROR
    assert A2A.failure(parsed, NotFound("No agent 'x' here.", code=AGENT_NOT_FOUND)) is None
    assert A2A.failure(None, PayloadTooLarge("too large")) is None
    slow = InvalidRequest("slow", code="request_timeout", status=408)
    assert A2A.failure(None, slow) is None
    status, body = A2A.error(PayloadTooLarge("too large"), "req_1")
    assert status == 413 and orjson.loads(body)["error"]["code"] == wire.INVALID_PARAMS
