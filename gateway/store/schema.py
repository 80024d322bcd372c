"""The Redis key schema: the only place that spells a key name.

Everything of one API key shares the hash tag ``{key_id}``, so every script
that touches several of them runs on Redis Cluster too.
"""

from __future__ import annotations

PREFIX = "gw"
KEY_INDEX = f"{PREFIX}:keys"  # set of every key id (for listing)


def digest_index(digest: str) -> str:
    """The key id of an API key, found by its SHA-256 digest."""
    return f"{PREFIX}:digest:{digest}"


def key_record(key_id: str) -> str:
    return f"{PREFIX}:{{{key_id}}}:key"


def balance(key_id: str) -> str:
    return f"{PREFIX}:{{{key_id}}}:balance"


def ledger(key_id: str) -> str:
    return f"{PREFIX}:{{{key_id}}}:ledger"


def entry_marker(key_id: str, entry_id: str) -> str:
    return f"{PREFIX}:{{{key_id}}}:entry:{entry_id}"


def stored_response(key_id: str, response_id: str) -> str:
    """A stored Open Responses response; scoped to the key that created it."""
    return f"{PREFIX}:{{{key_id}}}:response:{response_id}"
