"""``gateway.ids``: random ids read from the OS in blocks."""

from __future__ import annotations

import os
import re
from itertools import islice

import pytest

from gateway import ids


def test_ids_are_32_random_hex_digits_each_once() -> None:
    made = list(islice(ids.hex_ids(), 3 * ids.IDS_PER_READ + 5))
    assert all(re.fullmatch(r"[0-9a-f]{32}", one) for one in made)
    assert len(set(made)) == len(made)  # across reads from the OS too


def test_two_series_make_different_ids() -> None:
    assert next(ids.hex_ids()) != next(ids.hex_ids())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_forked_child_does_not_reuse_its_parents_ids() -> None:
    ids.random_hex()  # the parent has ids read and not used yet
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, to the parent
        try:
            os.write(write, ids.random_hex().encode())
        finally:
            os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert re.fullmatch(r"[0-9a-f]{32}", child)
    assert child != ids.random_hex()
