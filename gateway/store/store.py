"""The store: API keys, balances and the ledger in Redis.

Balances are integer credits (1,000,000 credits = 1 USD). Every change of a
balance is one ledger entry written by the same script (``lua/post_entry.lua``),
at most once per entry id, so the sum of a key's ledger equals its balance.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import cast

from redis import asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from gateway import apikeys
from gateway.config import EMBEDDED, RedisSettings
from gateway.errors import NotFound, ServiceUnavailable
from gateway.store import schema
from gateway.store.records import ApiKey, LedgerEntry, Limits

log = logging.getLogger(__name__)

ENTRY_MARKER_TTL = 7 * 24 * 3600  # a request id can be settled again after a week at most


def connect(settings: RedisSettings) -> aioredis.Redis:
    """A client for ``settings.url``; ``embedded`` gives an in-process fake server.

    Both use a blocking pool: under a burst, requests wait (up to the socket
    timeout) for a connection instead of failing the moment the pool is exhausted.
    """
    if settings.url == EMBEDDED:
        try:
            from fakeredis import FakeAsyncRedis
        except ImportError as exc:
            raise RuntimeError(
                "redis.url is 'embedded' but the embedded store is not installed: "
                "pip install 'agent-gateway[embedded]', or set GATEWAY_REDIS_URL"
            ) from exc
        fake = FakeAsyncRedis(
            decode_responses=True,
            connection_pool_class=aioredis.BlockingConnectionPool,
            max_connections=settings.max_connections,
            timeout=settings.socket_timeout,
        )
        return cast(aioredis.Redis, fake)
    if settings.cluster:
        return cast(
            aioredis.Redis,
            RedisCluster.from_url(
                settings.url,
                decode_responses=True,
                socket_timeout=settings.socket_timeout,
                socket_connect_timeout=settings.connect_timeout,
                max_connections=settings.max_connections,
            ),
        )
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.url,
        max_connections=settings.max_connections,
        timeout=settings.socket_timeout,
        decode_responses=True,
        socket_timeout=settings.socket_timeout,
        socket_connect_timeout=settings.connect_timeout,
        health_check_interval=30,
    )
    return aioredis.Redis(connection_pool=pool)


class Store:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        source = resources.files("gateway.store").joinpath("lua/post_entry.lua").read_text()
        self._post_entry = redis.register_script(source)

    async def aclose(self) -> None:
        await self.redis.aclose()

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except RedisError:
            return False

    # Keys

    async def create_key(
        self,
        name: str,
        *,
        balance: int = 0,
        agents: tuple[str, ...] = (),
        expires_at: float | None = None,
        limits: Limits | None = None,
    ) -> tuple[ApiKey, str]:
        """Create a key; return its record and its secret (shown once, never stored)."""
        secret = apikeys.new_secret()
        key = ApiKey(
            id=apikeys.new_key_id(),
            name=name,
            agents=agents,
            created_at=time.time(),
            expires_at=expires_at,
            hint=secret[: len(apikeys.KEY_PREFIX) + 4],
            limits=limits or Limits(),
        )
        async with guard():
            await self.redis.hset(schema.key_record(key.id), mapping=key.to_hash())  # type: ignore[arg-type]  # invariant stub
            await self.redis.sadd(schema.KEY_INDEX, key.id)
            await self.redis.set(schema.digest_index(apikeys.digest(secret)), key.id)
        if balance:
            await self.credit(key.id, balance, note="initial balance")
        return key, secret

    async def find_key(self, digest: str) -> ApiKey | None:
        """The key whose secret has this SHA-256 digest, if any."""
        async with guard():
            key_id = cast(str | None, await self.redis.get(schema.digest_index(digest)))
            if key_id is None:
                return None
            return await self._get(key_id)

    async def get_key(self, key_id: str) -> ApiKey:
        async with guard():
            key = await self._get(key_id)
        if key is None:
            raise NotFound(f"no key with id {key_id!r}")
        return key

    async def _get(self, key_id: str) -> ApiKey | None:
        h = cast(dict[str, str], await self.redis.hgetall(schema.key_record(key_id)))
        return ApiKey.from_hash(h) if h else None

    async def list_keys(self) -> list[ApiKey]:
        async with guard():
            ids = sorted(cast(set[str], await self.redis.smembers(schema.KEY_INDEX)))
            keys = [await self._get(key_id) for key_id in ids]
        return sorted((k for k in keys if k is not None), key=lambda k: k.created_at)

    async def set_limits(self, key_id: str, limits: Limits) -> ApiKey:
        """Replace a key's limits; every process applies them within ``auth.cache_ttl``."""
        key = await self.get_key(key_id)
        updated = dataclasses.replace(key, limits=limits)
        async with guard():
            await self.redis.hset(schema.key_record(key_id), mapping=updated.to_hash())  # type: ignore[arg-type]  # invariant stub
        return updated

    async def revoke_key(self, key_id: str) -> ApiKey:
        key = await self.get_key(key_id)
        if key.revoked_at is None:
            async with guard():
                await self.redis.hset(schema.key_record(key_id), "revoked_at", repr(time.time()))
            key = await self.get_key(key_id)
        return key

    # Balances and the ledger

    async def balance(self, key_id: str) -> int:
        async with guard():
            value = await self.redis.get(schema.balance(key_id))
        return int(value or 0)

    async def held(self, key_id: str) -> int:
        """Credits held by the key's requests in flight."""
        async with guard():
            value = await self.redis.get(schema.held(key_id))
        return int(value or 0)

    async def credit(self, key_id: str, credits: int, *, note: str = "") -> int:
        """Add credits (or remove them, if negative) with a ledger entry; the new balance."""
        await self.get_key(key_id)
        fields = {"kind": "credit", "at": repr(time.time()), "note": note}
        _, balance = await self._post(key_id, uuid.uuid4().hex, credits, fields)
        return balance

    async def _post(
        self, key_id: str, entry_id: str, amount: int, fields: dict[str, str]
    ) -> tuple[bool, int]:
        keys = [
            schema.balance(key_id),
            schema.ledger(key_id),
            schema.entry_marker(key_id, entry_id),
        ]
        args: list[str | int] = [amount, ENTRY_MARKER_TTL]
        for name, value in fields.items():
            args += [name, value]
        async with guard():
            posted, balance = await self._post_entry(keys=keys, args=args)
        return bool(posted), int(balance)

    async def ledger(self, key_id: str, *, limit: int | None = None) -> list[LedgerEntry]:
        async with guard():
            rows = cast(
                list[tuple[str, dict[str, str]]],
                await self.redis.xrange(schema.ledger(key_id), count=limit),
            )
        return [LedgerEntry.from_stream(entry_id, fields) for entry_id, fields in rows]


@asynccontextmanager
async def guard() -> AsyncIterator[None]:
    """Turn a Redis failure into a 503 the client can understand."""
    try:
        yield
    except RedisError as exc:
        log.warning("store unavailable: %s", exc.__class__.__name__)
        raise ServiceUnavailable("the gateway's store is unavailable; retry later") from exc
