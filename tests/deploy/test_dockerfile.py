"""deploy/Dockerfile, linted without a Docker engine: the instructions that can be checked
statically, and their agreement with the repository and the Kubernetes manifests."""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path

from tests.deploy.kustomize import render

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / "deploy" / "Dockerfile.dockerignore"

Instruction = tuple[str, str]  # (INSTRUCTION, its arguments)


def parse(text: str) -> list[Instruction]:
    """Instructions in order: comments dropped, backslash continuations joined."""
    instructions: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if full:
            word, _, rest = full.partition(" ")
            instructions.append((word.upper(), rest.strip()))
    assert not pending, "the file ends inside a continued instruction"
    return instructions


def flags_and_args(rest: str) -> tuple[dict[str, str], list[str]]:
    """``--flag=value`` options, then the arguments (JSON form or whitespace-separated)."""
    flags: dict[str, str] = {}
    words = rest.split()
    while words and words[0].startswith("--"):
        key, _, value = words.pop(0)[2:].partition("=")
        flags[key] = value
    remainder = " ".join(words)
    if remainder.startswith("["):
        return flags, list(json.loads(remainder))
    return flags, words


INSTRUCTIONS = parse(DOCKERFILE.read_text(encoding="utf-8"))


def of(kind: str) -> list[str]:
    return [rest for word, rest in INSTRUCTIONS if word == kind]


def test_the_parser_reads_continuations_and_json() -> None:
    parsed = parse('FROM a:1 AS b\n# c\nRUN x \\\n  # d\n  && y\nCMD ["e", "f"]\n')
    assert parsed == [("FROM", "a:1 AS b"), ("RUN", "x  && y"), ("CMD", '["e", "f"]')]


def test_every_base_image_is_pinned_to_a_tag() -> None:
    stages = set()
    for rest in of("FROM"):
        _, words = flags_and_args(rest)
        image = words[0]
        if image in stages:
            continue  # an earlier stage
        name = image.split("@")[0].rsplit("/", 1)[-1]
        assert "@sha256:" in image or (":" in name and not name.endswith(":latest")), image
        assert "$" not in image, "resolve base images statically"
        if len(words) == 3 and words[1].upper() == "AS":
            stages.add(words[2])
    assert len(of("FROM")) >= 2, "multi-stage: build a wheel, install it in the final stage"


def test_the_final_stage_runs_as_a_numeric_non_root_user() -> None:
    final = max(i for i, (word, _) in enumerate(INSTRUCTIONS) if word == "FROM")
    users = [(i, rest) for i, (word, rest) in enumerate(INSTRUCTIONS) if word == "USER"]
    users = [(i, rest) for i, rest in users if i > final]
    assert users, "the final stage sets no USER"
    index, user = users[-1]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "a numeric UID lets runAsNonRoot verify it"
    entrypoint = max(i for i, (word, _) in enumerate(INSTRUCTIONS) if word == "ENTRYPOINT")
    assert index < entrypoint


def test_entrypoint_cmd_and_healthcheck() -> None:
    assert [flags_and_args(r)[1] for r in of("ENTRYPOINT")] == [["gateway"]]
    (cmd,) = of("CMD")
    assert flags_and_args(cmd)[1] == [
        "serve",
        "--config",
        "/etc/gateway/gateway.yaml",
        "--host",
        "0.0.0.0",
    ]
    (health,) = of("HEALTHCHECK")
    flags, command = flags_and_args(health)
    assert command[0] == "CMD" and "timeout" in flags
    probe = " ".join(command[1:])
    assert "/healthz" in probe and "urllib.request" in probe and "curl" not in probe


def test_no_remote_add_and_no_secrets_in_env_or_args() -> None:
    for rest in of("ADD"):
        assert not re.search(r"\b(https?|git)://", rest), f"ADD of a remote URL: {rest}"
    secretish = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|REDIS_URL)", re.I)
    for word in ("ENV", "ARG"):
        for rest in of(word):
            names = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", rest) or [rest.split()[0]]
            for name in names:
                assert not secretish.search(name), f"{word} {name}: secrets come at run time"


def test_expose_matches_the_manifests() -> None:
    exposed = {int(p.split("/")[0]) for rest in of("EXPOSE") for p in rest.split()}
    for overlay in ("standalone", "sidecar"):
        objects = render(ROOT / "deploy" / "k8s" / "overlays" / overlay)
        (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
        (gw,) = [
            c
            for c in deployment["spec"]["template"]["spec"]["containers"]
            if c["name"] == "gateway"
        ]
        ports = {p["containerPort"] for p in gw["ports"]}
        assert ports == exposed, overlay
    health = " ".join(of("HEALTHCHECK"))
    assert any(f":{port}/healthz" in health for port in exposed)


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!")
        if any(fnmatch.fnmatchcase(p, pattern) for p in prefixes):
            result = not negate
    return result


def test_copy_sources_exist_and_reach_the_build_context() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert not (ROOT / ".dockerignore").exists(), (
        "the top level is fixed: use the per-Dockerfile file"
    )
    assert ignored(".git/config", patterns) and ignored(".venv/bin/python", patterns)
    for rest in of("COPY"):
        flags, words = flags_and_args(rest)
        if "from" in flags:
            continue  # from an earlier stage
        for source in words[:-1]:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
            assert not ignored(source, patterns), f"COPY {source}: excluded by the dockerignore"
    for needed in (
        "gateway/__init__.py",
        "gateway/store/lua/admit.lua",
        "gateway/store/lua/prelude/settle.lua",
        "plugins/gateway_plugins",
        "requirements/run.txt",
    ):
        assert not ignored(needed, patterns), needed
    assert ignored("gateway/__pycache__/x.pyc", patterns)


def test_the_image_installs_only_the_locks() -> None:
    """Every `pip install` takes hash-checked pins from requirements/ (or the project's own
    wheel, built offline), so the image holds what `make test` tested."""
    (lock,) = [rest.split("=", 1)[1] for rest in of("ARG") if rest.startswith("LOCK=")]
    assert (ROOT / "requirements" / f"{lock}.txt").exists()
    installs = [
        command.strip()
        for rest in of("RUN")
        for command in rest.split("&&")
        if " pip install " in f" {command} "
    ]
    assert installs
    for command in installs:
        hashed = "--require-hashes" in command and "-r " in command and "requirements/" in command
        assert hashed or "--no-index" in command, command
