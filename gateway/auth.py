"""API-key authentication (a bearer key, or a bare key), served from an in-process cache.

A known key costs no Redis round trip while its cache entry lives
(``auth.cache_ttl``, one second by default), so a key revoked or expired
elsewhere is refused by every process within that time. Unknown keys are not
cached, so a key created on another process works at once. Requests that miss
the cache for the same key at the same time share one lookup.

While Redis is unreachable, a key this process fetched within the last
``cache_ttl + stale_for`` seconds keeps working from its cached copy (its expiry
is still checked; a revocation made meanwhile is not seen until Redis answers).
Any other key gets a 503 that says why: an unknown key never becomes valid.

A secret that is not printable ASCII (aiohttp hands over any other byte of a
header as a lone surrogate, or as Latin-1 text) cannot be a key: it is refused
at once, without a lookup, and so is a 401 even while Redis is unreachable.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable

from gateway import apikeys
from gateway.errors import AuthenticationFailed, ServiceUnavailable
from gateway.store import ApiKey, Store

RETRY_STORE_AFTER = 0.5  # seconds without asking Redis after it failed to answer


def key_like(secret: str) -> bool:
    """Whether ``secret`` holds only printable ASCII but the space (``[!-~]*``): no key
    holds anything else."""
    return secret.isascii() and secret.isprintable() and " " not in secret


class Authenticator:
    def __init__(
        self,
        store: Store,
        *,
        ttl: float = 1.0,
        size: int = 100_000,
        stale_for: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._ttl = ttl
        self._stale_for = stale_for
        self._size = size
        self._clock = clock
        # digest -> (key, when it was read from Redis), the oldest read first; an entry
        # outlives ``ttl`` by ``stale_for`` only to be served while Redis is unreachable,
        # and is dropped once older than both, or to make room (``_keep``). A plain
        # mapping: a lookup is a dictionary read (cachetools' TTLCache took 2 µs each).
        self._cache: OrderedDict[str, tuple[ApiKey, float]] = OrderedDict()
        self._store_down_until = 0.0
        self._lookups: dict[str, asyncio.Future[ApiKey | None]] = {}  # digest -> in flight

    async def authenticate(self, authorization: str | None) -> ApiKey:
        """The key named by an ``Authorization: Bearer`` header value, if usable."""
        if not authorization:
            raise AuthenticationFailed(
                "missing API key: send 'Authorization: Bearer <key>'", code="missing_api_key"
            )
        scheme, _, secret = authorization.partition(" ")
        secret = secret.strip()
        if scheme.lower() != "bearer" or not secret:
            raise AuthenticationFailed("the Authorization header must be 'Bearer <key>'")
        return await self.authenticate_secret(secret)

    async def authenticate_secret(self, secret: str) -> ApiKey:
        """The key whose secret is ``secret`` (however the client sent it), if usable."""
        if not secret:
            raise AuthenticationFailed("the API key is empty", code="missing_api_key")
        if not key_like(secret):
            raise AuthenticationFailed("invalid API key")
        digest = apikeys.digest(secret)
        cached = self._cache.get(digest)
        now = self._clock()
        if cached is not None and now - cached[1] < self._ttl:
            key = cached[0]
        else:
            key = await self._fetch(digest, cached, now)
        if not key.usable(time.time()):
            self._cache.pop(digest, None)
            raise AuthenticationFailed("this API key has been revoked or has expired")
        return key

    async def _fetch(self, digest: str, cached: tuple[ApiKey, float] | None, now: float) -> ApiKey:
        """The key from Redis; its stale cached copy if Redis does not answer."""
        try:
            if now < self._store_down_until:
                raise ServiceUnavailable("the gateway's store is unavailable")
            key = await self._lookup(digest)
        except ServiceUnavailable:
            self._store_down_until = max(self._store_down_until, now + RETRY_STORE_AFTER)
            if cached is not None and now - cached[1] < self._ttl + self._stale_for:
                return cached[0]  # a known key keeps working through the outage, for a time
            raise ServiceUnavailable(
                "The gateway cannot reach its store (Redis) to check this API key, and has "
                "not seen the key recently enough to trust its cached copy; retry later.",
                code="store_unavailable",
                headers={"Retry-After": "1"},
            ) from None
        if key is None:
            self._cache.pop(digest, None)
            raise AuthenticationFailed("invalid API key")
        self._keep(digest, key)
        return key

    def _keep(self, digest: str, key: ApiKey) -> None:
        """Cache ``key``, read from Redis just now, as the newest entry; first drop the
        entries too old to be served even while Redis is down, and the oldest ones
        beyond ``size``."""
        now, cache = self._clock(), self._cache
        cache.pop(digest, None)
        too_old = now - (self._ttl + self._stale_for)
        while cache:
            _, (_, read) = next(iter(cache.items()))
            if read > too_old and len(cache) < self._size:
                break
            cache.popitem(last=False)
        cache[digest] = (key, now)

    async def _lookup(self, digest: str) -> ApiKey | None:
        """The key from Redis, one lookup per digest at a time: when a busy key's cache
        entry expires, the requests in flight that miss it wait for the same lookup
        (in a task of its own, so that none of them leaving cancels it for the rest)."""
        pending = self._lookups.get(digest)
        if pending is None:
            pending = asyncio.ensure_future(self._store.find_key(digest))
            self._lookups[digest] = pending
            pending.add_done_callback(lambda done: self._looked_up(digest, done))
        return await asyncio.shield(pending)

    def _looked_up(self, digest: str, done: asyncio.Future[ApiKey | None]) -> None:
        self._lookups.pop(digest, None)
        if not done.cancelled():
            done.exception()  # retrieved, even when every request that waited has left

    def forget(self, key_id: str) -> None:
        """Drop a key from this process's cache at once (after a local revocation)."""
        for digest, (key, _) in list(self._cache.items()):
            if key.id == key_id:
                self._cache.pop(digest, None)
