from __future__ import annotations

import asyncio
import re
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import apikeys
from gateway.auth import Authenticator, key_like
from gateway.errors import AuthenticationFailed, ServiceUnavailable
from gateway.store import ApiKey, Store, schema


class Counting:
    """Counts the store's ``find_key`` round trips."""

    def __init__(self, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = store.find_key

        async def find_key(digest: str) -> ApiKey | None:
            self.calls += 1
            return await real(digest)

        monkeypatch.setattr(store, "find_key", find_key)


async def failure(auth: Authenticator, header: str | None) -> AuthenticationFailed:
    with pytest.raises(AuthenticationFailed) as info:
        await auth.authenticate(header)
    assert info.value.status == 401
    return info.value


async def test_valid_key(fake_store: Store) -> None:
    key, secret = await fake_store.create_key("k")
    auth = Authenticator(fake_store)
    assert await auth.authenticate(f"Bearer {secret}") == key
    assert await auth.authenticate(f"bearer   {secret}  ") == key  # scheme is case-insensitive


async def test_missing_header(fake_store: Store) -> None:
    auth = Authenticator(fake_store)
    assert (await failure(auth, None)).code == "missing_api_key"
    assert (await failure(auth, "")).code == "missing_api_key"


@pytest.mark.parametrize("header", ["Basic abc", "Bearer", "Bearer  ", "Token sk-gw-x", "sk-gw-x"])
async def test_bad_scheme(fake_store: Store, header: str) -> None:
    err = await failure(Authenticator(fake_store), header)
    assert "Bearer" in err.message and err.code == "invalid_api_key"


async def test_unknown_key_is_refused_and_not_cached(
    fake_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = apikeys.new_secret()
    auth = Authenticator(fake_store, ttl=60)
    err = await failure(auth, f"Bearer {secret}")
    assert err.message == "invalid API key"
    # The same secret, created afterwards (say by another process), works at once.
    monkeypatch.setattr(apikeys, "new_secret", lambda: secret)
    key, created = await fake_store.create_key("late")
    assert created == secret
    assert await auth.authenticate(f"Bearer {secret}") == key


async def test_cached_key_costs_no_store_call(
    fake_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, secret = await fake_store.create_key("k")
    counting = Counting(fake_store, monkeypatch)
    auth = Authenticator(fake_store, ttl=60)
    for _ in range(5):
        assert await auth.authenticate(f"Bearer {secret}") == key
    assert counting.calls == 1


async def test_requests_that_miss_together_share_one_lookup(
    fake_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, secret = await fake_store.create_key("k")
    counting = Counting(fake_store, monkeypatch)
    auth = Authenticator(fake_store, ttl=60)
    first = asyncio.ensure_future(auth.authenticate(f"Bearer {secret}"))
    await asyncio.sleep(0)  # its lookup is in flight
    others = [asyncio.ensure_future(auth.authenticate(f"Bearer {secret}")) for _ in range(20)]
    await asyncio.sleep(0)
    first.cancel()  # the request that started the lookup leaves; the rest still get the key
    assert await asyncio.gather(*others) == [key] * 20
    assert counting.calls == 1
    # Unknown keys share a lookup too, and each request gets its own refusal.
    errors = await asyncio.gather(
        *(failure(auth, "Bearer sk-gw-unknown") for _ in range(3)), return_exceptions=True
    )
    assert len({id(e) for e in errors}) == 3 and counting.calls == 2


async def test_unknown_keys_cost_a_call_each_time(
    fake_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    counting = Counting(fake_store, monkeypatch)
    auth = Authenticator(fake_store, ttl=60)
    for _ in range(3):
        await failure(auth, "Bearer sk-gw-unknown")
    assert counting.calls == 3


async def test_revoked_key_refused_after_cache_ttl(fake_store: Store) -> None:
    key, secret = await fake_store.create_key("k")
    auth = Authenticator(fake_store, ttl=0.05)
    await auth.authenticate(f"Bearer {secret}")
    await fake_store.revoke_key(key.id)  # elsewhere: this process's cache still holds it
    assert await auth.authenticate(f"Bearer {secret}") == key
    await asyncio.sleep(0.08)
    err = await failure(auth, f"Bearer {secret}")
    assert "revoked" in err.message


async def test_forget_drops_a_key_at_once(fake_store: Store) -> None:
    key, secret = await fake_store.create_key("k")
    auth = Authenticator(fake_store, ttl=60)
    await auth.authenticate(f"Bearer {secret}")
    await fake_store.revoke_key(key.id)
    auth.forget(key.id)
    await failure(auth, f"Bearer {secret}")


async def test_expired_key_refused(fake_store: Store) -> None:
    _, secret = await fake_store.create_key("old", expires_at=time.time() - 1)
    err = await failure(Authenticator(fake_store), f"Bearer {secret}")
    assert "expired" in err.message


async def test_cached_key_refused_once_it_expires(fake_store: Store) -> None:
    _, secret = await fake_store.create_key("soon", expires_at=time.time() + 0.05)
    auth = Authenticator(fake_store, ttl=60)
    await auth.authenticate(f"Bearer {secret}")
    await asyncio.sleep(0.08)
    await failure(auth, f"Bearer {secret}")  # checked on every call, cached or not


async def test_a_bare_secret_authenticates_the_same_way(fake_store: Store) -> None:
    """``x-api-key`` sends the secret alone; the same cache and checks apply."""
    key, secret = await fake_store.create_key("k")
    auth = Authenticator(fake_store)
    assert await auth.authenticate_secret(secret) == key
    with pytest.raises(AuthenticationFailed) as empty:
        await auth.authenticate_secret("")
    assert empty.value.code == "missing_api_key"
    with pytest.raises(AuthenticationFailed):
        await auth.authenticate_secret("sk-gw-unknown")


# While Redis is unreachable


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Outage:
    """``find_key`` fails with a 503 while ``down``; counts the calls that reach it."""

    def __init__(self, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
        self.down = False
        self.calls = 0
        real = store.find_key

        async def find_key(digest: str) -> ApiKey | None:
            self.calls += 1
            if self.down:
                raise ServiceUnavailable("the gateway's store is unavailable; retry later")
            return await real(digest)

        monkeypatch.setattr(store, "find_key", find_key)


async def test_a_known_key_keeps_working_for_stale_for_while_the_store_is_down(
    fake_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, secret = await fake_store.create_key("k")
    outage, clock = Outage(fake_store, monkeypatch), Clock()
    auth = Authenticator(fake_store, ttl=1, stale_for=10, clock=clock)
    assert await auth.authenticate(f"Bearer {secret}") == key
    outage.down = True
    clock.now += 5  # past cache_ttl: Redis is asked, fails, the cached copy serves
    assert await auth.authenticate(f"Bearer {secret}") == key
    clock.now += 5.5  # 10.5 s since Redis last answered for it: still inside 1 + 10
    assert await auth.authenticate(f"Bearer {secret}") == key
    clock.now += 1  # 11.5 s: too old to trust
    with pytest.raises(ServiceUnavailable) as info:
        await auth.authenticate(f"Bearer {secret}")
    err = info.value
    assert err.status == 503 and err.code == "store_unavailable" and "Redis" in err.message
    assert err.headers["Retry-After"] == "1"
    outage.down = False
    clock.now += 1
    assert await auth.authenticate(f"Bearer {secret}") == key  # back: fresh again


@pytest.mark.parametrize(
    "secret",
    [
        "\udcff",  # the byte 0xff, as aiohttp decodes a header (UTF-8, surrogateescape)
        "sk-gw-abc\udcff",
        "s\u00e9cret",  # valid UTF-8, not ASCII
        "sk-gw-abc\tdef",  # a tab is the one control character aiohttp lets through
        "sk-gw-abc def",
    ],
)
async def test_a_secret_no_key_could_have_is_401_without_a_lookup(
    fake_store: Store, monkeypatch: pytest.MonkeyPatch, secret: str
) -> None:
    # Even while Redis is down: a 503 would tell the client to retry a hopeless key.
    outage = Outage(fake_store, monkeypatch)
    outage.down = True
    auth = Authenticator(fake_store)
    assert (await failure(auth, f"Bearer {secret}")).message == "invalid API key"
    with pytest.raises(AuthenticationFailed):
        await auth.authenticate_secret(secret)
    assert outage.calls == 0


async def test_an_unknown_key_never_becomes_valid_during_an_outage(
    fake_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    outage = Outage(fake_store, monkeypatch)
    auth = Authenticator(fake_store, ttl=1, stale_for=60)
    outage.down = True
    with pytest.raises(ServiceUnavailable):
        await auth.authenticate(f"Bearer {apikeys.new_secret()}")


async def test_stale_for_zero_refuses_as_soon_as_the_cache_expires(
    fake_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, secret = await fake_store.create_key("k")
    outage, clock = Outage(fake_store, monkeypatch), Clock()
    auth = Authenticator(fake_store, ttl=1, stale_for=0, clock=clock)
    await auth.authenticate(f"Bearer {secret}")
    outage.down = True
    clock.now += 1.01
    with pytest.raises(ServiceUnavailable):
        await auth.authenticate(f"Bearer {secret}")


async def test_a_stale_key_still_expires_on_time(
    fake_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    expires = time.time() + 0.3  # long enough to authenticate once on a busy machine
    _, secret = await fake_store.create_key("soon", expires_at=expires)
    outage, clock = Outage(fake_store, monkeypatch), Clock()
    auth = Authenticator(fake_store, ttl=1, stale_for=60, clock=clock)
    await auth.authenticate(f"Bearer {secret}")
    outage.down = True
    clock.now += 2
    await asyncio.sleep(expires - time.time() + 0.01)
    err = await failure(auth, f"Bearer {secret}")
    assert "expired" in err.message


async def test_after_a_failure_the_store_is_not_asked_again_at_once(
    fake_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An outage costs each request no wait: the stale copy serves without a round trip."""
    key, secret = await fake_store.create_key("k")
    outage, clock = Outage(fake_store, monkeypatch), Clock()
    auth = Authenticator(fake_store, ttl=1, stale_for=60, clock=clock)
    await auth.authenticate(f"Bearer {secret}")
    outage.down = True
    clock.now += 2
    for _ in range(5):
        assert await auth.authenticate(f"Bearer {secret}") == key
    assert outage.calls == 2  # the first read, then one failed attempt
    clock.now += 1  # RETRY_STORE_AFTER later: asked again
    await auth.authenticate(f"Bearer {secret}")
    assert outage.calls == 3


async def test_a_key_deleted_from_redis_is_dropped_from_the_stale_copies(
    fake_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, secret = await fake_store.create_key("k")
    outage, clock = Outage(fake_store, monkeypatch), Clock()
    auth = Authenticator(fake_store, ttl=1, stale_for=60, clock=clock)
    await auth.authenticate(f"Bearer {secret}")
    await fake_store.redis.delete(schema.digest_index(apikeys.digest(secret)))
    clock.now += 2
    await failure(auth, f"Bearer {secret}")  # Redis says: no such key
    outage.down = True
    clock.now += 1
    with pytest.raises(ServiceUnavailable):
        await auth.authenticate(f"Bearer {secret}")  # no stale copy left to serve


async def test_the_cache_keeps_at_most_size_keys_dropping_the_oldest_read(
    fake_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    counting = Counting(fake_store, monkeypatch)
    auth = Authenticator(fake_store, ttl=60, size=2)
    secrets = [(await fake_store.create_key(f"k{n}"))[1] for n in range(3)]
    for secret in secrets:
        await auth.authenticate(f"Bearer {secret}")
    assert len(auth._cache) == 2 and counting.calls == 3
    await auth.authenticate(f"Bearer {secrets[2]}")  # still cached
    await auth.authenticate(f"Bearer {secrets[1]}")
    assert counting.calls == 3
    await auth.authenticate(f"Bearer {secrets[0]}")  # the oldest read: dropped for room
    assert counting.calls == 4 and len(auth._cache) == 2


async def test_the_cache_drops_what_is_too_old_to_serve_even_while_the_store_is_down(
    fake_store: Store,
) -> None:
    clock = Clock()
    auth = Authenticator(fake_store, ttl=1, stale_for=10, clock=clock)
    old, fresh = [(await fake_store.create_key(f"k{n}"))[1] for n in range(2)]
    await auth.authenticate(f"Bearer {old}")
    clock.now += 11  # 1 + 10 seconds: too old to be served at all
    await auth.authenticate(f"Bearer {fresh}")
    assert [key.name for key, _ in auth._cache.values()] == ["k1"]


@given(st.text())
def test_a_key_holds_printable_ascii_but_the_space(secret: str) -> None:
    assert key_like(secret) == bool(re.fullmatch(r"[!-~]*", secret))
