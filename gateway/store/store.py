"""The store: API keys, balances and the ledger in Redis.

Balances are integer credits (1,000,000 credits = 1 USD). Every change of a
balance is one ledger entry written by the same script (``lua/post_entry.lua``),
at most once per entry id, so the sum of a key's ledger equals its balance.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
import uuid
from datetime import UTC, datetime
from importlib import resources
from types import TracebackType
from typing import Any, cast
from urllib.parse import unquote, urlsplit

from redis import asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import RedisError

from gateway import amounts, apikeys, metrics
from gateway.errors import InvalidRequest, NotFound, ServiceUnavailable
from gateway.store import schema
from gateway.store.records import ApiKey, AuditEntry, KeyLimits, LedgerEntry, Team
from gateway.store.settings import EMBEDDED, RedisSettings

log = logging.getLogger(__name__)

ENTRY_MARKER_TTL = 7 * 24 * 3600  # a request id can be settled again after a week at most
AUDIT_MAX_ENTRIES = 1_000_000  # the audit stream keeps (about) this many latest actions
DEFAULT_GRACE_SECONDS = 24 * 3600.0  # a rotated-out secret works this long by default
DAY_AGGREGATE_TTL = 400 * 24 * 3600  # a key's daily aggregate (gateway/store/aggregates.py)


def text_member(key: ApiKey) -> str:
    """A key's member in ``schema.KEYS_BY_TEXT``: its name, lowercased, then its id."""
    return f"{key.name.lower()}\0{key.id}"


def connect(settings: RedisSettings) -> aioredis.Redis:
    """A client for ``settings.url``; ``embedded`` gives an in-process fake server.

    Both use a blocking pool: under a burst, requests wait (up to the socket
    timeout) for a connection instead of failing the moment the pool is exhausted.
    With ``redis.sentinel`` the client follows the master the Sentinels name; with
    ``redis.cluster`` it is a cluster client. Every connection has a connect and a
    socket timeout, so no call waits on an unreachable Redis for longer.
    """
    if settings.url == EMBEDDED:
        try:
            from fakeredis import FakeAsyncRedis
        except ImportError as exc:
            raise RuntimeError(
                "redis.url is 'embedded' but the embedded store is not installed: "
                "pip install 'agent-gateway[embedded]', or set GATEWAY_REDIS_URL"
            ) from exc
        fake = FakeAsyncRedis(
            decode_responses=True,
            connection_pool_class=aioredis.BlockingConnectionPool,
            max_connections=settings.max_connections,
            timeout=settings.socket_timeout,
        )
        return cast(aioredis.Redis, fake)
    options = connection_options(settings)
    if settings.sentinel is not None:
        return _sentinel_master(settings, options)
    if settings.cluster:
        # Bounded retries: the default (10, each up to a connect timeout) could hold a
        # request for tens of seconds while a node is unreachable.
        retry = Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), retries=2)
        return cast(
            aioredis.Redis,
            RedisCluster.from_url(
                settings.url,
                max_connections=settings.max_connections,
                retry=retry,
                **options,
            ),
        )
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.url,
        max_connections=settings.max_connections,
        timeout=settings.socket_timeout,  # the wait for a free connection is bounded too
        health_check_interval=30,
        **options,
    )
    return aioredis.Redis(connection_pool=pool)


def connection_options(settings: RedisSettings) -> dict[str, Any]:
    """Timeouts, the password from ``password_env``, and TLS, for every connection."""
    options: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": settings.socket_timeout,
        "socket_connect_timeout": settings.connect_timeout,
    }
    if settings.password_env:
        options["password"] = os.environ.get(settings.password_env, "")
    if settings.uses_tls:
        tls = settings.tls
        options |= {
            "ssl_ca_certs": tls.ca_file,
            "ssl_certfile": tls.cert_file,
            "ssl_keyfile": tls.key_file,
            "ssl_cert_reqs": "required" if tls.verify else "none",
            "ssl_check_hostname": tls.verify,
        }
    return options


def _sentinel_master(settings: RedisSettings, options: dict[str, Any]) -> aioredis.Redis:
    """The master that the Sentinels name; a failover moves the client to the new one.

    The URL gives the master's credentials, database and scheme (its host is not used).
    """
    sentinel = settings.sentinel
    assert sentinel is not None
    url = urlsplit(settings.url)
    nodes = [(host, int(port)) for host, _, port in (n.rpartition(":") for n in sentinel.nodes)]
    own = {k: options[k] for k in ("socket_timeout", "socket_connect_timeout")}
    if sentinel.password_env:
        own["password"] = os.environ.get(sentinel.password_env, "")
    if settings.uses_tls:
        own |= {k: v for k, v in options.items() if k.startswith("ssl_")} | {"ssl": True}
    master = dict(options)
    if url.username:
        master["username"] = unquote(url.username)
    if url.password and "password" not in master:
        master["password"] = unquote(url.password)
    db = url.path.strip("/")
    if db.isascii() and db.isdigit():
        master["db"] = int(db)
    if settings.uses_tls:
        master["ssl"] = True
    manager = Sentinel(nodes, sentinel_kwargs=own, **master)
    return cast(
        aioredis.Redis,
        manager.master_for(sentinel.master, max_connections=settings.max_connections),
    )


PRELUDE_LINE = "--! prelude:"  # a script's first line naming the preludes it needs


def script_source(name: str) -> str:
    """The text of ``lua/<name>.lua`` as Redis runs it: after the preludes it names.

    Redis runs a script whole and has no includes, so functions that several scripts
    share live in ``lua/prelude/<part>.lua`` and are prepended to each script whose first
    line is ``--! prelude: <part>[, <part>...]``. A prelude only defines locals: what a
    script costs is what it calls.
    """
    lua = resources.files("gateway.store").joinpath("lua")
    source = lua.joinpath(f"{name}.lua").read_text()
    first = source.partition("\n")[0]
    if not first.startswith(PRELUDE_LINE):
        return source
    parts = [p.strip() for p in first[len(PRELUDE_LINE) :].split(",") if p.strip()]
    preludes = [lua.joinpath("prelude", f"{part}.lua").read_text() for part in parts]
    return "\n".join([*preludes, source])


def load_script(redis: aioredis.Redis, name: str) -> Any:
    """The script ``lua/<name>.lua`` with its preludes, registered with ``redis`` (run by
    its SHA)."""
    return redis.register_script(script_source(name))


class Store:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._post_entry = load_script(redis, "post_entry")

    async def aclose(self) -> None:
        if type(self.redis) is aioredis.Redis:
            # Built on a pool of our own (``connect``): close the pool too, or its
            # connections are left to the garbage collector (a ResourceWarning).
            await self.redis.aclose(close_connection_pool=True)
        else:
            await self.redis.aclose()
        # Through Sentinel: the clients of the Sentinels themselves, too.
        manager = getattr(getattr(self.redis, "connection_pool", None), "sentinel_manager", None)
        for sentinel in getattr(manager, "sentinels", ()):
            await sentinel.aclose()

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except RedisError:
            return False

    # Keys

    async def create_key(
        self,
        name: str,
        *,
        balance: int = 0,
        agents: tuple[str, ...] = (),
        expires_at: float | None = None,
        limits: KeyLimits | None = None,
        note: str = "",
        actor: str | None = None,
        team: str = "",
    ) -> tuple[ApiKey, str]:
        """Create a key; return its record and its secret (shown once, never stored).

        ``actor`` (who asked: ``cli:<user>``, ``admin-api:<address>``) audits the action.
        A key created in a ``team`` spends the team's balance, so it takes none of its own.
        """
        amounts.credits(balance, "balance", minimum=0)  # checked before anything is written
        if limits is not None:
            limits.check()
        if team:
            if balance:
                raise InvalidRequest(
                    "a key in a team spends the team's balance: credit the team instead",
                    param="balance",
                )
            async with guard():
                if not await self.redis.exists(schema.team_record(team)):
                    raise NotFound(f"no team with id {team!r}")
        secret = apikeys.new_secret()
        digest = apikeys.digest(secret)
        key = ApiKey(
            id=apikeys.new_key_id(),
            name=name,
            agents=agents,
            created_at=time.time(),
            expires_at=expires_at,
            hint=secret[: len(apikeys.KEY_PREFIX) + 4],
            limits=limits or KeyLimits(),
            note=note,
            digest=digest,
            team=team,
        )
        async with guard():
            if team:  # a member before it is usable: the index below makes it usable
                await self.redis.sadd(schema.team_members(team), key.id)
                await self.redis.sadd(schema.team_keys_ever(team), key.id)
                await self.redis.sadd(schema.key_teams(key.id), team)  # its history's places
            await self.redis.hset(schema.key_record(key.id), mapping=key.to_hash())  # type: ignore[arg-type]  # invariant stub
            await self.redis.sadd(schema.KEY_INDEX, key.id)
            await self.redis.set(schema.digest_index(digest), key.id)
            await self._catalogue(key)
        if balance:
            await self.credit(key.id, balance, note="initial balance")
        details = {"name": name, "balance": balance, "agents": list(agents), "note": note}
        details |= {"expires_at": expires_at, "limits": key.to_json()["limits"]}
        if team:
            details["team"] = team
        await self.audit(actor, "key.create", key.id, details)
        return key, secret

    async def find_key(self, digest: str) -> ApiKey | None:
        """The key whose secret has this SHA-256 digest, if that secret is accepted.

        A secret replaced by a rotation is accepted until its grace period ends, and
        comes back with that end as its expiry; after it, ``None``.
        """
        async with guard():
            key_id = cast(str | None, await self.redis.get(schema.digest_index(digest)))
            if key_id is None:
                return None
            key = await self._get(key_id)
        return None if key is None else key.for_digest(digest, time.time())

    async def rotate_key(
        self,
        key_id: str,
        *,
        grace_seconds: float = DEFAULT_GRACE_SECONDS,
        actor: str | None = None,
    ) -> tuple[ApiKey, str]:
        """A new secret for the same key (same balance, ledger and limits); the current
        one stays accepted for ``grace_seconds`` (0: refused at once), then is refused.

        Only one replaced secret is kept: rotating again within the grace period ends
        the older one's grace at once. Concurrent rotations of one key: the last wins.
        """
        if grace_seconds < 0:
            raise InvalidRequest("the grace period must not be negative", param="grace_seconds")
        key = await self.get_key(key_id)
        if key.revoked_at is not None:
            raise InvalidRequest(f"key {key_id!r} is revoked", code="key_revoked", status=409)
        old = key.digest or await self._legacy_digest(key_id)
        secret = apikeys.new_secret()
        digest = apikeys.digest(secret)
        now = time.time()
        grace_ends = now + grace_seconds
        fields = {
            "digest": digest,
            "hint": secret[: len(apikeys.KEY_PREFIX) + 4],
            "previous_digest": old or "",
            "previous_expires_at": repr(grace_ends),
            "rotated_at": repr(now),
        }
        async with guard():
            await self.redis.set(schema.digest_index(digest), key_id)
            await self.redis.hset(schema.key_record(key_id), mapping=fields)  # type: ignore[arg-type]  # invariant stub
            if old:
                if grace_seconds > 0:  # the index entry outlives the grace a little
                    await self.redis.expire(schema.digest_index(old), int(grace_seconds) + 60)
                else:
                    await self.redis.delete(schema.digest_index(old))
            if key.previous_digest and key.previous_digest != old:
                await self.redis.delete(schema.digest_index(key.previous_digest))
        rotated = await self.get_key(key_id)
        await self.audit(actor, "key.rotate", key_id, {"grace_seconds": grace_seconds})
        return rotated, secret

    async def _catalogue(self, key: ApiKey) -> None:
        """Index a key for the console's search and pages (``gateway.store.catalogue``)."""
        await self.redis.zadd(schema.KEYS_BY_CREATED, {key.id: key.created_at})
        await self.redis.zadd(schema.KEYS_BY_TEXT, {text_member(key): 0})
        await self._mark_limited(key.id, key.limits)

    async def _mark_limited(self, key_id: str, limits: KeyLimits) -> None:
        if limits != KeyLimits():
            await self.redis.sadd(schema.KEYS_LIMITED, key_id)
        else:
            await self.redis.srem(schema.KEYS_LIMITED, key_id)

    async def _legacy_digest(self, key_id: str) -> str | None:
        """The digest of a key recorded before records kept it: a scan of the index."""
        prefix = schema.digest_index("")
        async with guard():
            async for name in self.redis.scan_iter(match=prefix + "*", count=1000):
                if await self.redis.get(name) == key_id:
                    return str(name)[len(prefix) :]
        return None

    async def get_key(self, key_id: str) -> ApiKey:
        async with guard():
            key = await self._get(key_id)
        if key is None:
            raise NotFound(f"no key with id {key_id!r}")
        return key

    async def _get(self, key_id: str) -> ApiKey | None:
        h = cast(dict[str, str], await self.redis.hgetall(schema.key_record(key_id)))
        if not h:
            return None
        key = ApiKey.from_hash(h)
        if key.team:  # admission checks the team's limits too: read (and cached) with the key
            team = cast(dict[str, str], await self.redis.hgetall(schema.team_record(key.team)))
            if team:
                key = dataclasses.replace(key, team_limits=Team.from_hash(team).limits)
        return key

    async def list_keys(self) -> list[ApiKey]:
        async with guard():
            ids = sorted(cast(set[str], await self.redis.smembers(schema.KEY_INDEX)))
            keys = [await self._get(key_id) for key_id in ids]
        return sorted((k for k in keys if k is not None), key=lambda k: k.created_at)

    async def set_limits(
        self, key_id: str, limits: KeyLimits, *, actor: str | None = None
    ) -> ApiKey:
        """Replace a key's limits; every process applies them within ``auth.cache_ttl``."""
        limits.check()
        key = await self.get_key(key_id)
        updated = dataclasses.replace(key, limits=limits)
        async with guard():  # only these fields: a rotation meanwhile is not undone
            await self.redis.hset(schema.key_record(key_id), mapping=limits.to_hash())  # type: ignore[arg-type]  # invariant stub
            await self._mark_limited(key_id, limits)
        await self.audit(actor, "key.limits", key_id, {"limits": updated.to_json()["limits"]})
        return updated

    async def revoke_key(self, key_id: str, *, actor: str | None = None) -> ApiKey:
        """Revoke a key: every secret it has (a rotated-out one too) is refused.

        A key already revoked is a 409 ``key_revoked`` (as for a rotation) and is not
        audited again: the audit log has one revocation per key, with its first time.
        HSETNX makes two concurrent revocations one success and one refusal.
        """
        await self.get_key(key_id)
        async with guard():
            first = await self.redis.hsetnx(
                schema.key_record(key_id), "revoked_at", repr(time.time())
            )
        key = await self.get_key(key_id)
        if not first:
            since = datetime.fromtimestamp(key.revoked_at or 0, UTC).isoformat(timespec="seconds")
            raise InvalidRequest(
                f"key {key_id!r} is already revoked (since {since})",
                code="key_revoked",
                status=409,
            )
        await self.audit(actor, "key.revoke", key_id, {})
        return key

    # The audit stream

    async def audit(
        self, actor: str | None, action: str, key_id: str, details: dict[str, object]
    ) -> None:
        """Append one admin action to ``gw:audit``: the one place that writes it.

        Without an ``actor`` (a call made on nobody's behalf, e.g. by tests) nothing is written.
        """
        if actor is None:
            return
        fields = {
            "at": repr(time.time()),
            "actor": actor,
            "action": action,
            "key_id": key_id,
            "details": json.dumps(details, sort_keys=True, default=str),
        }
        async with guard():
            await self.redis.xadd(
                schema.AUDIT,
                fields,  # type: ignore[arg-type]  # invariant stub
                maxlen=AUDIT_MAX_ENTRIES,
                approximate=True,
            )

    async def audit_log(self, *, limit: int = 100) -> list[AuditEntry]:
        """The latest ``limit`` admin actions, newest first."""
        async with guard():
            rows = cast(
                list[tuple[str, dict[str, str]]],
                await self.redis.xrevrange(schema.AUDIT, count=limit),
            )
        return [AuditEntry.from_stream(entry_id, fields) for entry_id, fields in rows]

    # Balances and the ledger

    async def balance(self, key_id: str) -> int:
        async with guard():
            value = await self.redis.get(schema.balance(key_id))
        return int(value or 0)

    async def held(self, key_id: str) -> int:
        """Credits held by the requests in flight of a key (or of any metering account)."""
        async with guard():
            value = await self.redis.get(schema.held(key_id))
        return int(value or 0)

    async def credit(
        self, key_id: str, credits: int, *, note: str = "", actor: str | None = None
    ) -> int:
        """Add credits (or remove them, if negative) with a ledger entry; the new balance."""
        amounts.credits(credits, "credits")
        await self.get_key(key_id)
        fields = {"kind": "credit", "at": repr(time.time()), "note": note}
        _, balance = await self.post(key_id, uuid.uuid4().hex, credits, fields)
        if credits > 0:
            await self.set_alert_reference(key_id, balance)
        details = {"credits": credits, "note": note, "balance": balance}
        await self.audit(actor, "key.credit", key_id, details)
        return balance

    async def set_alert_reference(self, account: str, balance: int) -> None:
        """After a top-up: what balance thresholds (``gateway.store.alerts``) are of."""
        # The time names this top-up: its thresholds fire anew even at an equal balance.
        async with guard():
            await self.redis.set(schema.alert_reference(account), f"{balance} {time.time_ns()}")

    async def post(
        self, key_id: str, entry_id: str, amount: int, fields: dict[str, str]
    ) -> tuple[bool, int]:
        """Post one ledger entry of an account (a key, or a team): (posted now, balance)."""
        day = time.strftime("%Y%m%d", time.gmtime())
        keys = [
            schema.balance(key_id),
            schema.ledger(key_id),
            schema.entry_marker(key_id, entry_id),
            schema.aggregate_day(key_id, day),
        ]
        args: list[str | int] = [amount, ENTRY_MARKER_TTL, DAY_AGGREGATE_TTL]
        for name, value in fields.items():
            args += [name, value]
        async with guard():
            posted, balance = await self._post_entry(keys=keys, args=args)
        if posted == -1:
            raise InvalidRequest(
                f"Moving the balance of {key_id} ({balance:,} credits) by {amount:,} would "
                f"take it beyond ±{amounts.MAX_CREDITS:,} credits.",
                param="credits",
            )
        return bool(posted), int(balance)

    async def ledger(
        self, key_id: str, *, limit: int | None = None, latest: int | None = None
    ) -> list[LedgerEntry]:
        """An account's ledger, oldest first: the first ``limit`` entries, or the ``latest``."""
        async with guard():
            if latest is not None:
                rows = cast(
                    list[tuple[str, dict[str, str]]],
                    await self.redis.xrevrange(schema.ledger(key_id), count=latest),
                )[::-1]
            else:
                rows = cast(
                    list[tuple[str, dict[str, str]]],
                    await self.redis.xrange(schema.ledger(key_id), count=limit),
                )
        return [LedgerEntry.from_stream(entry_id, fields) for entry_id, fields in rows]


class _Guard:
    """``guard``'s context manager: a class, not a generator, since every admission
    and settlement enters one (an ``asynccontextmanager`` costs a generator, its
    start-up and its close each time)."""

    __slots__ = ()

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(exc, RedisError):
            raise unavailable(exc) from exc


def unavailable(exc: RedisError) -> ServiceUnavailable:
    """``guard``'s 503 for a Redis failure, counted and logged: for a caller on the hot
    path that catches ``RedisError`` itself (``raise unavailable(exc) from exc``) rather
    than entering ``guard``'s two coroutines."""
    metrics.REDIS_ERRORS.labels(exc.__class__.__name__).inc()
    log.warning("store unavailable: %s", exc.__class__.__name__)
    return ServiceUnavailable("the gateway's store is unavailable; retry later")


_GUARD = _Guard()


def guard() -> _Guard:
    """Turn a Redis failure into a 503 the client can understand."""
    return _GUARD
