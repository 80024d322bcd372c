from __future__ import annotations

import hashlib
import re

from gateway.apikeys import KEY_PREFIX, digest, new_key_id, new_secret


def test_secrets_are_prefixed_random_and_url_safe() -> None:
    secrets = {new_secret() for _ in range(100)}
    assert len(secrets) == 100
    for secret in secrets:
        assert re.fullmatch(re.escape(KEY_PREFIX) + r"[A-Za-z0-9_-]{43}", secret)


def test_key_ids() -> None:
    ids = {new_key_id() for _ in range(100)}
    assert len(ids) == 100 and all(re.fullmatch(r"key_[0-9a-f]{16}", i) for i in ids)


def test_digest_is_sha256_hex() -> None:
    assert digest("sk-gw-x") == hashlib.sha256(b"sk-gw-x").hexdigest()
    assert digest("\udcff") != digest("")  # lone surrogates from a bad header do not crash
