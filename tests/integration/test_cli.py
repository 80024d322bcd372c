"""The ``gateway`` command as a user runs it: subprocesses against the real Redis."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis as sync_redis

from gateway.store import schema
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
REPO_CONFIG = ROOT / "gateway.yaml"


def env_for(redis_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    if redis_url is not None:
        env["GATEWAY_REDIS_URL"] = redis_url
    return env


def gateway(
    *args: str, redis_url: str | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=cwd,
        env=env_for(redis_url),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def gateway_json(*args: str, redis_url: str) -> Any:
    done = gateway(*args, "--json", "--config", str(REPO_CONFIG), redis_url=redis_url)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_keys_balance_and_usage(redis_url: str) -> None:
    created = gateway_json("keys", "create", "--name", "x", "--balance", "500", redis_url=redis_url)
    key_id, secret = created["id"], created["key"]
    assert key_id and secret.startswith("sk-gw-") and len(secret) >= 40
    assert created["name"] == "x"

    listed = gateway_json("keys", "list", redis_url=redis_url)
    mine = [k for k in listed if k["id"] == key_id]
    assert len(mine) == 1
    assert secret not in json.dumps(listed)  # the secret is shown once, at creation

    shown = gateway_json("keys", "show", key_id, redis_url=redis_url)
    assert shown["id"] == key_id and shown["balance"] == 500 and shown["revoked_at"] is None

    assert gateway_json("balance", "show", key_id, redis_url=redis_url) == {
        "id": key_id,
        "balance": 500,
        "held": 0,
        "available": 500,
    }
    added = gateway_json("balance", "add", key_id, "250", redis_url=redis_url)
    assert added["balance"] == 750
    assert gateway_json("balance", "show", key_id, redis_url=redis_url)["balance"] == 750

    usage = gateway_json("usage", key_id, redis_url=redis_url)
    assert [e["amount"] for e in usage] == [500, 250]
    assert [e["balance"] for e in usage] == [500, 750]
    assert all(e["kind"] == "credit" for e in usage)

    revoked = gateway_json("keys", "revoke", key_id, redis_url=redis_url)
    assert revoked["id"] == key_id and revoked["revoked_at"]
    assert gateway_json("keys", "show", key_id, redis_url=redis_url)["revoked_at"]

    text = gateway("keys", "list", "--config", str(REPO_CONFIG), redis_url=redis_url)
    assert text.returncode == 0
    assert key_id in text.stdout and "revoked" in text.stdout
    assert secret not in text.stdout


def _usage_entry(redis_url: str, key_id: str, at: float, agent: str) -> str:
    """Append a usage entry at ``at`` (in the future) as a settlement would, balance aside."""
    client = sync_redis.Redis.from_url(redis_url, decode_responses=True)
    fields = {"kind": "usage", "at": repr(at), "agent": agent, "request_id": f"req_{agent}"}
    fields |= {"input_tokens": "3", "output_tokens": "4", "amount": "-11", "balance": "0"}
    try:
        stream_id = f"{int(at * 1000)}-*"  # stream ids are milliseconds, as Redis makes them
        return str(client.xadd(schema.ledger(key_id), fields, id=stream_id))  # type: ignore[arg-type]
    finally:
        client.close()


def test_usage_filters_and_formats(redis_url: str) -> None:
    key_id = gateway_json("keys", "create", "--name", "u", "--balance", "100", redis_url=redis_url)[
        "id"
    ]
    gateway_json("balance", "add", key_id, "5", "--note", "=SUM(A1)", redis_url=redis_url)
    echo = _usage_entry(redis_url, key_id, 2_000_000_000.0, "echo")
    _usage_entry(redis_url, key_id, 2_000_000_100.0, "other")

    def usage(*args: str) -> str:
        done = gateway("usage", key_id, *args, "--config", str(REPO_CONFIG), redis_url=redis_url)
        assert done.returncode == 0, done.stderr
        return done.stdout

    lines = [
        json.loads(line) for line in usage("--agent", "echo", "--format", "jsonl").splitlines()
    ]
    assert [(e["id"], e["agent"]) for e in lines] == [(echo, "echo")]
    rows = list(csv.DictReader(io.StringIO(usage("--kind", "credit", "--format", "csv"))))
    assert [(r["kind"], r["amount"], r["note"]) for r in rows] == [
        ("credit", "100", "initial balance"),
        ("credit", "5", "'=SUM(A1)"),
    ]
    window = ("--since", "2033-05-18T03:33:20Z", "--until", "2000000100")
    assert [e["id"] for e in json.loads(usage(*window, "--json"))] == [echo]
    assert json.loads(usage("--kind", "usage", "--format", "json", "--limit", "1"))[0]["id"] == echo
    table = usage("--kind", "usage")
    assert "echo" in table and "other" in table and "initial balance" not in table

    done = gateway("usage", key_id, "--since", "yesterday", redis_url=redis_url)
    assert done.returncode == 2 and "--since" in done.stderr and "Traceback" not in done.stderr


def test_key_options(redis_url: str) -> None:
    created = gateway_json(
        "keys",
        "create",
        "--name",
        "limited",
        "--agent",
        "echo",
        "--agent",
        "other",
        "--expires-in",
        "1d12h",
        redis_url=redis_url,
    )
    assert created["agents"] == ["echo", "other"]
    assert created["expires_at"] == pytest.approx(time.time() + 36 * 3600, abs=60)


def test_unknown_key_id_fails_cleanly(redis_url: str) -> None:
    done = gateway("balance", "show", "key_nope", "--config", str(REPO_CONFIG), redis_url=redis_url)
    assert done.returncode != 0
    assert "key_nope" in done.stderr
    assert "Traceback" not in done.stderr


def test_keys_commands_refuse_the_embedded_store(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("redis:\n  url: embedded\n")
    for args in (("keys", "list"), ("keys", "create", "--name", "x"), ("balance", "show", "k")):
        done = gateway(*args, "--config", str(config))  # no GATEWAY_REDIS_URL
        assert done.returncode != 0
        assert "embedded" in done.stderr and "GATEWAY_REDIS_URL" in done.stderr
        assert "Traceback" not in done.stderr


def test_config_check_accepts_the_repo_file() -> None:
    done = gateway("config", "check", str(REPO_CONFIG))
    assert done.returncode == 0, done.stderr
    as_json = gateway("config", "check", str(REPO_CONFIG), "--json")
    assert as_json.returncode == 0
    assert json.loads(as_json.stdout)["ok"] is True


BROKEN = """\
listen:
  port: 99999
colour: blue
backends:
  echo: {type: echo, speed: 3}
  up:
    type: openai_chat
    base_url: http://127.0.0.1:1/v1
    api_key_env: SURELY_NOT_SET_ANYWHERE_42
routes:
  a:
    backend: missing
  b:
    backend: echo
    pricing: {input: cheap}
"""


def test_config_check_reports_every_problem_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    done = gateway("config", "check", str(path))
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    pattern = re.compile(r"^(?P<file>.+):(?P<line>\d+): (?P<path>[\w.\[\]]+): (?P<message>.+)$")
    found = {}
    for line in lines:
        match = pattern.match(line)
        assert match, f"not 'file:line: key.path: message': {line!r}"
        assert match["file"] == str(path)
        found[match["path"]] = int(match["line"])
    assert found == {
        "listen.port": 2,
        "colour": 3,
        "backends.echo.speed": 5,
        "backends.up.api_key_env": 9,
        "routes.a.backend": 12,
        "routes.b.pricing.input": 15,
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", r"^{file}:1: routes: no routes: "),
        ("backends: {echo: {type: echo}}\nroutes:\n", r"^{file}:2: routes: no routes: "),
        ("- a\n- b\n", r"^{file}:1: the file must be a mapping of settings$"),
        (
            "a: b: c\n",
            r"^{file}:1: invalid YAML: mapping values are not allowed here \(column 5\)$",
        ),
    ],
)
def test_config_check_and_serve_refuse_a_file_alike(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    pattern = re.compile(expected.format(file=re.escape(str(path))))
    checked = gateway("config", "check", str(path))
    served = gateway("serve", "--config", str(path), "--port", "0")  # stops before listening
    for done in (checked, served):
        assert done.returncode == 2 and done.stdout == ""
        (line,) = done.stderr.splitlines()
        assert pattern.match(line), line


def test_config_check_of_a_missing_file(tmp_path: Path) -> None:
    done = gateway("config", "check", str(tmp_path / "nope.yaml"))
    assert done.returncode != 0
    assert "nope.yaml" in done.stderr and "Traceback" not in done.stderr


def _read_until(proc: subprocess.Popen[bytes], done: re.Pattern[str], timeout: float) -> str:
    """Read ``proc``'s stdout until ``done`` matches what was read so far."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    out = b""
    deadline = time.monotonic() + timeout
    while not done.search(out.decode(errors="replace")):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or proc.poll() is not None:
            raise AssertionError(f"gateway serve did not print the demo in time:\n{out!r}")
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            out += os.read(fd, 65536)
    return out.decode()


def test_serve_prints_a_working_demo_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway",
            "serve",
            "--config",
            str(REPO_CONFIG),
            "--port",
            str(port),
        ],
        cwd=tmp_path,  # works from anywhere with an explicit --config
        env=env_for(None),  # embedded store: no Redis server involved
        stdout=subprocess.PIPE,
        stderr=log,
    )
    try:
        out = _read_until(proc, re.compile(r"curl .*?-d '[^']*'\n", re.S), timeout=20)
        key = re.search(r"Demo key[^\n]*: (sk-gw-\S+)", out)
        assert key, out
        curl = re.search(r"^\s*(curl .*?-d '[^']*')$", out, re.S | re.M)
        assert curl, out
        command = curl[1]
        assert key[1] in command and f":{port}/" in command
        done = subprocess.run(
            ["bash", "-c", command], capture_output=True, text=True, timeout=20, check=False
        )
        assert done.returncode == 0, done.stderr
        reply = json.loads(done.stdout)
        assert reply["object"] == "chat.completion"
        assert reply["choices"][0]["message"]["content"]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        finally:
            assert proc.stdout is not None
            proc.stdout.close()
            log.close()
    assert code == 0, (tmp_path / "serve.log").read_text()
    logged = (tmp_path / "serve.log").read_text()
    assert "embedded" in logged.lower()
    assert key[1] not in logged  # the key goes to the terminal, never to the log


def test_rotate_and_the_audit_log(redis_url: str) -> None:
    import getpass

    created = gateway_json(
        "keys", "create", "--name", "r", "--balance", "9", "--note", "ticket-42",
        redis_url=redis_url,
    )  # fmt: skip
    key_id, old = created["id"], created["key"]
    assert created["note"] == "ticket-42"
    rotated = gateway_json("keys", "rotate", key_id, "--grace", "2h", redis_url=redis_url)
    assert rotated["id"] == key_id and rotated["key"] not in (old, "")
    assert rotated["previous_expires_at"] == pytest.approx(time.time() + 7200, abs=60)
    again = gateway_json("keys", "rotate", key_id, "--grace", "0", redis_url=redis_url)
    shown = gateway_json("keys", "show", key_id, redis_url=redis_url)
    assert shown["balance"] == 9 and old not in json.dumps(shown)
    assert again["key"] not in json.dumps(shown)
    gateway_json("balance", "add", key_id, "5", redis_url=redis_url)
    gateway_json("keys", "limits", key_id, "--rpm", "3", redis_url=redis_url)
    gateway_json("keys", "revoke", key_id, redis_url=redis_url)

    entries = gateway_json("audit", "--limit", "6", redis_url=redis_url)
    mine = [e for e in entries if e["key_id"] == key_id]
    assert [e["action"] for e in mine] == [
        "key.revoke",
        "key.limits",
        "key.credit",
        "key.rotate",
        "key.rotate",
        "key.create",
    ]
    assert {e["actor"] for e in mine} == {f"cli:{getpass.getuser()}"}
    assert (
        mine[3]["details"] == {"grace_seconds": 0} and mine[4]["details"]["grace_seconds"] == 7200
    )
    for secret in (old, rotated["key"], again["key"]):
        assert secret not in json.dumps(entries)
    table = gateway("audit", "--config", str(REPO_CONFIG), redis_url=redis_url)
    assert table.returncode == 0 and "key.rotate" in table.stdout and key_id in table.stdout
    refused = gateway("keys", "rotate", key_id, "--config", str(REPO_CONFIG), redis_url=redis_url)
    assert refused.returncode == 1 and "revoked" in refused.stderr


def _closed_pipe_run(*args: str, redis_url: str | None) -> subprocess.CompletedProcess[str]:
    """Run with stdout on a pipe whose reader is already gone (`... | true`)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "gateway", *args],
            cwd=ROOT,
            env=env_for(redis_url),
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=30,
            check=False,
        )
    finally:
        os.close(write_end)


@pytest.mark.parametrize(
    "args",
    [
        ("config", "check", str(REPO_CONFIG)),
        ("config", "check", str(REPO_CONFIG), "--json"),
        ("keys", "list", "--json", "--config", str(REPO_CONFIG)),
        ("audit", "--config", str(REPO_CONFIG)),
    ],
)
def test_a_closed_stdout_ends_any_command_quietly(args: tuple[str, ...], redis_url: str) -> None:
    gateway_json("keys", "create", "--name", "piped", redis_url=redis_url)  # something to print
    done = _closed_pipe_run(*args, redis_url=redis_url)
    assert done.stderr == ""  # no traceback, no "Exception ignored" at exit
    assert done.returncode == 141  # as a shell reports a writer killed by SIGPIPE


def test_usage_piped_into_head_ends_quietly(redis_url: str) -> None:
    key_id = gateway_json("keys", "create", "--name", "big", redis_url=redis_url)["id"]
    client = sync_redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        with client.pipeline(transaction=False) as pipe:
            for i in range(3000):  # far more than a pipe buffers: the writer blocks on it
                fields = {"kind": "credit", "at": repr(1e9 + i), "note": "x" * 40}
                pipe.xadd(schema.ledger(key_id), fields | {"amount": "1", "balance": str(i)})
            pipe.execute()
    finally:
        client.close()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "usage", key_id, "--json", "--config", str(REPO_CONFIG)],
        cwd=ROOT,
        env=env_for(redis_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline() == b"[\n"  # what `head -1` reads, then it exits
    proc.stdout.close()
    try:
        code = proc.wait(timeout=30)
    finally:
        stderr = proc.stderr.read().decode()
        proc.stderr.close()
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr
    assert stderr == "" and code == 141


def test_a_key_for_an_agent_no_route_serves_is_created_with_a_warning(redis_url: str) -> None:
    done = gateway(
        "keys", "create", "--name", "w", "--agent", "echo", "--agent", "doesnotexist",
        "--json", "--config", str(REPO_CONFIG), redis_url=redis_url,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["agents"] == ["echo", "doesnotexist"]
    (warning,) = done.stderr.splitlines()
    assert warning.startswith("gateway: warning: ") and "'doesnotexist'" in warning
    assert "'echo'" not in warning
    quiet = gateway(
        "keys", "create", "--name", "q", "--agent", "echo", "--config", str(REPO_CONFIG),
        redis_url=redis_url,
    )  # fmt: skip
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_revoking_a_revoked_key_says_so_and_audits_nothing(redis_url: str) -> None:
    key_id = gateway_json("keys", "create", "--name", "rr", redis_url=redis_url)["id"]
    gateway_json("keys", "revoke", key_id, redis_url=redis_url)
    again = gateway("keys", "revoke", key_id, "--config", str(REPO_CONFIG), redis_url=redis_url)
    assert again.returncode == 1 and again.stdout == ""
    assert again.stderr.startswith(f"gateway: key {key_id!r} is already revoked (since ")
    entries = gateway_json("audit", "--limit", "50", redis_url=redis_url)
    assert [e["action"] for e in entries if e["key_id"] == key_id] == ["key.revoke", "key.create"]


def _store_responses(redis_url: str, key_id: str, n: int) -> None:
    """``n`` stored responses of ``key_id`` as the gateway writes them: value and index."""
    client = sync_redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        for i in range(n):
            client.set(schema.stored_response(key_id, f"resp_{i}"), "{}", ex=600)
            client.zadd(schema.stored_responses(key_id), {f"resp_{i}": time.time() * 1000 + 6e5})
        client.xadd(schema.response_events(key_id, "resp_0"), {"t": "x", "e": "{}"})
    finally:
        client.close()


def _stored_count(redis_url: str, key_id: str) -> int:
    client = sync_redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return len(client.keys(f"gw:{{{key_id}}}:response*"))
    finally:
        client.close()


def test_keys_purge_erases_stored_conversations_not_the_ledger(redis_url: str) -> None:
    key_id = gateway_json("keys", "create", "--name", "p", "--balance", "7", redis_url=redis_url)[
        "id"
    ]
    _store_responses(redis_url, key_id, 3)
    done = gateway("keys", "purge", key_id, "--config", str(REPO_CONFIG), redis_url=redis_url)
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        f"Erased 3 stored responses, 0 A2A tasks and 0 A2A contexts of {key_id}; "
        "its ledger stays.\n"
    )
    assert _stored_count(redis_url, key_id) == 0
    again = gateway_json("keys", "purge", key_id, redis_url=redis_url)
    assert again == {
        "id": key_id,
        "purged": {"responses": 0, "a2a_tasks": 0, "a2a_contexts": 0},
        "complete": True,
    }
    assert gateway_json("balance", "show", key_id, redis_url=redis_url)["balance"] == 7
    assert len(gateway_json("usage", key_id, redis_url=redis_url)) == 1  # the credit stays
    entries = gateway_json("audit", "--limit", "50", redis_url=redis_url)
    purges = [e for e in entries if e["key_id"] == key_id and e["action"] == "key.purge"]
    assert [e["details"] for e in purges] == [
        {"responses": 0, "a2a_tasks": 0, "a2a_contexts": 0},
        {"responses": 3, "a2a_tasks": 0, "a2a_contexts": 0},
    ]
    client = sync_redis.Redis.from_url(redis_url, decode_responses=True)
    try:  # stored by a version before the index: only --scan finds it
        client.set(schema.stored_response(key_id, "resp_old"), "{}", ex=600)
    finally:
        client.close()
    assert gateway_json("keys", "purge", key_id, redis_url=redis_url)["purged"]["responses"] == 0
    scanned = gateway_json("keys", "purge", key_id, "--scan", redis_url=redis_url)
    assert (
        scanned["purged"] == {"responses": 1, "a2a_tasks": 0, "a2a_contexts": 0}
        and _stored_count(redis_url, key_id) == 0
    )
    missing = gateway(
        "keys", "purge", "key_nope", "--config", str(REPO_CONFIG), redis_url=redis_url
    )
    assert missing.returncode == 1 and "no key with id 'key_nope'" in missing.stderr


def test_keys_revoke_purge_revokes_then_erases_even_if_revoked_already(redis_url: str) -> None:
    key_id = gateway_json("keys", "create", "--name", "rp", redis_url=redis_url)["id"]
    _store_responses(redis_url, key_id, 2)
    revoked = gateway_json("keys", "revoke", key_id, "--purge", redis_url=redis_url)
    assert revoked["revoked_at"] and revoked["purged"] == {
        "responses": 2,
        "a2a_tasks": 0,
        "a2a_contexts": 0,
    }
    assert _stored_count(redis_url, key_id) == 0
    _store_responses(redis_url, key_id, 1)  # a request already past authentication
    done = gateway(
        "keys", "revoke", key_id, "--purge", "--config", str(REPO_CONFIG), redis_url=redis_url
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"Key {key_id} (rp) was revoked already (at 20")
    assert done.stdout.endswith(
        "+00:00).\nErased its 1 stored responses, 0 A2A tasks and 0 A2A contexts.\n"
    )  # not "Revoked key …": this run revoked nothing
    entries = gateway_json("audit", "--limit", "50", redis_url=redis_url)
    actions = [e["action"] for e in entries if e["key_id"] == key_id]
    assert actions == ["key.purge", "key.purge", "key.revoke", "key.create"]


def test_bad_key_values_are_usage_errors_before_redis_is_touched(redis_url: str) -> None:
    before = gateway_json("keys", "list", redis_url=redis_url)
    for args in (
        ("keys", "create", "--name", "z", "--expires-in", "0s"),
        ("keys", "create", "--name", "z", "--balance=-5"),
    ):
        done = gateway(*args, "--config", str(REPO_CONFIG), redis_url=redis_url)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert gateway_json("keys", "list", redis_url=redis_url) == before
