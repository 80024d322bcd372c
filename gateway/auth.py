"""API-key authentication (a bearer key, or a bare key), served from an in-process cache.

A known key costs no Redis round trip while its cache entry lives
(``auth.cache_ttl``, one second by default), so a key revoked or expired
elsewhere is refused by every process within that time. Unknown keys are not
cached, so a key created on another process works at once.
"""

from __future__ import annotations

import time

from cachetools import TTLCache

from gateway import apikeys
from gateway.errors import AuthenticationFailed
from gateway.store import ApiKey, Store


class Authenticator:
    def __init__(self, store: Store, *, ttl: float = 1.0, size: int = 100_000) -> None:
        self._store = store
        self._cache: TTLCache[str, ApiKey] = TTLCache(maxsize=size, ttl=ttl)

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
        digest = apikeys.digest(secret)
        key = self._cache.get(digest)
        if key is None:
            key = await self._store.find_key(digest)
            if key is None:
                raise AuthenticationFailed("invalid API key")
            self._cache[digest] = key
        if not key.usable(time.time()):
            self._cache.pop(digest, None)
            raise AuthenticationFailed("this API key has been revoked or has expired")
        return key

    def forget(self, key_id: str) -> None:
        """Drop a key from this process's cache at once (after a local revocation)."""
        for digest, key in list(self._cache.items()):
            if key.id == key_id:
                self._cache.pop(digest, None)
