"""``gateway.redaction``: key shapes, credential headers and configured secrets scrubbed."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import apikeys
from gateway.redaction import (
    _SHAPES,
    REDACTED,
    Redactor,
    _shape,
    configured_secrets,
    scrub_shapes,
)
from tests.conftest import make_config

KEY = apikeys.new_secret()


@pytest.mark.parametrize(
    "text",
    [
        KEY,
        f"b'Authorization: Bearer {KEY}\\x00x'",  # aiohttp's repr of a malformed line
        f"b'x-api-key: {KEY}\\x01'",
        f"Got more than 8190 bytes when reading: b'Bearer {KEY}kkkkkkkk...'.",
        f"key={KEY[:20]}",  # cut short, as aiohttp cuts a long line
        f'{{"authorization": "Bearer {KEY}"}}',
        f"headers: {{'X-Api-Key': '{KEY}'}}",
    ],
)
def test_a_gateway_key_never_survives(text: str) -> None:
    scrubbed = scrub_shapes(text)
    assert KEY[:12] not in scrubbed and REDACTED in scrubbed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer opaque-token", f"Authorization: Bearer {REDACTED}"),
        ("authorization=Basic dXNlcjpwYXNz", f"authorization=Basic {REDACTED}"),
        ("Proxy-Authorization: secret", f"Proxy-Authorization: {REDACTED}"),
        ("api-key: azure-key-123", f"api-key: {REDACTED}"),
        ("bearer abc, next", f"bearer {REDACTED}, next"),
        ("upstream sk-proj-abcdefghijklmnopqrstuvwx said no", f"upstream {REDACTED} said no"),
        ("sk-ant-api03-abcdefghijklmnopqrstu", REDACTED),
    ],
)
def test_credential_values_are_redacted_and_their_scheme_kept(text: str, expected: str) -> None:
    assert scrub_shapes(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "listening on http://0.0.0.0:8080 (3 routes)",
        "key key_0123abcd revoked by 127.0.0.1",
        "the Authorization header must be 'Bearer <key>'",  # no value after the colon
        "task-queue sk-short",
    ],
)
def test_ordinary_lines_are_left_alone(text: str) -> None:
    assert scrub_shapes(text) == text


def test_configured_secrets_are_redacted_wherever_they_appear() -> None:
    redactor = Redactor(["admin-token-0123", "tok\\en'with\"quotes"])
    assert redactor.scrub("token admin-token-0123 given") == f"token {REDACTED} given"
    assert redactor.scrub("x-admin-token-0123-y") == f"x-{REDACTED}-y"
    # repr() writes a backslash doubled: the secret as aiohttp quotes it is redacted too
    assert "with" not in redactor.scrub(repr(b"tok\\en'with\"quotes"))
    redactor.add(["upstream-secret\n"])  # read from a file, newline and all
    assert redactor.scrub("upstream-secret") == REDACTED


def test_secrets_too_short_to_mean_anything_are_ignored() -> None:
    assert Redactor(["abc", "  ", ""]).scrub("abc def") == "abc def"


def test_extra_fields_are_scrubbed_inside_containers() -> None:
    value = {"headers": [f"Bearer {KEY}", 3], "note": ("ok", KEY)}
    scrubbed = Redactor().scrub_value(value)
    assert KEY not in repr(scrubbed)
    assert scrubbed == {"headers": [f"Bearer {REDACTED}", 3], "note": ("ok", REDACTED)}


CONFIG = """
admin: {token_env: TEST_ADMIN_TOKEN}
backends:
  up: {type: openai_chat, base_url: "http://upstream:8000/v1", api_key_env: TEST_UPSTREAM_KEY}
  claude: {type: anthropic, api_key_env: TEST_ANTHROPIC_KEY}
routes:
  a: {backend: up}
"""


def test_configured_secrets_are_the_env_fields_and_url_passwords(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_ADMIN_TOKEN", "the-admin-token")
    monkeypatch.setenv("TEST_UPSTREAM_KEY", "the-upstream-key")
    monkeypatch.setenv("TEST_ANTHROPIC_KEY", "the-anthropic-key")
    config = make_config(CONFIG, "redis://:the-redis-password@redis:6379/0")
    found = configured_secrets(config)
    assert {"the-admin-token", "the-upstream-key", "the-anthropic-key"} <= found
    assert "the-redis-password" in found
    plain = replace(config, redis=replace(config.redis, url="redis://redis:6379/0"))
    assert "the-redis-password" not in configured_secrets(plain)


_PIECES = st.sampled_from(
    ["sk-", "SK-", "gw-", "Bearer ", "bEaReR\t", "Authorization: ", "X-API-KEY=", "api-key",
     "\u017fk-", "\u212a", "a" * 20, "req_", "0123456789abcdef", " ", "'", '"', "\\", ":", "é"]
)  # fmt: skip


@given(st.lists(_PIECES | st.text(max_size=4), max_size=12).map("".join))
def test_text_without_a_shapes_needle_is_what_the_expression_makes_of_it(text: str) -> None:
    assert scrub_shapes(text) == _SHAPES.sub(_shape, text)


def test_a_request_id_is_left_alone() -> None:
    rid = "req_0123456789abcdef0123456789abcdef"
    assert scrub_shapes(rid) is rid


_HEX = st.text("0123456789abcdef", min_size=32, max_size=32)
_SECRETS = st.lists(st.text("0123456789abcdef-_", min_size=6, max_size=10), max_size=3)


@given(_HEX, _SECRETS)
def test_a_request_id_the_gateway_made_is_scrubbed_as_any_text(
    digits: str, secrets: list[str]
) -> None:
    rid = "req_" + digits
    assert Redactor(secrets).scrub_request_id(rid) == Redactor(secrets).scrub(rid)


@given(_PIECES | st.from_regex(r"[A-Za-z0-9._:\-]{1,128}", fullmatch=True), _SECRETS)
def test_any_other_request_id_is_scrubbed_as_any_text(rid: str, secrets: list[str]) -> None:
    assert Redactor(secrets).scrub_request_id(rid) == Redactor(secrets).scrub(rid)


def test_a_client_request_id_shaped_like_a_key_is_redacted() -> None:
    assert Redactor().scrub_request_id(f"sk-gw-{'a' * 30}") == REDACTED


def test_a_request_id_the_gateway_made_is_not_cached() -> None:
    redactor = Redactor(["0123456789"])
    rid = "req_0123456789abcdef0123456789abcdef"
    assert redactor.scrub_request_id(rid) == f"req_{REDACTED}abcdef{REDACTED}abcdef"
    assert rid not in redactor._scrubbed
