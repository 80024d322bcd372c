"""The Python clients of the matrix against a real gateway (``cases.py`` lists them)."""

from __future__ import annotations

import pytest

from tests.matrix.cases import Case, cases, check, param
from tests.matrix.python_clients import Profile, run


@pytest.mark.parametrize("case", [param(c) for c in cases("python")])
def test_python_client(case: Case, matrix: Profile) -> None:
    check(case, run(case, matrix))
