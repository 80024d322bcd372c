"""Random ids made on every request (request ids, charge ids), without a system call each.

``random_hex()`` is what ``secrets.token_hex(16)`` gives (32 hex digits from
``os.urandom``), but read from the OS 128 ids at a time: a ``getrandom`` system call
per request was a measurable part of a request's cost. A forked child draws its own
ids, never the ones its parent has still to use.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

IDS_PER_READ = 128


def hex_ids() -> Iterator[str]:
    """An endless series of distinct 32-hex-digit random ids."""
    while True:
        digits = os.urandom(16 * IDS_PER_READ).hex()
        for at in range(0, len(digits), 32):
            yield digits[at : at + 32]


_ids = hex_ids()


def random_hex() -> str:
    """32 random hex digits, as ``secrets.token_hex(16)``."""
    return next(_ids)


def _forget_ids() -> None:
    global _ids
    _ids = hex_ids()


os.register_at_fork(after_in_child=_forget_ids)
