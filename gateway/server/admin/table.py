"""The admin route table: every operation, what ``create_admin_app`` serves and
``/openapi.json`` describes."""

from __future__ import annotations

from functools import partial

from gateway.server.admin.accounts import balance, credit, ledger
from gateway.server.admin.audit import MAX_AUDIT_LIMIT, audit
from gateway.server.admin.keys import (
    create_key,
    list_keys,
    purge_key,
    revoke_key,
    rotate_key,
    set_limits,
    show_key,
)
from gateway.server.admin.runtime import runtime
from gateway.server.admin.teams import (
    create_team,
    credit_team,
    list_teams,
    move_key,
    set_team_limits,
    show_team,
)
from gateway.server.admin.usage import gateway_aggregates, key_aggregates
from gateway.server.api import JSON, Operation, Param, Reply, Table, json_reply
from gateway.store import aggregates, ledger_export

ADMIN_PREFIX = "/admin"

# Every admin operation: tagged "admin", and callable with the admin token only.
_admin_op = partial(Operation, tag="admin", security="admin_token")
_ID = Param("id", "path", description="a key id (key_...)")
_TEAM_ID = Param("id", "path", description="a team id (team_...)")
_KEY_ERRORS = (401, 404, 503)
_BODY_ERRORS = (400, 401, 404, 413, 503)
_LEDGER_PARAMS = (
    Param("id", "path", description="a key id (key_...), or a team id (team_...)"),
    Param("format", "query", {"type": "string", "enum": list(ledger_export.FORMATS)}),
    Param("agent", "query", description="only this agent's usage"),
    Param("kind", "query", {"type": "string", "enum": list(ledger_export.KINDS)}),
    Param("since", "query", description="from this time (UNIX seconds or ISO-8601)"),
    Param("until", "query", description="before this time (UNIX seconds or ISO-8601)"),
    Param("limit", "query", {"type": "integer", "minimum": 1}),
)
_AGGREGATE_PARAMS = (
    Param(
        "period",
        "query",
        {"type": "string", "enum": list(aggregates.PERIODS)},
        "hour or day (the default), UTC",
    ),
    Param(
        "count",
        "query",
        {"type": "integer", "minimum": 1, "maximum": max(aggregates.MAX_BUCKETS.values())},
        "how many of the latest buckets (48 hours or 30 days by default; at most 192 "
        "hours or 400 days, what is kept)",
    ),
)

ADMIN = Table(
    (ADMIN_PREFIX,),
    (
        _admin_op(
            "GET",
            "/keys",
            list_keys,
            "adminListKeys",
            "List keys (never secrets)",
            replies=(json_reply(200, "the keys", "KeyList"),),
            errors=(401, 503),
        ),
        _admin_op(
            "POST",
            "/keys",
            create_key,
            "adminCreateKey",
            "Create a key; its secret is in this answer only",
            body="CreateKey",
            replies=(json_reply(201, "the record and its secret", "KeyWithSecret"),),
            errors=(400, 401, 413, 503),
        ),
        _admin_op(
            "GET",
            "/keys/{id}",
            show_key,
            "adminShowKey",
            "A key's record, balance and held credits",
            params=(_ID,),
            replies=(json_reply(200, "the record", "KeyWithBalance"),),
            errors=_KEY_ERRORS,
        ),
        _admin_op(
            "POST",
            "/keys/{id}/revoke",
            revoke_key,
            "adminRevokeKey",
            "Revoke a key (and any secret a rotation replaced); 409 if it already is",
            params=(_ID,),
            replies=(json_reply(200, "the record", "Key"),),
            errors=(*_KEY_ERRORS, 409),
        ),
        _admin_op(
            "POST",
            "/keys/{id}/purge",
            purge_key,
            "adminPurgeKey",
            "Erase the key's stored conversations (responses and their event streams), "
            "not its ledger; idempotent, and asking again resumes one cut short",
            params=(_ID,),
            replies=(json_reply(200, "what was erased", "Purge"),),
            errors=_KEY_ERRORS,
        ),
        _admin_op(
            "POST",
            "/keys/{id}/rotate",
            rotate_key,
            "adminRotateKey",
            "A new secret for the key; the old one works for the grace period",
            params=(_ID,),
            body="RotateKey",
            replies=(json_reply(200, "the record and its new secret", "KeyWithSecret"),),
            errors=(*_BODY_ERRORS, 409),
        ),
        _admin_op(
            "PUT",
            "/keys/{id}/limits",
            set_limits,
            "adminSetLimits",
            "Replace a key's limits (a missing one is 0: none)",
            params=(_ID,),
            body="Limits",
            replies=(json_reply(200, "the record", "Key"),),
            errors=_BODY_ERRORS,
        ),
        _admin_op(
            "GET",
            "/keys/{id}/balance",
            balance,
            "adminBalance",
            "A key's balance, held and available credits",
            params=(_ID,),
            replies=(json_reply(200, "the balance", "Balance"),),
            errors=_KEY_ERRORS,
        ),
        _admin_op(
            "POST",
            "/keys/{id}/credit",
            credit,
            "adminCredit",
            "Add (negative: remove) credits, with a ledger entry",
            params=(_ID,),
            body="Credit",
            replies=(json_reply(200, "the new balance", "NewBalance"),),
            errors=_BODY_ERRORS,
        ),
        _admin_op(
            "GET",
            "/keys/{id}/ledger",
            ledger,
            "adminLedger",
            "The ledger of a key (in a team: the team's, filtered to it) or of a team, "
            "streamed as JSON, JSON lines or CSV",
            params=_LEDGER_PARAMS,
            replies=(
                Reply(
                    200,
                    "the entries, oldest first",
                    {JSON: "Ledger", "application/x-ndjson": None, "text/csv": None},
                ),
            ),
            errors=(400, *_KEY_ERRORS),
        ),
        _admin_op(
            "POST",
            "/keys/{id}/move",
            move_key,
            "adminMoveKey",
            "Move a key into, out of (team null) or between teams; 409 while it has "
            "requests in flight. Takes about auth.cache_ttl: its requests get 429 meanwhile",
            params=(_ID,),
            body="MoveKey",
            replies=(json_reply(200, "the record", "Key"),),
            errors=(*_BODY_ERRORS, 409),
        ),
        _admin_op(
            "GET",
            "/teams",
            list_teams,
            "adminListTeams",
            "List teams",
            replies=(json_reply(200, "the teams", "TeamList"),),
            errors=(401, 503),
        ),
        _admin_op(
            "POST",
            "/teams",
            create_team,
            "adminCreateTeam",
            "Create a team: a balance and limits its keys share",
            body="CreateTeam",
            replies=(json_reply(201, "the record", "TeamWithBalance"),),
            errors=(400, 401, 413, 503),
        ),
        _admin_op(
            "GET",
            "/teams/{id}",
            show_team,
            "adminShowTeam",
            "A team's record, balance, held credits and keys",
            params=(_TEAM_ID,),
            replies=(json_reply(200, "the record", "TeamWithBalance"),),
            errors=_KEY_ERRORS,
        ),
        _admin_op(
            "PUT",
            "/teams/{id}/limits",
            set_team_limits,
            "adminSetTeamLimits",
            "Replace a team's limits (a missing one is 0: none)",
            params=(_TEAM_ID,),
            body="Limits",
            replies=(json_reply(200, "the record", "Team"),),
            errors=_BODY_ERRORS,
        ),
        _admin_op(
            "POST",
            "/teams/{id}/credit",
            credit_team,
            "adminCreditTeam",
            "Add (negative: remove) credits to a team's balance, with a ledger entry",
            params=(_TEAM_ID,),
            body="Credit",
            replies=(json_reply(200, "the new balance", "NewBalance"),),
            errors=_BODY_ERRORS,
        ),
        _admin_op(
            "GET",
            "/keys/{id}/aggregates",
            key_aggregates,
            "adminKeyAggregates",
            "A key's credits, requests, errors and tokens by hour or day, and by agent",
            params=(_ID, *_AGGREGATE_PARAMS),
            replies=(json_reply(200, "the buckets, oldest first", "Aggregates"),),
            errors=(400, *_KEY_ERRORS),
        ),
        _admin_op(
            "GET",
            "/aggregates",
            gateway_aggregates,
            "adminAggregates",
            "The gateway's credits, requests, errors and tokens by hour or day, by agent, "
            "and its top keys (best-effort: see docs/metering.md)",
            params=_AGGREGATE_PARAMS,
            replies=(json_reply(200, "the buckets, oldest first", "Aggregates"),),
            errors=(400, 401, 503),
        ),
        _admin_op(
            "GET",
            "/audit",
            audit,
            "adminAudit",
            "The latest admin actions, newest first",
            params=(
                Param(
                    "limit", "query", {"type": "integer", "minimum": 1, "maximum": MAX_AUDIT_LIMIT}
                ),
            ),
            replies=(json_reply(200, "the audit entries", "AuditLog"),),
            errors=(400, 401, 503),
        ),
        _admin_op(
            "GET",
            "/runtime",
            runtime,
            "adminRuntime",
            "This process's asyncio tasks and calls in flight (what a soak test watches)",
            replies=(json_reply(200, "the counts", "Runtime"),),
            errors=(401,),
        ),
    ),
)
