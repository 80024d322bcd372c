"""deploy/compose: the gateway added to LibreChat's own Docker Compose deployment.

Checked statically (no Docker here): the override adds to LibreChat's service ``api`` a
release with the Agents API from LibreChat's registry, its librechat.yaml with the Agents
API enabled, and volumes for its files; the gateway's configuration, loaded by the
gateway's own parser, reaches ``api`` on its compose network.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from gateway.config import parse_config

COMPOSE = Path(__file__).resolve().parents[2] / "deploy" / "compose"


def override() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((COMPOSE / "docker-compose.override.yml").read_text())
    return loaded


def test_librechat_has_the_agents_api_enabled() -> None:
    api = override()["services"]["api"]
    image, tag = api["image"].rsplit(":", 1)
    assert image == "registry.librechat.ai/danny-avila/librechat"
    assert tuple(int(n) for n in re.findall(r"\d+", tag)[:3]) >= (0, 8, 3), tag
    (config,) = [v for v in api["volumes"] if isinstance(v, dict)]
    assert config["target"] == "/app/librechat.yaml"
    librechat_yaml = yaml.safe_load((COMPOSE / config["source"]).read_text())
    assert librechat_yaml["interface"]["remoteAgents"] == {"use": True, "create": True}
    targets = {v.split(":")[1] for v in api["volumes"] if isinstance(v, str)}
    assert {"/app/uploads", "/app/client/public/images", "/app/api/logs"} <= targets


def test_the_gateway_reaches_librechat(monkeypatch: pytest.MonkeyPatch) -> None:
    services = override()["services"]
    gateway = services["gateway"]
    env = dict(e.split("=", 1) for e in gateway["environment"])
    (mount,) = gateway["volumes"]
    source, target, _ = mount.split(":")
    assert target == "/etc/gateway/gateway.yaml"
    text = (COMPOSE / source).read_text()
    for var in re.findall(r"\w+_env:\s*([A-Z][A-Z0-9_]*)", text):
        assert var in env, f"the gateway service lacks {var}"
        monkeypatch.setenv(var, "x")
    monkeypatch.setenv("GATEWAY_REDIS_URL", env["GATEWAY_REDIS_URL"])
    config = parse_config(text, str(COMPOSE / source))
    for backend in config.backends.values():
        url = urlsplit(getattr(backend.options, "base_url", ""))
        assert (url.hostname, url.port, url.path) == ("api", 3080, "/api/agents/v1")
    redis_host = urlsplit(env["GATEWAY_REDIS_URL"]).hostname
    assert redis_host in services and redis_host in gateway["depends_on"]
    assert "api" in gateway["depends_on"]
