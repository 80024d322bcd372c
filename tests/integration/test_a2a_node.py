"""The /a2a door driven by the official Node SDK, ``@a2a-js/sdk`` (``tests/matrix/node``,
installed from its lock by ``npm ci`` as the client matrix does; skipped without Node
outside CI)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.conftest import StartGateway
from tests.integration.test_a2a import CONFIG
from tests.matrix.cases import NODE_DIR
from tests.matrix.node_clients import install


async def test_the_node_sdk_streams_sends_gets_lists_resubscribes_and_cancels(
    start_gateway: StartGateway,
) -> None:
    node = install()
    gw = await start_gateway(CONFIG)
    key = await gw.new_key()
    profile = {"base_url": gw.url, "key": key, "agent": "echo", "slow_agent": "slow"}
    proc = await asyncio.create_subprocess_exec(
        node,
        str(NODE_DIR / "a2a.mjs"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(json.dumps(profile).encode()), 60)
    assert proc.returncode == 0, stderr.decode()
    out: dict[str, Any] = json.loads(stdout)
    assert out["card"]["name"] == "echo"
    stream = out["stream"]
    assert stream["kinds"][0] == "task" and stream["kinds"][-1] == "statusUpdate"
    assert stream["text"] == "hello from node" and stream["final"] == "TASK_STATE_COMPLETED"
    send = out["send"]
    assert send["state"] == "TASK_STATE_COMPLETED" and send["text"] == "second turn"
    assert send["context_id"] == stream["context_id"] and send["cost"]["credits"] > 0
    assert out["get"] == {"state": "TASK_STATE_COMPLETED", "text": "hello from node"}
    assert stream["task_id"] in out["list"]["ids"] and out["list"]["total"] == 2
    resubscribed = out["resubscribe"]
    assert resubscribed["first"] == "task" and resubscribed["first_state"] == "TASK_STATE_WORKING"
    assert resubscribed["text"] == " ".join(f"v{i}" for i in range(30))
    assert resubscribed["final"] == "TASK_STATE_COMPLETED"
    assert out["cancel"] == {"returned": "TASK_STATE_CANCELED", "final": "TASK_STATE_CANCELED"}
    assert out["missing"]["ok"] is False and "TaskNotFound" in out["missing"]["name"]
