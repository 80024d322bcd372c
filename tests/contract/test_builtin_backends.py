"""Every built-in backend type under the backend contract (``backend_contract``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.contract.backend_contract import BackendContract
from tests.contract.harnesses import HARNESSES, KEY_ENV
from tests.fakes.librechat_upstream import LIBRECHAT_KEY


@pytest.fixture(params=sorted(HARNESSES))
async def harness(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Any]:
    monkeypatch.setenv(KEY_ENV, LIBRECHAT_KEY)
    harness = HARNESSES[request.param]()
    await harness.start()
    yield harness
    await harness.aclose()


class TestBuiltinBackends(BackendContract):
    """The contract, once per backend type: ``-k openai_chat`` runs one."""
