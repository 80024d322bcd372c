"""The Node side of the matrix: ``npm ci`` of ``tests/matrix/node`` (once, when its
``node_modules`` is missing or older than the lock) and one ``node matrix.mjs CLIENT``
process per client and upstream, which runs every operation and prints JSON."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from typing import Any

import pytest

from tests.matrix.cases import NODE_DIR, PROMPT, TOOL, Case
from tests.matrix.python_clients import Profile

STAMP = NODE_DIR / "node_modules" / ".matrix-lock-sha256"


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        message = f"{name} not found: install Debian's nodejs and npm (make test does as root)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def install() -> str:
    """``npm ci`` into ``tests/matrix/node`` unless it holds exactly the lock; returns ``node``."""
    node, npm = _tool("node"), _tool("npm")
    digest = hashlib.sha256((NODE_DIR / "package-lock.json").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == digest:
        return node
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
    STAMP.write_text(digest)
    return node


def run(node: str, client: str, cases: list[Case], profile: Profile) -> dict[str, Any]:
    """Every case's result (one client, one upstream), by operation."""
    script_input = {
        "base_url": profile.base_url,
        "key": profile.key,
        "bad_key": profile.bad_key,
        "prompt": PROMPT,
        "tool": TOOL,
        "ops": {case.op: case.model for case in cases},
    }
    done = subprocess.run(
        [node, str(NODE_DIR / "matrix.mjs"), client],
        input=json.dumps(script_input),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"node matrix.mjs {client} failed:\n{done.stderr}"
    results: dict[str, Any] = json.loads(done.stdout)
    return results
