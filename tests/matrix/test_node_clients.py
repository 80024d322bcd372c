"""The Node clients of the matrix against a real gateway (``cases.py`` lists them).

Each client runs all its operations over one upstream in one node process (a few
hundred milliseconds), the first time a test asks for one of them.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.matrix import node_clients
from tests.matrix.cases import Case, cases, check, param
from tests.matrix.python_clients import Profile

Results = dict[tuple[str, str], dict[str, Any]]


@pytest.fixture(scope="session")
def node() -> str:
    return node_clients.install()


@pytest.fixture(scope="session")
def node_results() -> Results:
    return {}


@pytest.mark.parametrize("case", [param(c) for c in cases("node")])
def test_node_client(case: Case, matrix: Profile, node: str, node_results: Results) -> None:
    group = (case.client.id, case.upstream)
    if group not in node_results:
        same = [c for c in cases("node", case.upstream) if c.client == case.client]
        script_client = case.client.id.removeprefix("node-")
        node_results[group] = node_clients.run(node, script_client, same, matrix)
    check(case, node_results[group][case.op])
