"""One request of each kind before load: a benchmark that measures 401s is worthless.

``check`` sends the target's request once and checks the answer's shape: a
200, a JSON completion with content and usage, or an SSE stream with the
expected number of content chunks, a usage chunk and ``[DONE]``. It returns
the text content so that direct and gateway answers can be compared.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

import orjson

from bench.load import Target
from bench.procs import BenchError


def _post(target: Target) -> tuple[int, str, bytes]:
    request = urllib.request.Request(
        target.url, data=target.body, headers=target.headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def _completion(raw: bytes) -> tuple[str, dict[str, Any]]:
    body = orjson.loads(raw)
    content = body["choices"][0]["message"]["content"]
    usage = body.get("usage") or {}
    if not isinstance(content, str) or not content:
        raise ValueError("no content")
    if not usage.get("completion_tokens"):
        raise ValueError("no usage")
    return content, usage


def _stream(raw: bytes, chunks: int) -> tuple[str, dict[str, Any]]:
    frames = [f for f in raw.split(b"\n\n") if f.strip()]
    if not frames or frames[-1] != b"data: [DONE]":
        raise ValueError("the stream does not end with data: [DONE]")
    parts: list[str] = []
    usage: dict[str, Any] = {}
    for frame in frames[:-1]:
        if not frame.startswith(b"data: "):
            continue
        chunk = orjson.loads(frame[6:])
        for choice in chunk.get("choices") or []:
            piece = (choice.get("delta") or {}).get("content")
            if piece:
                parts.append(piece)
        if chunk.get("usage"):
            usage = chunk["usage"]
    if len(parts) != chunks:
        raise ValueError(f"{len(parts)} content chunks, expected {chunks}")
    if not usage.get("completion_tokens"):
        raise ValueError("no usage chunk")
    return "".join(parts), usage


def check(what: str, target: Target, stream: bool, chunks: int) -> tuple[str, dict[str, Any]]:
    """(content, usage) of one request; raises BenchError when the answer is not right."""
    status, content_type, raw = _post(target)
    if status != 200:
        text = raw[:500].decode(errors="replace")
        raise BenchError(f"{what}: HTTP {status} ({content_type}): {text}")
    try:
        if stream:
            if not content_type.startswith("text/event-stream"):
                raise ValueError(f"Content-Type {content_type!r}")
            return _stream(raw, chunks)
        return _completion(raw)
    except (ValueError, KeyError, IndexError, TypeError, orjson.JSONDecodeError) as exc:
        raise BenchError(f"{what}: unexpected answer ({exc}): {raw[:300]!r}") from None
