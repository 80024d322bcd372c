"""The Redis key schema: the only place that spells a key name.

Everything of one API key shares the hash tag ``{key_id}``, so every script
that touches several of them runs on Redis Cluster too. A team's balance,
ledger, holds and counters share the tag ``{team_id}``, and so does the
metering of each of its keys (``member(...)``): one script admits or settles a
team member's request, in one slot.
"""

from __future__ import annotations

PREFIX = "gw"
KEY_INDEX = f"{PREFIX}:keys"  # set of every key id (for listing)
# The key catalogue (gateway/store/catalogue.py): the console's search, sort and pages.
KEYS_BY_CREATED = f"{PREFIX}:keys:created"  # sorted set: key id by creation time
KEYS_BY_TEXT = f"{PREFIX}:keys:text"  # sorted set (lex): "<lowercased name or id>\0<id>"
KEYS_LIMITED = f"{PREFIX}:keys:limited"  # set of the key ids with a limit or a budget
TEAM_INDEX = f"{PREFIX}:teams"  # set of every team id
AUDIT = f"{PREFIX}:audit"  # stream of admin actions (who, what, which key, when)
ALERTS = f"{PREFIX}:alerts"  # stream of threshold events (gateway/store/alerts.py)


def console_sign_ins(address: str) -> str:
    """Failed console sign-ins from one client address; expires."""
    return f"{PREFIX}:console:failed:{address}"


def console_session(digest: str) -> str:
    """A console session, by the SHA-256 of its cookie: its CSRF token; expires."""
    return f"{PREFIX}:console:session:{digest}"


def _of(account: str, name: str) -> str:
    """A key of ``account`` under its hash tag: the one place that spells the tag."""
    return f"{PREFIX}:{{{account}}}:{name}"


def digest_index(digest: str) -> str:
    """The key id of an API key, found by its SHA-256 digest."""
    return f"{PREFIX}:digest:{digest}"


def key_record(key_id: str) -> str:
    return _of(key_id, "key")


def balance(key_id: str) -> str:
    return _of(key_id, "balance")


def ledger(key_id: str) -> str:
    return _of(key_id, "ledger")


def entry_marker(key_id: str, entry_id: str) -> str:
    return _of(key_id, f"entry:{entry_id}")


def stored_response(key_id: str, response_id: str) -> str:
    """A stored Open Responses response; scoped to the key that created it."""
    return _of(key_id, f"response:{response_id}")


def stored_responses(key_id: str) -> str:
    """Sorted set of the ids of a key's stored responses, scored by when they expire
    (ms): what erasing the key's conversations deletes, in batches."""
    return _of(key_id, "responses")


def stored_response_pattern(key_id: str) -> str:
    """A SCAN pattern for every stored response of a key, with its stream, run and
    cancel flag (erasure's way to what was stored before the index existed)."""
    return _of(key_id, "response:*")


def response_events(key_id: str, response_id: str) -> str:
    """Stream of a streamed background response's events, entry id ``0-<sequence + 1>``."""
    return _of(key_id, f"response:{response_id}:events")


def response_run(key_id: str, response_id: str) -> str:
    """The token of the process running a background response; expires unless renewed."""
    return _of(key_id, f"response:{response_id}:run")


def response_cancel(key_id: str, response_id: str) -> str:
    """Set when a background response is to be cancelled; its runner stops when it sees it."""
    return _of(key_id, f"response:{response_id}:cancel")


def a2a_task(key_id: str, task_id: str) -> str:
    """An A2A task (``gateway.store.a2a_tasks``); scoped to the key that created it."""
    return _of(key_id, f"a2a:task:{task_id}")


def a2a_task_events(key_id: str, task_id: str) -> str:
    """Stream of an A2A task's stream responses, for ``SubscribeToTask``."""
    return _of(key_id, f"a2a:task:{task_id}:events")


def a2a_task_cancel(key_id: str, task_id: str) -> str:
    """Set when an A2A task is to be cancelled; its runner stops when it sees it."""
    return _of(key_id, f"a2a:task:{task_id}:cancel")


def a2a_task_run(key_id: str, task_id: str) -> str:
    """Set while a process runs the A2A task; expires unless that process renews it."""
    return _of(key_id, f"a2a:task:{task_id}:run")


def a2a_tasks(key_id: str, agent: str) -> str:
    """Sorted set of a key's A2A task ids at one agent, by last update (ms)."""
    return _of(key_id, f"a2a:tasks:{agent}")


def a2a_context(key_id: str, context_id: str) -> str:
    """The conversation of an A2A context: its items, as Open Responses items."""
    return _of(key_id, f"a2a:context:{context_id}")


def a2a_pattern(key_id: str) -> str:
    """A SCAN pattern for every A2A name of a key: tasks with their streams, leases and
    flags, task lists, contexts, indexes (erasure's way to what no index lists)."""
    return _of(key_id, "a2a:*")


def a2a_task_index(key_id: str) -> str:
    """Sorted set of the ids of a key's A2A tasks (every agent), scored by when they
    expire (ms): what erasing the key's conversations walks, in batches."""
    return _of(key_id, "a2a:index:tasks")


def a2a_task_lists(key_id: str) -> str:
    """Set of the names of a key's task lists (``a2a_tasks``, one per agent): erased
    with its tasks."""
    return _of(key_id, "a2a:index:lists")


def a2a_context_index(key_id: str) -> str:
    """Sorted set of the ids of a key's A2A contexts, scored by when they expire (ms)."""
    return _of(key_id, "a2a:index:contexts")


# Metering. An "account" is an API key id, or "route:<agent>" for a route's shared
# limits; everything of one account shares its hash tag.
LEASES = f"{PREFIX}:leases"  # sorted set: "account charge_id" by lease expiry, for the reaper


def holds(account: str) -> str:
    """Hash of the account's requests in flight: charge id -> hold record."""
    return _of(account, "holds")


def held(account: str) -> str:
    """The credits held by the account's requests in flight."""
    return _of(account, "held")


def requests_window(account: str, window: int) -> str:
    return _of(account, f"rpm:{window}")


def tokens_window(account: str, window: int) -> str:
    return _of(account, f"tpm:{window}")


def spend_day(account: str, day: str) -> str:
    return _of(account, f"spend:d:{day}")


def spend_month(account: str, month: str) -> str:
    return _of(account, f"spend:m:{month}")


def route_account(agent: str) -> str:
    return f"route:{agent}"


# Aggregates (gateway/store/aggregates.py). A key's are under its hash tag, written by
# the settlement script itself; the gateway-wide ones (gateway/store/gateway_totals.py)
# share the tag {agg}.
def aggregate_hour(key_id: str, hour: str) -> str:
    """Hash of a key's totals in one UTC hour (``YYYYMMDDHH``)."""
    return _of(key_id, f"agg:h:{hour}")


def aggregate_day(key_id: str, day: str) -> str:
    """Hash of each agent's counts (``<metric>|<agent>``) of a key in one UTC day
    (``YYYYMMDD``), and the credits added and removed by hand that day."""
    return _of(key_id, f"agg:d:{day}")


GLOBAL = "agg"  # the hash tag of the gateway-wide aggregates


def global_hour(hour: str) -> str:
    return _of(GLOBAL, f"h:{hour}")


def global_day(day: str) -> str:
    return _of(GLOBAL, f"d:{day}")


def global_top_keys(day: str) -> str:
    """Sorted set: each key's credits spent in one UTC day."""
    return _of(GLOBAL, f"top:d:{day}")


def global_top_union(first: str, days: int, top: int) -> str:
    """The union of ``days`` days' spend by key from the day key ``first``, kept a minute."""
    return f"{first}:union:{days}:{top}"


# Teams (gateway/store/teams.py). A team is an account: its balance, ledger, holds (the
# hold records of its keys' requests), counters and aggregates use the functions above
# with the team id. What each member key counts inside it lives here.
def team_record(team_id: str) -> str:
    return _of(team_id, "team")


def team_members(team_id: str) -> str:
    """Set of the ids of a team's keys."""
    return _of(team_id, "members")


def member(team_id: str, key_id: str, name: str) -> str:
    """A counter of key ``key_id`` inside its team, under the team's hash tag: ``holds``
    (set of its charge ids in flight), ``held``, ``rpm:<window>``, ``tpm:<window>``,
    ``spend:d:<day>``, ``spend:m:<month>``."""
    return _of(team_id, f"key:{key_id}:{name}")


def member_aggregate_hour(team_id: str, key_id: str, hour: str) -> str:
    """Hash of a key's totals in one UTC hour spent inside a team (``aggregate_hour``'s
    fields), under the team's tag so that the team's settlement script writes it."""
    return member(team_id, key_id, f"agg:h:{hour}")


def member_aggregate_day(team_id: str, key_id: str, day: str) -> str:
    """Hash of a key's counts by agent in one UTC day spent inside a team."""
    return member(team_id, key_id, f"agg:d:{day}")


def team_keys_ever(team_id: str) -> str:
    """Set of every key a team has had (``team_members`` is its keys now): whose
    aggregates under the team's tag add up to the team's."""
    return _of(team_id, "members:ever")


def key_teams(key_id: str) -> str:
    """Set of the teams a key has been in: where its aggregates of those times live."""
    return _of(key_id, "teams")


def alert_reference(account: str) -> str:
    """An account's balance just after its last top-up: what balance thresholds are of."""
    return _of(account, "alert:ref")


def alert_marker(account: str, name: str) -> str:
    """Set when a threshold event fired, so each fires once (per top-up, day or month)."""
    return _of(account, f"alert:{name}")
