"""Scrubbing secrets out of text bound for a log line or an error body.

Three kinds of secret are replaced by ``[redacted]``, whoever wrote the text
(the gateway, aiohttp's or asyncio's loggers, a plugin):

- anything shaped like a key: a gateway key (``sk-gw-...``), or ``sk-`` and 20
  or more key characters (OpenAI's and Anthropic's upstream keys);
- the value of a credential header written out (``Authorization``,
  ``Proxy-Authorization``, ``x-api-key``, ``api-key``, after ``:`` or ``=``),
  and whatever follows ``Bearer``; the scheme name itself stays, for the reader;
- the secrets the configuration names (``Redactor.add``): every field marked
  ``env`` (the admin token, upstream keys, Redis passwords) read from the
  environment, and the password of a Redis URL. Shorter ones than
  ``MIN_SECRET_CHARS`` are left alone: hiding every ``abc`` in the log would hide
  more than it protects.

aiohttp quotes a malformed header line with ``repr``, and a line over the limit
cut short: the credential patterns stop at a quote or a backslash, so the part
of a key before the first byte aiohttp escaped is caught even when the rest is
not there.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

REDACTED = "[redacted]"
MIN_SECRET_CHARS = 6
# Scrubbed short strings kept for the next line: most fields of the access log (key id,
# agent, backend, model, outcome) repeat on every line, and two regular expressions
# over each cost more than the rest of the line.
_CACHED_CHARS = 128
_CACHE_SIZE = 1024
_PLAIN = frozenset({int, float, bool, type(None)})
# A request id as the gateway makes it (gateway.server.middlewares).
_OWN_ID = re.compile(r"req_[0-9a-f]{32}")

# A credential ends at white space, a quote (aiohttp's repr of a raw line), a backslash
# (an escaped byte in that repr) or a separator of structured text; one that begins
# with "<" is a placeholder ("Bearer <key>") in a message telling what to send.
_VALUE = r"[^\s'\"\\,;<][^\s'\"\\,;]*"
_SHAPES = re.compile(
    rf"""
    (?P<key>sk-gw-[A-Za-z0-9_\-]*|\bsk-[A-Za-z0-9_\-]{{20,}})
    | (?P<header>\b(?:proxy-authorization|authorization|x-api-key|api-key)["']?\s*[:=]\s*["']?)
      (?P<scheme>(?:bearer|basic|digest|token)\s+)?{_VALUE}
    | (?P<bearer>\bbearer\s+){_VALUE}
    """,
    re.IGNORECASE | re.VERBOSE,
)


def _shape(match: re.Match[str]) -> str:
    if match["key"] is not None:
        return REDACTED
    if match["header"] is not None:
        return f"{match['header']}{match['scheme'] or ''}{REDACTED}"
    return f"{match['bearer']}{REDACTED}"


def scrub_shapes(text: str) -> str:
    """``text`` with key-shaped strings and credential header values redacted.

    Every match of ``_SHAPES`` contains ``sk-``, ``bearer``, ``authorization`` or
    ``api-key``, in any case: ASCII text with none of them (a request id, most log
    fields) is returned as it is without running the expression, which, case-insensitive,
    tries each alternative at each character (about 1,000 instructions a character).
    Not for other text: case-insensitive matching knows more letters than ``lower``.
    """
    if text.isascii():
        lowered = text.lower()
        if (
            "sk-" not in lowered
            and "bearer" not in lowered
            and "authorization" not in lowered
            and "api-key" not in lowered
        ):
            return text
    return _SHAPES.sub(_shape, text)


class Redactor:
    """Redacts the key shapes and the secrets it was given (see the module's doc)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self._literal: re.Pattern[str] | None = None
        self._scrubbed: dict[str, str] = {}
        # Counts the changes of the secrets: text scrubbed and kept elsewhere (the access
        # log's parts, ``gateway.logs``) is good while it has not changed.
        self.generation = 0
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Redact these too (each also as ``repr`` writes it, escapes and all)."""
        new = set()
        for secret in secrets:
            secret = secret.strip()
            if len(secret) >= MIN_SECRET_CHARS:
                new |= {secret, repr(secret)[1:-1], ascii(secret)[1:-1]}
        if new <= self._secrets:
            return
        self._secrets |= new
        self._scrubbed = {}
        self.generation += 1
        longest_first = sorted(self._secrets, key=len, reverse=True)
        self._literal = re.compile("|".join(map(re.escape, longest_first)))

    def scrub(self, text: str) -> str:
        done = self._scrubbed.get(text)
        if done is not None:
            return done
        scrubbed = text
        if self._literal is not None:
            scrubbed = self._literal.sub(REDACTED, scrubbed)
        scrubbed = scrub_shapes(scrubbed)
        if len(text) <= _CACHED_CHARS:
            if len(self._scrubbed) >= _CACHE_SIZE:
                self._scrubbed.clear()
            self._scrubbed[text] = scrubbed
        return scrubbed

    def scrub_request_id(self, text: str) -> str:
        """``scrub(text)`` for a request id, cheaper for one the gateway made itself.

        Such an id (``req_`` and 32 lowercase hex digits, ``_OWN_ID``) holds none of
        the words every key shape needs (``sk-``, ``bearer``, ``authorization``,
        ``api-key``), so only the configured secrets are looked for, and it is not
        kept in the cache: every request's id is new, and would only push out the
        fields that repeat. Any other id (a client's) is scrubbed as any text is."""
        if _OWN_ID.fullmatch(text) is None:
            return self.scrub(text)
        if self._literal is None:
            return text
        return self._literal.sub(REDACTED, text)

    def scrub_value(self, value: object) -> object:
        """A log record's extra field with its strings scrubbed (in containers too)."""
        if type(value) in _PLAIN:
            return value
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, dict):
            return {k: self.scrub_value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.scrub_value(v) for v in value)
        return value


def configured_secrets(config: object) -> set[str]:
    """The secrets a configuration reads from the environment, and any URL's password.

    Walks the configuration's dataclasses (backend and filter options included)
    for fields marked ``env`` (``gateway.typed``): the convention by which every
    secret, a plugin's too, is named in ``gateway.yaml`` and read from the
    environment.
    """
    found: set[str] = set()
    _walk(config, found, set())
    return found


def _walk(value: object, found: set[str], seen: set[int]) -> None:
    if id(value) in seen:
        return
    seen.add(id(value))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            inner = getattr(value, f.name, None)
            if f.metadata.get("env") and isinstance(inner, str):
                found.add(os.environ.get(inner, ""))
            elif isinstance(inner, str) and "://" in inner:
                password = _url_password(inner)
                if password:
                    found.add(password)
            else:
                _walk(inner, found, seen)
    elif isinstance(value, dict):
        for inner in value.values():
            _walk(inner, found, seen)
    elif isinstance(value, list | tuple):
        for inner in value:
            _walk(inner, found, seen)


def _url_password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None
