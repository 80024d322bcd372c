"""Open Responses items <-> canonical input items.

The same item shapes serve three purposes: a client's ``input`` array, the
``output`` array of a response, and the context the gateway stores to rebuild a
conversation for ``previous_response_id``. An output item is a valid input
item, so stored output is parsed back with the same code. The ingress dialect
(``gateway.dialects.responses_*``) and the ``open_responses`` backend both use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.invocation import (
    ContentPart,
    FilePart,
    FunctionCall,
    FunctionCallOutput,
    ImagePart,
    InputItem,
    Message,
    Reasoning,
    TextPart,
)
from gateway.wire.fields import (
    JsonMap,
    as_list,
    as_object,
    as_str,
    invalid,
    join,
    opt_str,
    req_str,
)

_ROLES = ("user", "system", "developer", "assistant")
_ID_PREFIXES = {
    "message": "msg",
    "function_call": "fc",
    "function_call_output": "fco",
    "reasoning": "rs",
}


def item_id(item_type: str, response_id: str, position: str) -> str:
    """An item id that names its response, so an ``item_reference`` can find it.

    ``msg_<hex>_3`` is output item 3 of ``resp_<hex>``; ``msg_<hex>_in0`` its first input item.
    """
    return f"{_ID_PREFIXES[item_type]}_{response_id.removeprefix('resp_')}_{position}"


def response_of(item: str) -> str | None:
    """The id of the response an ``item_id`` belongs to, if it is one of ours."""
    _, _, rest = item.partition("_")
    response_hex = rest.rpartition("_")[0]
    return f"resp_{response_hex}" if response_hex else None


@dataclass(frozen=True, slots=True)
class ItemReference:
    """``{"type": "item_reference", "id": ...}``: an item of an earlier stored response."""

    id: str


def parse_item(raw: object, path: str) -> InputItem | ItemReference:
    item = as_object(raw, path)
    kind = item.get("type")
    if kind is None:  # the spec's examples omit the type of messages and references
        kind = "message" if "role" in item else "item_reference" if "id" in item else None
    if kind == "message":
        return _message(item, path)
    if kind == "function_call":
        return FunctionCall(
            call_id=req_str(item, "call_id", path),
            name=req_str(item, "name", path),
            arguments=req_str(item, "arguments", path, non_empty=False),
        )
    if kind == "function_call_output":
        return FunctionCallOutput(
            call_id=req_str(item, "call_id", path),
            output=_output_text(item.get("output"), join(path, "output")),
        )
    if kind == "reasoning":
        return _reasoning(item, path)
    if kind == "item_reference":
        return ItemReference(req_str(item, "id", path))
    if kind is None:
        raise invalid(path, "missing 'type' (or 'role' for a message)")
    raise invalid(join(path, "type"), f"unsupported item type {kind!r}")


def _message(item: JsonMap, path: str) -> Message:
    role = req_str(item, "role", path)
    if role not in _ROLES:
        raise invalid(join(path, "role"), f"must be one of {', '.join(_ROLES)}")
    content = item.get("content")
    sub = join(path, "content")
    if isinstance(content, str):
        return Message(role, (TextPart(content),))  # type: ignore[arg-type]  # checked above
    parts: list[ContentPart] = []
    for i, raw in enumerate(as_list(content, sub)):
        parts.append(_part(as_object(raw, f"{sub}[{i}]"), f"{sub}[{i}]", role))
    return Message(role, tuple(parts))  # type: ignore[arg-type]


def _part(part: JsonMap, path: str, role: str) -> ContentPart:
    kind = req_str(part, "type", path)
    if kind in ("input_text", "output_text", "text"):
        return TextPart(as_str(part.get("text"), join(path, "text")))
    if kind == "refusal" and role == "assistant":
        return TextPart(as_str(part.get("refusal"), join(path, "refusal")))
    if kind == "input_image" and role == "user":
        url = opt_str(part, "image_url", path)
        file_id = opt_str(part, "file_id", path)
        if not url and not file_id:
            raise invalid(join(path, "image_url"), "an input_image needs image_url or file_id")
        return ImagePart(url or "", opt_str(part, "detail", path), file_id)
    if kind == "input_file" and role == "user":
        file = FilePart(
            filename=opt_str(part, "filename", path),
            data=opt_str(part, "file_data", path),
            url=opt_str(part, "file_url", path),
            file_id=opt_str(part, "file_id", path),
        )
        if not (file.data or file.url or file.file_id):
            raise invalid(path, "an input_file needs file_data, file_url or file_id")
        return file
    raise invalid(join(path, "type"), f"content type {kind!r} is not allowed in a {role} message")


def _output_text(value: object, path: str) -> str:
    if isinstance(value, str):
        return value
    texts = []
    for i, raw in enumerate(as_list(value, path)):
        part = as_object(raw, f"{path}[{i}]")
        if part.get("type") in ("input_text", "output_text", "text"):
            texts.append(as_str(part.get("text"), f"{path}[{i}].text"))
    return "".join(texts)


def _reasoning(item: JsonMap, path: str) -> Reasoning:
    texts: list[str] = []
    for key in ("content", "summary"):
        for i, raw in enumerate(as_list(item.get(key) or [], join(path, key))):
            texts.append(as_str(as_object(raw, f"{path}.{key}[{i}]").get("text"), path))
        if texts:
            break
    return Reasoning(
        text="".join(texts), encrypted_content=opt_str(item, "encrypted_content", path)
    )


def item_json(item: InputItem) -> dict[str, Any]:
    """The Open Responses form of a canonical item (an input item the spec accepts)."""
    if isinstance(item, Message):
        if item.role == "assistant":
            content = [
                {"type": "output_text", "text": p.text, "annotations": []}
                for p in item.content
                if isinstance(p, TextPart)
            ]
        else:
            content = [_part_json(p) for p in item.content]
        return {"type": "message", "role": item.role, "content": content}
    if isinstance(item, FunctionCall):
        return {
            "type": "function_call",
            "call_id": item.call_id,
            "name": item.name,
            "arguments": item.arguments,
        }
    if isinstance(item, FunctionCallOutput):
        return {"type": "function_call_output", "call_id": item.call_id, "output": item.output}
    reasoning: dict[str, Any] = {
        "type": "reasoning",
        "summary": [],
        "content": [{"type": "reasoning_text", "text": item.text}] if item.text else [],
    }
    if item.encrypted_content is not None:
        reasoning["encrypted_content"] = item.encrypted_content
    return reasoning


def _part_json(part: ContentPart) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "input_text", "text": part.text}
    if isinstance(part, ImagePart):
        if part.file_id is not None:
            image: dict[str, Any] = {"type": "input_image", "file_id": part.file_id}
        else:
            image = {"type": "input_image", "image_url": part.url}
        image["detail"] = part.detail or "auto"
        return image
    file = {
        "filename": part.filename,
        "file_data": part.data,
        "file_url": part.url,
        "file_id": part.file_id,
    }
    return {"type": "input_file", **{k: v for k, v in file.items() if v is not None}}
