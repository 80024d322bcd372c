"""The Kubernetes manifests in deploy/k8s, rendered by real kustomize and checked statically.

Every object each kustomization renders is validated against the Kubernetes OpenAPI
schemas shipped in the ``kubernetes-validate`` package (strict: unknown fields are
errors), then the wiring the gateway depends on is checked: probes, the ConfigMap
mount, shutdown timing, the sidecar's single exposed port, and the gateway.yaml inside
each ConfigMap, loaded by the gateway's own parser. No network, no cluster.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from gateway.config import GatewayConfig, parse_config
from gateway.server.app import SHUTDOWN_DRAIN_SECONDS
from tests.deploy.kustomize import KustomizeError, render

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
# The oldest Kubernetes these manifests target, and the newest the package knows.
K8S_VERSIONS = ("1.30", kubernetes_validate.latest_version())
OVERLAYS = {"standalone": K8S / "overlays" / "standalone", "sidecar": K8S / "overlays" / "sidecar"}
TARGETS = {**OVERLAYS, "base": K8S / "base", "redis": K8S / "redis"}
SECRET_REDIS = "rediss://gateway:pw@redis.example.com:6380/0"
GATEWAY = "gateway"  # the gateway's container name in every pod

Obj = dict[str, Any]


def one(objects: list[Obj], kind: str) -> Obj:
    found = [obj for obj in objects if obj["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def pod_spec(objects: list[Obj]) -> Obj:
    spec: Obj = one(objects, "Deployment")["spec"]["template"]["spec"]
    return spec


def container(pod: Obj, name: str = GATEWAY) -> Obj:
    (found,) = [c for c in pod["containers"] if c["name"] == name]
    return found


def arg(c: Obj, flag: str) -> str:
    args = c["args"]
    return str(args[args.index(flag) + 1])


def port_number(c: Obj, port: int | str) -> int | None:
    """A probe's or Service's port (a number or a port name) as this container's port."""
    for p in c.get("ports", []):
        if port in (p["containerPort"], p.get("name")):
            return int(p["containerPort"])
    return None


def pre_stop_sleep(c: Obj) -> int:
    hook = c["lifecycle"]["preStop"]
    if "sleep" in hook:
        return int(hook["sleep"]["seconds"])
    command = hook["exec"]["command"]
    assert command[0] == "sleep", command
    return int(command[1])


def gateway_yaml(objects: list[Obj]) -> tuple[str, str, Obj]:
    """The ConfigMap the gateway mounts: (mount directory, file name, the file's data)."""
    pod = pod_spec(objects)
    gw = container(pod)
    config_path = arg(gw, "--config")
    directory, file = posixpath.split(config_path)
    mounts = [m for m in gw["volumeMounts"] if m["mountPath"] == directory]
    assert len(mounts) == 1, f"nothing is mounted at {directory}"
    (volume,) = [v for v in pod["volumes"] if v["name"] == mounts[0]["name"]]
    name = volume["configMap"]["name"]
    (cm,) = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == name]
    return directory, file, cm["data"]


def secret_vars(text: str) -> set[str]:
    """The environment variables a gateway.yaml needs: the Secret must provide them."""
    return {"GATEWAY_REDIS_URL"} | set(re.findall(r"\w+_env:\s*([A-Z][A-Z0-9_]*)", text))


def loaded_config(objects: list[Obj], monkeypatch: pytest.MonkeyPatch) -> GatewayConfig:
    """The mounted gateway.yaml through the gateway's own parser, the Secret's variables set."""
    _, file, data = gateway_yaml(objects)
    for var in secret_vars(data[file]):
        monkeypatch.setenv(var, SECRET_REDIS if var == "GATEWAY_REDIS_URL" else "x")
    return parse_config(data[file], f"configmap:{file}")


@pytest.fixture(scope="module", params=sorted(TARGETS))
def target(request: pytest.FixtureRequest) -> tuple[str, list[Obj]]:
    return request.param, render(TARGETS[request.param])


@pytest.fixture(scope="module", params=sorted(OVERLAYS))
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[Obj]]:
    return request.param, render(OVERLAYS[request.param])


# ---- schemas ----


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_rendered_object_validates(target: tuple[str, list[Obj]], version: str) -> None:
    name, objects = target
    assert objects, name
    for obj in objects:
        where = f"{name}: {obj['kind']}/{obj['metadata']['name']}"
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{where} against {version}: {path}: {exc.message}")


def test_strict_validation_rejects_a_misspelt_field() -> None:
    """The validator has teeth: an unknown field fails, as kubectl's strict apply would."""
    deployment = one(render(OVERLAYS["standalone"]), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[0], strict=True)


def test_the_overlays_render_what_the_docs_describe() -> None:
    kinds = sorted(o["kind"] for o in render(OVERLAYS["standalone"]))
    assert kinds == sorted(
        ["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service"]
    )
    # LibreChat runs once: no autoscaler, no budget; its config and its files.
    kinds = sorted(o["kind"] for o in render(OVERLAYS["sidecar"]))
    assert kinds == sorted(
        ["ConfigMap", "ConfigMap", "Deployment", "PersistentVolumeClaim", "Service"]
    )
    assert sorted(o["kind"] for o in render(TARGETS["redis"])) == ["Deployment", "Service"]
    standalone = render(OVERLAYS["standalone"])
    hpa = one(standalone, "HorizontalPodAutoscaler")
    assert one(standalone, "Deployment")["spec"]["replicas"] == 2 == hpa["spec"]["minReplicas"]


def test_kustomize_errors_fail_the_render(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: [missing.yaml]\n")
    with pytest.raises(KustomizeError, match=r"missing\.yaml"):
        render(tmp_path)


# ---- wiring ----


def test_selectors_and_references_meet(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    deployment = one(objects, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    assert one(objects, "Service")["spec"]["selector"] == selector
    for pdb in (o for o in objects if o["kind"] == "PodDisruptionBudget"):
        assert pdb["spec"]["selector"]["matchLabels"] == selector
    for hpa in (o for o in objects if o["kind"] == "HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        assert (ref["kind"], ref["name"]) == ("Deployment", deployment["metadata"]["name"])
    for c in pod_spec(objects)["containers"]:
        image = c["image"]
        assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), image


def test_probes_use_the_health_endpoints_on_the_gateway_port(
    overlay: tuple[str, list[Obj]],
) -> None:
    _, objects = overlay
    gw = container(pod_spec(objects))
    port = int(arg(gw, "--port"))
    assert port_number(gw, "http") == port
    for probe, path in (
        ("livenessProbe", "/healthz"),
        ("startupProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ):
        get = gw[probe]["httpGet"]
        assert get["path"] == path, probe
        assert port_number(gw, get["port"]) == port, probe
    _, file, data = gateway_yaml(objects)
    assert yaml.safe_load(data[file])["listen"]["port"] == port


def test_the_configmap_is_mounted_as_a_directory(overlay: tuple[str, list[Obj]]) -> None:
    """subPath mounts never receive ConfigMap updates; a directory mount does."""
    _, objects = overlay
    directory, file, data = gateway_yaml(objects)
    gw = container(pod_spec(objects))
    for mount in gw["volumeMounts"]:
        assert "subPath" not in mount and "subPathExpr" not in mount, mount
        if mount["mountPath"] == directory:
            assert mount.get("readOnly") is True
    assert file in data


def test_the_grace_period_covers_the_drain(
    overlay: tuple[str, list[Obj]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """preStop sleep, then SIGTERM: shutdown.drain_delay before the listener closes,
    shutdown.grace_period for requests in flight, SHUTDOWN_DRAIN_SECONDS at most for their
    settlements; all within terminationGracePeriodSeconds. In the sidecar, the app outlives
    the requests in flight it serves."""
    name, objects = overlay
    config = loaded_config(objects, monkeypatch)
    shutdown = getattr(config, "shutdown", None)
    if shutdown is None:
        pytest.fail("the manifests assume gateway.yaml's shutdown.drain_delay/grace_period")
    pod = pod_spec(objects)
    pre_stop = pre_stop_sleep(container(pod))
    assert pre_stop >= 5, "endpoint removal needs a few seconds to reach every proxy"
    in_flight = pre_stop + shutdown.drain_delay + shutdown.grace_period
    ceiling = in_flight + SHUTDOWN_DRAIN_SECONDS
    grace = pod["terminationGracePeriodSeconds"]
    assert ceiling <= grace <= ceiling + 10, (name, ceiling, grace)
    for other in pod["containers"]:
        if other["name"] != GATEWAY:
            assert in_flight <= pre_stop_sleep(other) < grace, name


def test_the_gateway_runs_locked_down(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    pod = pod_spec(objects)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod.get("automountServiceAccountToken") is False
    gw = container(pod)
    ctx = gw["securityContext"]
    assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] != 0
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"]["drop"] == ["ALL"]
    assert gw["resources"]["requests"]["cpu"], "the HPA's CPU utilisation needs a request"
    assert gw["resources"]["limits"]["memory"]
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    users = re.findall(r"^USER\s+(\d+)", dockerfile, re.MULTILINE)
    assert users and int(users[-1]) == ctx["runAsUser"], "the manifests' UID is the image's"


def test_secrets_come_from_the_environment_never_the_manifests(
    overlay: tuple[str, list[Obj]],
) -> None:
    """No Secret is rendered (none lives in git); the gateway reads one it is given."""
    _, objects = overlay
    assert not [o for o in objects if o["kind"] == "Secret"]
    gw = container(pod_spec(objects))
    assert {"secretRef": {"name": "gateway-secrets"}} in gw["envFrom"]
    assert all("value" not in e or "KEY" not in e["name"] for e in gw.get("env", []))


def test_the_configmap_holds_a_valid_gateway_yaml(
    overlay: tuple[str, list[Obj]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file passes the gateway's own checks once the Secret's variables are set, and
    every variable it needs is in the README's `kubectl create secret` line."""
    _, objects = overlay
    _, file, data = gateway_yaml(objects)
    needed = secret_vars(data[file])
    config = loaded_config(objects, monkeypatch)
    assert config.routes and config.backends
    assert config.redis.url == SECRET_REDIS  # the Secret's URL wins over the file's
    assert config.listen.host == "0.0.0.0"
    readme = (ROOT / "deploy" / "README.md").read_text()
    for var in needed:
        assert f"--from-literal={var}=" in readme, f"deploy/README.md: the Secret lacks {var}"


# ---- the sidecar ----


def test_the_sidecar_service_exposes_only_the_gateway() -> None:
    objects = render(OVERLAYS["sidecar"])
    pod = pod_spec(objects)
    assert len(pod["containers"]) == 2
    gw = container(pod)
    app = container(pod, "librechat")
    service = one(objects, "Service")
    for p in service["spec"]["ports"]:
        assert port_number(gw, p["targetPort"]) is not None, p
        assert port_number(app, p["targetPort"]) is None, p
    # The app declares no port and binds loopback: only the gateway can reach it.
    assert "ports" not in app
    env = {e["name"]: e.get("value") for e in app["env"]}
    assert env["HOST"] == "127.0.0.1"
    # The gateway's backends point at the app in the same pod.
    _, file, data = gateway_yaml(objects)
    backends = yaml.safe_load(data[file])["backends"]
    assert backends
    for backend in backends.values():
        url = urlsplit(backend["base_url"])
        assert (url.hostname, url.port) == ("127.0.0.1", int(env["PORT"])), backend


def test_the_sidecar_runs_a_librechat_with_the_agents_api() -> None:
    """LibreChat's Agents API shipped in v0.8.3 (before it, /api/agents/* wants a login
    token); images come from LibreChat's own registry; remoteAgents must be enabled in the
    librechat.yaml it reads at /app/librechat.yaml; its files need volumes; one replica."""
    objects = render(OVERLAYS["sidecar"])
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}  # ReadWriteOnce volume
    pod = pod_spec(objects)
    app = container(pod, "librechat")
    image, tag = app["image"].rsplit(":", 1)
    assert image == "registry.librechat.ai/danny-avila/librechat"
    version = tuple(int(n) for n in re.findall(r"\d+", tag)[:3])
    assert version >= (0, 8, 3), tag
    mounts = {m["mountPath"]: m for m in app["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    config = mounts["/app/librechat.yaml"]
    name = volumes[config["name"]]["configMap"]["name"]
    (cm,) = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == name]
    librechat_yaml = yaml.safe_load(cm["data"][config["subPath"]])
    assert librechat_yaml["interface"]["remoteAgents"] == {"use": True, "create": True}
    claims = {o["metadata"]["name"] for o in objects if o["kind"] == "PersistentVolumeClaim"}
    for path in ("/app/uploads", "/app/client/public/images"):
        assert volumes[mounts[path]["name"]]["persistentVolumeClaim"]["claimName"] in claims
    assert "/app/api/logs" in mounts
