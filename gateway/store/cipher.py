"""Stored content sealed at rest: AES-GCM, a random nonce per value, bound to where it lives.

``ContentCipher`` is the one seam every store of conversation content goes through
(stored responses, the event streams of background responses, A2A tasks, their
streams and contexts, and whatever else keeps content later): ``seal`` before a
value reaches Redis, ``open`` when it is read. Without keys it passes text through
(``PLAINTEXT``).

A sealed value is text, since the store's client decodes replies::

    gwe1:<key id>:<base64 of nonce (12 bytes) + ciphertext + tag (16 bytes)>

The associated data is the value's binding (its Redis key, and a stream entry's
id): a ciphertext copied under another response, key or entry fails to open. The
key id (``key_id``: 12 hex digits of a SHA-256 of the key, which tells nothing of
the key) says which key sealed it, so older values still open after a rotation
(``responses.encryption.previous_key_envs``). A value that is not sealed (stored
before encryption was turned on) is read as it is: it expires with its retention.

Keys are 32 random bytes (AES-256), written in base64 in an environment variable
(``openssl rand -base64 32``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from gateway.errors import GatewayError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

log = logging.getLogger(__name__)

PREFIX = "gwe1:"
UNREADABLE = "Stored content cannot be decrypted by this gateway (its log says why)."
NONCE_BYTES = 12  # 96 bits, random per value: GCM's recommended nonce
KEY_BYTES = 32


class UnreadableContent(GatewayError):
    """A stored value that cannot be opened: sealed with a key not configured, or altered."""

    code = "stored_content_unreadable"


def key_id(key: bytes) -> str:
    """The id stored beside what ``key`` sealed: a digest, so it reveals nothing of the key."""
    return hashlib.sha256(b"gateway content key\x00" + key).hexdigest()[:12]


def parse_key(text: str) -> bytes:
    """A key from its base64 text; ``ValueError`` saying what is wrong (never the text)."""
    cleaned = text.strip()
    try:
        key = base64.b64decode(cleaned.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("is not base64 (expected 32 random bytes in base64)") from None
    if len(key) != KEY_BYTES:
        raise ValueError(f"decodes to {len(key)} bytes; an AES-256 key is {KEY_BYTES}")
    return key


class ContentCipher:
    """Seals with the current key; opens what any configured key sealed."""

    def __init__(self, current: bytes | None = None, previous: Sequence[bytes] = ()) -> None:
        self._current: tuple[str, AESGCM] | None = None
        self._keys: dict[str, AESGCM] = {}
        if current is not None:
            # Imported only when a key is configured: `cryptography` adds about 8 MB to a
            # process, which a gateway that stores nothing encrypted need not carry.
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            self._current = (key_id(current), AESGCM(current))
            for key in (current, *previous):
                self._keys.setdefault(key_id(key), AESGCM(key))

    @property
    def encrypts(self) -> bool:
        return self._current is not None

    @property
    def key_id(self) -> str | None:
        """The id of the key that seals new values; ``None`` without encryption."""
        return self._current[0] if self._current is not None else None

    def seal(self, data: bytes, binding: str) -> str:
        """``data`` as stored under ``binding``: sealed, or as text without encryption."""
        if self._current is None:
            return data.decode()
        kid, aead = self._current
        nonce = os.urandom(NONCE_BYTES)
        sealed = aead.encrypt(nonce, data, binding.encode())
        return f"{PREFIX}{kid}:{binascii.b2a_base64(nonce + sealed, newline=False).decode()}"

    def open(self, value: str, binding: str) -> bytes:
        """What ``seal`` was given; ``UnreadableContent`` if this cipher cannot tell."""
        if not value.startswith(PREFIX):
            return value.encode()
        kid, _, body = value[len(PREFIX) :].partition(":")
        aead = self._keys.get(kid)
        if aead is None:
            configured = sorted(self._keys) or "none"
            # The operator's detail goes to the log; the client learns only that it failed.
            log.error(
                "%s was encrypted with key id %s, which is not configured (key ids "
                "configured: %s; responses.encryption.key_env, previous_key_envs)",
                binding,
                kid,
                configured,
            )
            raise UnreadableContent(UNREADABLE)
        from cryptography.exceptions import InvalidTag  # loaded with the key (__init__)

        try:
            raw = binascii.a2b_base64(body, strict_mode=True)
            return aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], binding.encode())
        except (binascii.Error, ValueError, InvalidTag):
            log.error("%s does not open with key id %s: altered, or moved there", binding, kid)
            raise UnreadableContent(UNREADABLE) from None

    def open_text(self, value: str, binding: str) -> str:
        """``open`` for text: a value that is not sealed comes back as it is."""
        return value if not value.startswith(PREFIX) else self.open(value, binding).decode()


PLAINTEXT = ContentCipher()


class KeyProblem(ValueError):
    """An encryption key that cannot be used; ``setting`` names where it was configured."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting
        self.message = message


def cipher_from_env(
    key_env: str | None,
    previous_key_envs: Sequence[str] = (),
    *,
    setting: str = "responses.encryption",
    environ: Mapping[str, str] = os.environ,
) -> ContentCipher:
    """The cipher whose keys the named environment variables hold; ``PLAINTEXT``
    without ``key_env``. A variable unset, empty or not a key is a ``KeyProblem``."""
    if key_env is None:
        if previous_key_envs:
            raise KeyProblem(f"{setting}.key_env", "required with previous_key_envs")
        return PLAINTEXT

    def read(name: str, where: str) -> bytes:
        text = environ.get(name)
        if not text:
            raise KeyProblem(where, f"environment variable {name} is not set or empty")
        try:
            return parse_key(text)
        except ValueError as exc:
            raise KeyProblem(where, f"environment variable {name} {exc}") from None

    current = read(key_env, f"{setting}.key_env")
    previous = [
        read(name, f"{setting}.previous_key_envs[{i}]") for i, name in enumerate(previous_key_envs)
    ]
    return ContentCipher(current, previous)
