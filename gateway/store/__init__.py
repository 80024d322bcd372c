"""State in Redis: API keys (as digests), balances and the ledger."""

from gateway.store.records import ApiKey, LedgerEntry
from gateway.store.store import Store, connect

__all__ = ["ApiKey", "LedgerEntry", "Store", "connect"]
