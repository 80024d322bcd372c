"""``docs/clients.md`` says what the matrix's cases say (``python -m tests.matrix.table``)."""

from __future__ import annotations

from tests.matrix import table


def test_docs_table_is_the_matrix() -> None:
    assert table.DOC.read_text() == table.render(), (
        "docs/clients.md differs from tests/matrix/cases.py: run `python -m tests.matrix.table`"
    )
