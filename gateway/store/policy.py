"""What the gateway may keep of one agent's conversations: ``StoragePolicy``.

One rule for every store of content (stored responses, the event streams of
background responses, A2A tasks, their streams and contexts, and whatever keeps
content later):
``responses.store`` and ``responses.retention_seconds`` say it for every agent,
and a route may only restrict them (``store: never``, a shorter
``retention_seconds``; ``gateway.config`` refuses the rest). The policy is read
from the configuration each request started with, so a reload applies at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.errors import InvalidRequest, NotFound
from gateway.route import Route
from gateway.settings import ResponsesSettings


@dataclass(frozen=True, slots=True)
class StoragePolicy:
    agent: str
    allowed: bool  # False: nothing of this agent's conversations is stored or read back
    retention_seconds: int  # how long what is stored lives

    @property
    def retention_ms(self) -> int:
        return self.retention_seconds * 1000

    def refusal(self, param: str, needs: str) -> InvalidRequest:
        """The 400 for a request that needs storage (``needs`` says why) on an agent
        whose storage is off."""
        return InvalidRequest(
            f"Storage is off for agent '{self.agent}' (store: never): nothing of its "
            f"conversations is kept, so '{param}' cannot be used ({needs}).",
            param=param,
            code="storage_disabled",
        )

    def not_stored(self, what: str, param: str) -> NotFound:
        """The 404 for something stored that this agent's policy does not let be read."""
        return NotFound(
            f"{what} not found: storage is off for agent '{self.agent}' (store: never).",
            param=param,
            code="storage_disabled",
        )


def storage_policy(settings: ResponsesSettings, route: Route | None, agent: str) -> StoragePolicy:
    """The policy of ``agent``, served by ``route`` (``None``: no route, the global one)."""
    allowed = settings.store != "never"
    retention = settings.retention_seconds
    if route is not None:
        allowed = allowed and route.store != "never"
        if route.retention_seconds is not None:
            retention = min(retention, route.retention_seconds)
    return StoragePolicy(agent, allowed, retention)
