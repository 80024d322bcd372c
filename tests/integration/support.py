"""Small helpers shared by the integration tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from gateway.store import LedgerEntry
from tests.conftest import RunningGateway

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, within: float = 3.0, interval: float = 0.02
) -> T:
    """Poll ``probe`` until it returns a truthy value; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {within} s (last: {value!r})")
        await asyncio.sleep(interval)


async def usage_entries(
    gw: RunningGateway, key_id: str, count: int = 1, within: float = 3.0
) -> list[LedgerEntry]:
    """The key's usage ledger entries, once there are at least ``count`` of them."""

    async def probe() -> list[LedgerEntry] | None:
        entries = [e for e in await gw.store.ledger(key_id) if e.kind == "usage"]
        return entries if len(entries) >= count else None

    return await eventually(probe, within=within)


async def settled(gw: RunningGateway, key_id: str, within: float = 3.0) -> None:
    """Wait until every request of the key is settled: it holds nothing any more.

    Settlement releases a hold and writes its ledger entry in one script, so from
    then on the balance and the ledger are final (a refused request never held).
    """

    async def probe() -> bool:
        return await gw.store.held(key_id) == 0

    await eventually(probe, within=within, interval=0.005)


def backend_config(kind: str, base_url: str, routes: Mapping[str, str], **options: object) -> str:
    """A gateway.yaml with one backend ``upstream`` of type ``kind`` at ``base_url``, and
    ``routes``: agent id -> the rest of its route as a YAML flow mapping's inside."""
    extra = "".join(f"    {k}: {v}\n" for k, v in options.items())
    lines = "".join(
        f"  {agent}: {{backend: upstream, {route}}}\n" for agent, route in routes.items()
    )
    return f"""
backends:
  upstream:
    type: {kind}
    base_url: {base_url}
    api_key_env: FAKE_UPSTREAM_KEY
{extra}routes:
{lines}"""


def upstream_config(
    base_url: str, *, pricing: str = "{input: 1, output: 2}", **options: object
) -> str:
    """A gateway.yaml with one ``openai_chat`` backend at ``base_url`` (agent ``up``)."""
    route = f"model: upstream-model-x, pricing: {pricing}"
    return backend_config("openai_chat", base_url, {"up": route}, **options)
