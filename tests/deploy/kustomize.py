"""A small kustomize renderer for the manifests in ``deploy/k8s``, so tests need no kubectl.

It renders the subset of kustomize those kustomizations use, and refuses anything
else (an unknown key is an error, never silently ignored):

- ``resources``: YAML files (several documents each) and directories holding a
  ``kustomization.yaml``, rendered first.
- ``configMapGenerator``: ``name``, ``files`` (``path`` or ``key=path``), ``literals``,
  ``behavior`` (``create``, ``replace``, ``merge``); ``generatorOptions`` must set
  ``disableNameSuffixHash: true`` (kustomize's hash is not reproduced here).
- ``patches``: ``path`` or ``patch`` holding a strategic-merge patch, matched by kind and
  name. Lists merge by kustomize's keys (containers, volumes and env by ``name``,
  volumeMounts by ``mountPath``, ports by ``containerPort``); other lists are replaced.
- ``namePrefix``, rewriting references to objects of the same build (ConfigMap and
  Secret volumes, envFrom, env valueFrom, a HorizontalPodAutoscaler's scaleTargetRef).
- ``labels`` (``pairs``, ``includeSelectors``, ``includeTemplates``).
- ``images`` (``name``, ``newName``, ``newTag``).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]

KNOWN_KEYS = {
    "apiVersion",
    "kind",
    "resources",
    "configMapGenerator",
    "generatorOptions",
    "patches",
    "namePrefix",
    "labels",
    "images",
}
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
# Strategic-merge keys of the lists the patches touch (as in Kubernetes' OpenAPI).
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
}


class Unsupported(Exception):
    """The kustomization uses something this renderer does not implement."""


def render(directory: str | Path) -> list[Obj]:
    """Every object ``kubectl kustomize DIRECTORY`` would print, as dictionaries."""
    return [obj for obj, _ in _build(Path(directory))]


def _build(directory: Path) -> list[tuple[Obj, tuple[str, str]]]:
    """Objects paired with their original (kind, name), for patches and references."""
    file = directory / "kustomization.yaml"
    spec = yaml.safe_load(file.read_text(encoding="utf-8"))
    unknown = set(spec) - KNOWN_KEYS
    if unknown:
        raise Unsupported(f"{file}: unsupported keys {sorted(unknown)}")
    if spec.get("kind", "Kustomization") != "Kustomization":
        raise Unsupported(f"{file}: kind {spec['kind']!r}")

    objects: list[tuple[Obj, tuple[str, str]]] = []
    for entry in spec.get("resources", []):
        path = (directory / entry).resolve()
        if path.is_dir():
            objects.extend(_build(path))
        else:
            for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
                if doc:
                    objects.append((doc, (doc["kind"], doc["metadata"]["name"])))

    _generate(directory, spec, objects)
    for patch in spec.get("patches", []):
        _patch(directory, patch, objects)
    prefix = spec.get("namePrefix")
    if prefix:
        _prefix(prefix, objects)
    for entry in spec.get("labels", []):
        _label(entry, [obj for obj, _ in objects])
    for image in spec.get("images", []):
        _image(image, [obj for obj, _ in objects])
    return objects


def _generate(directory: Path, spec: Obj, objects: list[tuple[Obj, tuple[str, str]]]) -> None:
    generators = spec.get("configMapGenerator", [])
    if generators and spec.get("generatorOptions", {}).get("disableNameSuffixHash") is not True:
        raise Unsupported("configMapGenerator needs generatorOptions.disableNameSuffixHash: true")
    if set(spec.get("generatorOptions", {})) - {"disableNameSuffixHash"}:
        raise Unsupported("generatorOptions: only disableNameSuffixHash")
    for gen in generators:
        if set(gen) - {"name", "files", "literals", "behavior"}:
            raise Unsupported(f"configMapGenerator keys {sorted(gen)}")
        data: dict[str, str] = {}
        for item in gen.get("files", []):
            key, _, path = item.rpartition("=")
            source = directory / path
            data[key or source.name] = source.read_text(encoding="utf-8")
        for item in gen.get("literals", []):
            key, _, value = item.partition("=")
            data[key] = value
        name = gen["name"]
        behavior = gen.get("behavior", "create")
        existing = [obj for obj, orig in objects if orig == ("ConfigMap", name)]
        if behavior == "create":
            if existing:
                raise ValueError(f"ConfigMap {name} already exists: use behavior replace/merge")
            cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}
            objects.append((cm | {"data": data}, ("ConfigMap", name)))
        elif behavior in ("replace", "merge"):
            if len(existing) != 1:
                raise ValueError(f"behavior {behavior}: no ConfigMap {name} to {behavior}")
            target = existing[0]
            target["data"] = data if behavior == "replace" else {**target.get("data", {}), **data}
        else:
            raise Unsupported(f"configMapGenerator behavior {behavior!r}")


def _patch(directory: Path, entry: Obj, objects: list[tuple[Obj, tuple[str, str]]]) -> None:
    if set(entry) - {"path", "patch"}:
        raise Unsupported(f"patches entry keys {sorted(entry)} (only path or patch)")
    text = (directory / entry["path"]).read_text() if "path" in entry else entry["patch"]
    patch = yaml.safe_load(text)
    key = (patch["kind"], patch["metadata"]["name"])
    targets = [obj for obj, orig in objects if orig == key]
    if len(targets) != 1:
        raise ValueError(f"patch {key} matches {len(targets)} objects")
    merged = _merge(targets[0], patch)
    targets[0].clear()
    targets[0].update(merged)


def _merge(base: Any, patch: Any, field: str = "") -> Any:
    """A strategic merge of ``patch`` into ``base`` (without ``$patch`` directives)."""
    if isinstance(base, dict) and isinstance(patch, dict):
        if any(str(k).startswith("$") for k in patch):
            raise Unsupported(f"strategic-merge directives in {field}")
        out = dict(base)
        for k, v in patch.items():
            if v is None:
                out.pop(k, None)
            else:
                out[k] = _merge(base[k], v, k) if k in base else copy.deepcopy(v)
        return out
    if isinstance(base, list) and isinstance(patch, list) and field in MERGE_KEYS:
        key = MERGE_KEYS[field]
        out_list = [copy.deepcopy(item) for item in base]
        for item in patch:
            match = [i for i, old in enumerate(out_list) if old.get(key) == item.get(key)]
            if match:
                out_list[match[0]] = _merge(out_list[match[0]], item, field)
            else:
                out_list.append(copy.deepcopy(item))
        return out_list
    return copy.deepcopy(patch)


def _prefix(prefix: str, objects: list[tuple[Obj, tuple[str, str]]]) -> None:
    renamed: dict[tuple[str, str], str] = {}
    for obj, _ in objects:
        old = obj["metadata"]["name"]
        obj["metadata"]["name"] = prefix + old
        renamed[(obj["kind"], old)] = prefix + old

    def ref(kind: str, holder: Obj, field: str = "name") -> None:
        if holder.get(field) is not None and (kind, holder[field]) in renamed:
            holder[field] = renamed[(kind, holder[field])]

    for obj, _ in objects:
        if obj["kind"] == "HorizontalPodAutoscaler":
            ref(obj["spec"]["scaleTargetRef"]["kind"], obj["spec"]["scaleTargetRef"])
        if obj["kind"] not in WORKLOADS:
            continue
        pod = obj["spec"]["template"]["spec"]
        for volume in pod.get("volumes", []):
            if "configMap" in volume:
                ref("ConfigMap", volume["configMap"])
            if "secret" in volume:
                ref("Secret", volume["secret"], "secretName")
        for container in pod.get("containers", []) + pod.get("initContainers", []):
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    ref("ConfigMap", source["configMapRef"])
                if "secretRef" in source:
                    ref("Secret", source["secretRef"])
            for env in container.get("env", []):
                value_from = env.get("valueFrom", {})
                if "configMapKeyRef" in value_from:
                    ref("ConfigMap", value_from["configMapKeyRef"])
                if "secretKeyRef" in value_from:
                    ref("Secret", value_from["secretKeyRef"])


def _label(entry: Obj, objects: list[Obj]) -> None:
    if set(entry) - {"pairs", "includeSelectors", "includeTemplates"}:
        raise Unsupported(f"labels entry keys {sorted(entry)}")
    pairs = entry["pairs"]
    selectors = entry.get("includeSelectors", False)
    templates = selectors or entry.get("includeTemplates", False)
    for obj in objects:
        obj["metadata"].setdefault("labels", {}).update(pairs)
        spec = obj.get("spec", {})
        if templates and obj["kind"] in WORKLOADS:
            spec["template"].setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
        if not selectors:
            continue
        if obj["kind"] == "Service":
            spec.setdefault("selector", {}).update(pairs)
        elif obj["kind"] in WORKLOADS or obj["kind"] == "PodDisruptionBudget":
            spec.setdefault("selector", {}).setdefault("matchLabels", {}).update(pairs)


def _image(entry: Obj, objects: list[Obj]) -> None:
    if set(entry) - {"name", "newName", "newTag"}:
        raise Unsupported(f"images entry keys {sorted(entry)}")
    for obj in objects:
        if obj["kind"] not in WORKLOADS:
            continue
        pod = obj["spec"]["template"]["spec"]
        for container in pod.get("containers", []) + pod.get("initContainers", []):
            name, _, tag = container["image"].rpartition(":")
            if not name or "/" in tag:  # no tag (a ":" may belong to a registry's port)
                name, tag = container["image"], ""
            if name == entry["name"]:
                tag = str(entry.get("newTag", tag))
                container["image"] = entry.get("newName", name) + (f":{tag}" if tag else "")
