from __future__ import annotations

import time
from importlib import resources
from typing import Any

import pytest

from gateway import apikeys
from gateway.errors import InvalidRequest, NotFound
from gateway.store import Store
from gateway.store.records import KeyLimits
from gateway.store.store import script_source


async def everything_in(store: Store) -> list[str]:
    """Every key name and every value stored, as strings."""
    r: Any = store.redis  # decode_responses=True: every reply is str
    out: list[str] = []
    async for name in r.scan_iter():
        out.append(name)
        kind = await r.type(name)
        if kind == "string":
            out.append(await r.get(name))
        elif kind == "hash":
            for k, v in (await r.hgetall(name)).items():
                out += [k, v]
        elif kind == "set":
            out += list(await r.smembers(name))
        elif kind == "zset":
            out += list(await r.zrange(name, 0, -1))
        elif kind == "stream":
            for entry_id, fields in await r.xrange(name):
                out.append(entry_id)
                for k, v in fields.items():
                    out += [k, v]
        else:
            raise AssertionError(f"unexpected type {kind} of {name}")
    return out


async def test_create_key_stores_only_the_digest(fake_store: Store) -> None:
    key, secret = await fake_store.create_key("alice", balance=100, agents=("echo",))
    assert secret.startswith(apikeys.KEY_PREFIX) and len(secret) == len(apikeys.KEY_PREFIX) + 43
    stored = await everything_in(fake_store)
    assert stored, "the key must be stored somewhere"
    secret_part = secret[len(key.hint) :]
    for item in stored:
        assert secret not in item
        assert secret_part not in item
    assert any(apikeys.digest(secret) in item for item in stored)
    assert key.hint == secret[:10]


async def test_find_key(fake_store: Store) -> None:
    key, secret = await fake_store.create_key("bob", agents=("a", "b"), expires_at=2e9)
    found = await fake_store.find_key(apikeys.digest(secret))
    assert found == key
    assert found is not None and found.agents == ("a", "b") and found.expires_at == 2e9
    assert await fake_store.find_key(apikeys.digest(secret + "x")) is None
    assert await fake_store.find_key(secret) is None  # looked up by digest, not secret


async def test_get_and_list_keys(fake_store: Store) -> None:
    first, _ = await fake_store.create_key("one")
    second, _ = await fake_store.create_key("two")
    assert await fake_store.get_key(first.id) == first
    assert [k.id for k in await fake_store.list_keys()] == [first.id, second.id]
    with pytest.raises(NotFound):
        await fake_store.get_key("key_missing")


async def test_revoke(fake_store: Store) -> None:
    key, secret = await fake_store.create_key("carol")
    before = time.time()
    revoked = await fake_store.revoke_key(key.id)
    assert revoked.revoked_at is not None and revoked.revoked_at >= before
    assert not revoked.usable(time.time())
    found = await fake_store.find_key(apikeys.digest(secret))
    assert found is not None and found.revoked_at == revoked.revoked_at
    with pytest.raises(InvalidRequest) as caught:  # revoking twice keeps the first time
        await fake_store.revoke_key(key.id, actor="test")
    assert (caught.value.status, caught.value.code) == (409, "key_revoked")
    assert "already revoked" in caught.value.message
    assert (await fake_store.get_key(key.id)).revoked_at == revoked.revoked_at
    assert await fake_store.audit_log() == []  # the refusal is not an action
    with pytest.raises(NotFound):
        await fake_store.revoke_key("key_missing")


async def test_credit(fake_store: Store) -> None:
    key, _ = await fake_store.create_key("dave")
    assert await fake_store.balance(key.id) == 0
    assert await fake_store.credit(key.id, 50, note="top-up") == 50
    assert await fake_store.credit(key.id, -20, note="refund") == 30
    assert await fake_store.balance(key.id) == 30
    entries = await fake_store.ledger(key.id)
    assert [(e.kind, e.amount, e.balance, e.note) for e in entries] == [
        ("credit", 50, 50, "top-up"),
        ("credit", -20, 30, "refund"),
    ]
    assert all(e.usage is None for e in entries)
    with pytest.raises(NotFound):
        await fake_store.credit("key_missing", 5)


async def test_initial_balance_is_a_ledger_entry(fake_store: Store) -> None:
    key, _ = await fake_store.create_key("erin", balance=1_000)
    (entry,) = await fake_store.ledger(key.id)
    assert (entry.kind, entry.amount, entry.balance, entry.note) == (
        "credit",
        1_000,
        1_000,
        "initial balance",
    )


async def test_balance_is_the_sum_of_the_ledger(fake_store: Store) -> None:
    key, _ = await fake_store.create_key("ivy", balance=1_000)
    for i in range(10):
        await fake_store.credit(key.id, -i * 3)
        if i % 3 == 0:
            await fake_store.credit(key.id, 11)
    ledger = await fake_store.ledger(key.id)
    assert sum(e.amount for e in ledger) == await fake_store.balance(key.id)
    assert ledger[-1].balance == await fake_store.balance(key.id)
    assert len(await fake_store.ledger(key.id, limit=3)) == 3


async def test_limits_are_stored_with_the_key(fake_store: Store) -> None:
    key, _ = await fake_store.create_key("lim", limits=KeyLimits(rpm=3))
    assert (await fake_store.get_key(key.id)).limits.rpm == 3
    await fake_store.set_limits(key.id, KeyLimits(tpm=9))
    assert (await fake_store.get_key(key.id)).limits == KeyLimits(tpm=9)


async def test_ping(fake_store: Store) -> None:
    assert await fake_store.ping() is True


def test_a_script_that_names_a_prelude_runs_after_it_and_one_that_does_not_runs_alone() -> None:
    lua = resources.files("gateway.store").joinpath("lua")
    settle = script_source("settle")
    assert settle.startswith(lua.joinpath("prelude", "settle.lua").read_text())
    assert settle.endswith(lua.joinpath("settle.lua").read_text())
    assert "local function refusal" not in settle  # only the parts it names
    assert "local function refusal" in script_source("admit_team")
    assert script_source("renew") == lua.joinpath("renew.lua").read_text()
    for name in ("settle", "settle_team", "admit", "admit_team"):  # the duplicates are gone
        own = lua.joinpath(f"{name}.lua").read_text()
        assert "local function whole" not in own and "local function check" not in own
