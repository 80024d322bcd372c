"""The Python clients of the matrix against a real gateway (``cases.py`` lists them)."""

from __future__ import annotations

import pytest

from tests.matrix.cases import Case, cases, check
from tests.matrix.python_clients import Profile, run


def _param(case: Case) -> object:
    reason = case.known_failure
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return pytest.param(case, id=case.id, marks=marks)


@pytest.mark.parametrize("case", [_param(c) for c in cases("python")])
def test_python_client(case: Case, matrix: Profile) -> None:
    check(case, run(case, matrix))
