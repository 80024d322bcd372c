"""API key secrets: how they look, how they are made, how they are stored.

A key is ``sk-gw-`` followed by 43 URL-safe characters (32 random bytes). Only
its SHA-256 digest is stored; the secret is shown once, when it is created.
"""

from __future__ import annotations

import hashlib
import secrets

KEY_PREFIX = "sk-gw-"


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def new_key_id() -> str:
    return "key_" + secrets.token_hex(8)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()
