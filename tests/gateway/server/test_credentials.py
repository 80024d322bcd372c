"""``gateway.server.credentials``: which header carries the key, per route."""

from __future__ import annotations

import pytest

from gateway.auth import Authenticator
from gateway.errors import AuthenticationFailed
from gateway.server import routes
from gateway.server.credentials import api_key_or_bearer, bearer
from gateway.store import Store


async def test_bearer_reads_authorization_only(fake_store: Store) -> None:
    key, secret = await fake_store.create_key("k")
    auth = Authenticator(fake_store)
    assert await bearer(auth, {"Authorization": f"Bearer {secret}"}) == key
    with pytest.raises(AuthenticationFailed) as info:
        await bearer(auth, {"x-api-key": secret})
    assert info.value.code == "missing_api_key"


async def test_api_key_or_bearer_prefers_x_api_key(fake_store: Store) -> None:
    key, secret = await fake_store.create_key("k")
    auth = Authenticator(fake_store)
    assert await api_key_or_bearer(auth, {"x-api-key": f" {secret} "}) == key
    assert await api_key_or_bearer(auth, {"Authorization": f"Bearer {secret}"}) == key
    with pytest.raises(AuthenticationFailed):  # x-api-key wins, even when wrong
        await api_key_or_bearer(auth, {"x-api-key": "nope", "Authorization": f"Bearer {secret}"})
    with pytest.raises(AuthenticationFailed) as info:
        await api_key_or_bearer(auth, {})
    assert "x-api-key" in info.value.message and info.value.code == "missing_api_key"


def test_only_the_messages_routes_take_x_api_key() -> None:
    rules = {
        prefix + op.path: op.key_rule
        for table in routes.PUBLIC
        for prefix in table.prefixes
        for op in table.operations
        if op.security == "api_key"
    }
    takes_x_api_key = {path for path, rule in rules.items() if rule is api_key_or_bearer}
    assert takes_x_api_key == {
        f"{prefix}/messages{tail}" for prefix in routes.PREFIXES for tail in ("", "/count_tokens")
    }
    assert all(rule is bearer for path, rule in rules.items() if path not in takes_x_api_key)
