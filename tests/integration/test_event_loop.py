"""What a request costs the event loop: the gateway keeps the running loop instead of
asking asyncio for it (on Python 3.11 ``asyncio.get_running_loop()`` is a ``getpid``
system call each time, and a request asked for it six times, a stream nine)."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.conftest import StartGateway
from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.gateway.factories import asked_for_the_loop
from tests.integration.support import upstream_config


@pytest.mark.parametrize("stream", [False, True])
async def test_a_request_does_not_ask_asyncio_for_the_running_loop(
    start_gateway: StartGateway,
    fake_upstream: FakeOpenAIUpstream,
    upstream_env: str,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
    stream: bool,
) -> None:
    gw = await start_gateway(upstream_config(fake_upstream.base_url))
    key = await gw.new_key()
    body: dict[str, Any] = {"model": "up", "messages": [{"role": "user", "content": "hi"}]}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    asked: list[str] = []
    for request in range(3):
        if request == 1:  # the first found it (and made the upstream's session)
            asked = asked_for_the_loop(monkeypatch)
        async with http.post(
            gw.url + "/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
        ) as response:
            assert response.status == 200
            text = await response.read()
            assert (b"data: [DONE]" in text) if stream else (b"Hello from upstream" in text)
    assert asked == []
