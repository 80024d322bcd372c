"""A first end-to-end check through the official openai SDK (more in sibling modules)."""

from __future__ import annotations

import openai

from tests.conftest import StartGateway


async def test_chat_completion_through_the_sdk(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    key = await gw.new_key()
    client = openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0)
    reply = await client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "hello gateway"}]
    )
    await client.close()
    assert reply.choices[0].message.content == "hello gateway"
    assert reply.usage is not None and reply.usage.completion_tokens == 2
