"""``gateway.store.policy``: a route restricts the global storage policy, never widens it."""

from __future__ import annotations

from gateway.route import Route
from gateway.settings import ResponsesSettings
from gateway.store.policy import storage_policy

GLOBAL = ResponsesSettings(retention_seconds=3600)


def test_a_route_inherits_the_global_policy() -> None:
    policy = storage_policy(GLOBAL, Route(backend="b"), "a")
    assert (policy.allowed, policy.retention_seconds, policy.retention_ms) == (True, 3600, 3600_000)
    assert storage_policy(GLOBAL, None, "unknown").allowed  # no route: the global one


def test_a_route_may_store_nothing_or_keep_it_shorter() -> None:
    assert not storage_policy(GLOBAL, Route(backend="b", store="never"), "a").allowed
    shorter = storage_policy(GLOBAL, Route(backend="b", retention_seconds=60), "a")
    assert shorter.allowed and shorter.retention_seconds == 60
    # config refuses a longer one; were it given anyway, the global one still bounds it
    assert (
        storage_policy(GLOBAL, Route(backend="b", retention_seconds=10**9), "a").retention_seconds
        == 3600
    )


def test_never_globally_wins_over_any_route() -> None:
    never = ResponsesSettings(store="never")
    assert not storage_policy(never, Route(backend="b", store="allowed"), "a").allowed
    assert not storage_policy(never, None, "a").allowed


def test_the_refusals_name_the_agent_and_the_field() -> None:
    policy = storage_policy(GLOBAL, Route(backend="b", store="never"), "hr-bot")
    refused = policy.refusal("background", "a background response is kept")
    assert (refused.status, refused.param, refused.code) == (400, "background", "storage_disabled")
    assert "Storage is off for agent 'hr-bot'" in refused.message
    absent = policy.not_stored("Response with id 'resp_1'", "response_id")
    assert (absent.status, absent.param, absent.code) == (404, "response_id", "storage_disabled")
