from __future__ import annotations

from gateway.events import Usage
from gateway.store.records import ApiKey, KeyLimits, LedgerEntry


def test_api_key_hash_round_trip() -> None:
    key = ApiKey("key_1", "n", ("a", "b"), 1.5, 2.5, None, "sk-gw-abcd")
    assert ApiKey.from_hash(key.to_hash()) == key
    revoked = ApiKey("key_2", "m", (), 1.0, None, 3.0)
    assert ApiKey.from_hash(revoked.to_hash()) == revoked
    assert "revoked_at" not in key.to_hash()


def test_api_key_usable_and_allows() -> None:
    key = ApiKey("k", "n", agents=("echo",), expires_at=100.0)
    assert key.usable(99.9) and not key.usable(100.0)
    assert not ApiKey("k", "n", revoked_at=1.0).usable(0.0)
    assert key.allows("echo") and not key.allows("other")
    assert ApiKey("k", "n").allows("anything")


def test_ledger_entry_from_stream_fields() -> None:
    usage = Usage(5, 6, 1, 2, 3, estimated=True)
    fields = {
        "kind": "usage",
        "request_id": "req",
        "agent": "agent",
        "backend": "backend",
        "at": "10.25",
        "started_at": "9.5",
        "estimated": "1",
        "input_tokens": "5",
        "output_tokens": "6",
        "cached_input_tokens": "1",
        "cache_write_tokens": "2",
        "reasoning_tokens": "3",
        "amount": "-9",
        "held": "40",
        "balance": "91",
        "reaped": "1",
    }
    entry = LedgerEntry.from_stream("1-0", fields)
    assert entry == LedgerEntry(
        "1-0", "usage", -9, 91, 10.25, "req", "agent", "backend", usage, "", 40, 9.5, True
    )
    assert entry.to_json()["reaped"] is True and entry.to_json()["held"] == 40


def test_api_key_limits_round_trip() -> None:
    key = ApiKey("k", "n", limits=KeyLimits(rpm=5, tpm=100, max_concurrent=2, daily_budget=7))
    assert ApiKey.from_hash(key.to_hash()).limits == key.limits
    assert ApiKey.from_hash({"id": "old"}).limits == KeyLimits()  # keys made before limits existed


def test_credit_entry_has_no_usage_and_keeps_its_note() -> None:
    entry = LedgerEntry.from_stream(
        "2-0", {"kind": "credit", "amount": "5", "balance": "5", "at": "1.0", "note": "gift"}
    )
    assert entry.usage is None
    assert entry.to_json() == {
        "id": "2-0",
        "kind": "credit",
        "amount": 5,
        "balance": 5,
        "at": 1.0,
        "note": "gift",
    }
