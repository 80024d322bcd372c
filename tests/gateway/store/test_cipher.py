"""``gateway.store.cipher``: AES-GCM sealing bound to a place, key ids, rotation, key parsing."""

from __future__ import annotations

import base64
import os

import pytest

from gateway.store.cipher import (
    PLAINTEXT,
    PREFIX,
    ContentCipher,
    KeyProblem,
    UnreadableContent,
    cipher_from_env,
    key_id,
    parse_key,
)

OLD, NEW = os.urandom(32), os.urandom(32)


def test_sealed_values_open_only_where_they_were_sealed() -> None:
    cipher = ContentCipher(NEW)
    sealed = cipher.seal(b'{"text": "secret"}', "gw:{k}:response:r1")
    assert sealed.startswith(f"{PREFIX}{key_id(NEW)}:") and "secret" not in sealed
    assert cipher.open(sealed, "gw:{k}:response:r1") == b'{"text": "secret"}'
    with pytest.raises(UnreadableContent):
        cipher.open(sealed, "gw:{k}:response:r2")


def test_every_value_gets_its_own_nonce() -> None:
    cipher = ContentCipher(NEW)
    assert cipher.seal(b"same", "b") != cipher.seal(b"same", "b")


def test_an_altered_value_does_not_open(caplog: pytest.LogCaptureFixture) -> None:
    cipher = ContentCipher(NEW)
    sealed = cipher.seal(b"hello", "b")
    head, _, body = sealed.rpartition(":")
    raw = bytearray(base64.b64decode(body))
    raw[-1] ^= 1
    with pytest.raises(UnreadableContent):
        cipher.open(f"{head}:{base64.b64encode(bytes(raw)).decode()}", "b")
    assert "b does not open with key id" in caplog.text and "altered" in caplog.text


def test_rotation_opens_older_values_and_seals_with_the_new_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    old_sealed = ContentCipher(OLD).seal(b"before", "b")
    rotated = ContentCipher(NEW, [OLD])
    assert rotated.key_id == key_id(NEW)
    assert rotated.open(old_sealed, "b") == b"before"
    with pytest.raises(UnreadableContent) as info:
        ContentCipher(NEW).open(old_sealed, "b")  # the old key dropped too soon
    # The client is told it failed; the operator's log says which key is missing.
    assert key_id(OLD) not in info.value.message and info.value.status == 500
    assert f"key id {key_id(OLD)}, which is not configured" in caplog.text
    assert key_id(NEW) in caplog.text


def test_plaintext_passes_through_and_refuses_sealed_values() -> None:
    assert not PLAINTEXT.encrypts and PLAINTEXT.key_id is None
    assert PLAINTEXT.seal(b'{"a":1}', "b") == '{"a":1}'
    assert PLAINTEXT.open_text('{"a":1}', "b") == '{"a":1}'
    with pytest.raises(UnreadableContent):
        PLAINTEXT.open(ContentCipher(NEW).seal(b"x", "b"), "b")


def test_keys_are_32_bytes_in_base64() -> None:
    assert parse_key(base64.b64encode(NEW).decode() + "\n") == NEW
    assert parse_key(base64.urlsafe_b64encode(NEW).decode()) == NEW
    with pytest.raises(ValueError, match="not base64"):
        parse_key("not a key!")
    with pytest.raises(ValueError, match="16 bytes"):
        parse_key(base64.b64encode(os.urandom(16)).decode())


def test_keys_come_from_the_environment_with_clear_problems() -> None:
    env = {"K": base64.b64encode(NEW).decode(), "OLD": base64.b64encode(OLD).decode()}
    cipher = cipher_from_env("K", ["OLD"], environ=env)
    assert cipher.encrypts and cipher.key_id == key_id(NEW)
    assert cipher_from_env(None, environ=env) is PLAINTEXT
    with pytest.raises(KeyProblem) as info:
        cipher_from_env("MISSING", environ=env)
    assert info.value.setting == "responses.encryption.key_env"
    assert "MISSING is not set" in info.value.message
    with pytest.raises(KeyProblem) as info:
        cipher_from_env("K", ["K", "BAD"], environ=env | {"BAD": "c2hvcnQ="})
    assert info.value.setting == "responses.encryption.previous_key_envs[1]"
    assert "5 bytes" in info.value.message and "c2hvcnQ" not in str(info.value)
