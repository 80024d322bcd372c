"""The locks in requirements/ agree with pyproject.toml (`make lock` refreshes them).

`make run` and `make test` install only from these locks, so a dependency added to
pyproject.toml but not locked would be missing on a fresh machine, and one removed but
still locked would be installed for nothing. Each lock records, in uv's "via" comments,
which pins pyproject.toml asked for directly: those must be exactly the extra's
requirements, each pinned inside its range.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LOCKS = ROOT / "requirements"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = canonicalize_name(PYPROJECT["project"]["name"])

_PIN = re.compile(r"^([A-Za-z0-9._-]+)==(\S+)")


@dataclass(frozen=True)
class Pin:
    version: str
    hashed: bool
    direct: bool  # pyproject.toml (or the lock's input file) asked for it by name


def read_lock(path: Path) -> dict[str, Pin]:
    """Every pin of a `uv pip compile --generate-hashes` output, by canonical name."""
    pins: dict[str, Pin] = {}
    name = version = ""
    hashed = direct = False

    def flush() -> None:
        if name:
            pins[canonicalize_name(name)] = Pin(version, hashed, direct)

    for line in path.read_text().splitlines():
        if match := _PIN.match(line):
            flush()
            name, version = match.groups()
            hashed = direct = False
        elif line.strip().startswith("--hash=sha256:"):
            hashed = True
        elif line.startswith("    # via") or line.startswith("    #   "):
            source = line.removeprefix("    # via").strip(" #")
            direct = direct or "(pyproject.toml)" in source or source.startswith("-r ")
    flush()
    return pins


def wanted(extra: str | None) -> list[Requirement]:
    """The project's dependencies plus an extra's, with `agent-gateway[x]` expanded."""
    extras = PYPROJECT["project"]["optional-dependencies"]
    found = [Requirement(text) for text in PYPROJECT["project"]["dependencies"]]
    todo = [extra] if extra else []
    seen: set[str] = set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for text in extras[current]:
            requirement = Requirement(text)
            if canonicalize_name(requirement.name) == PROJECT:
                todo.extend(requirement.extras)
            else:
                found.append(requirement)
    return found


def check(lock: Path, requirements: list[Requirement]) -> None:
    pins = read_lock(lock)
    assert pins, f"{lock.name} pins nothing"
    unhashed = sorted(name for name, pin in pins.items() if not pin.hashed)
    assert not unhashed, f"{lock.name}: pins without hashes: {unhashed}"
    names = {canonicalize_name(r.name) for r in requirements}
    missing = sorted(names - pins.keys())
    assert not missing, f"{lock.name} lacks {missing}: run `make lock`"
    stale = sorted(name for name, pin in pins.items() if pin.direct and name not in names)
    assert not stale, f"{lock.name} still pins {stale} for pyproject.toml: run `make lock`"
    for requirement in requirements:
        pin = pins[canonicalize_name(requirement.name)]
        assert pin.direct, f"{lock.name}: {requirement.name} is not locked as asked for"
        assert requirement.specifier.contains(pin.version, prereleases=True), (
            f"{lock.name} pins {requirement.name}=={pin.version}, outside {requirement}: "
            "run `make lock`"
        )


@pytest.mark.parametrize(
    ("lock", "extra"), [("base.txt", None), ("run.txt", "embedded"), ("test.txt", "test")]
)
def test_each_extras_lock_agrees_with_pyproject(lock: str, extra: str | None) -> None:
    check(LOCKS / lock, wanted(extra))


def read_in(path: Path) -> list[Requirement]:
    lines = (line.strip() for line in path.read_text().splitlines())
    return [Requirement(line) for line in lines if line and not line.startswith("#")]


@pytest.mark.parametrize("lock", ["build", "uv", "litellm"])
def test_each_tools_lock_agrees_with_its_input(lock: str) -> None:
    check(LOCKS / f"{lock}.txt", read_in(LOCKS / f"{lock}.in"))


def test_build_lock_holds_pyprojects_build_backend() -> None:
    pins = read_lock(LOCKS / "build.txt")
    for text in PYPROJECT["build-system"]["requires"]:
        requirement = Requirement(text)
        pin = pins.get(canonicalize_name(requirement.name))
        assert pin and requirement.specifier.contains(pin.version), f"build.txt lacks {text}"


def test_a_lock_that_disagrees_fails(tmp_path: Path) -> None:
    """The checks above can fail: a pin outside its range, or a pin missing."""
    text = (LOCKS / "run.txt").read_text()
    edited = tmp_path / "run.txt"
    edited.write_text(re.sub(r"(?m)^redis==\S+", "redis==4.0.0", text))
    with pytest.raises(AssertionError, match=re.escape("redis==4.0.0, outside")):
        check(edited, wanted("embedded"))
    edited.write_text(re.sub(r"(?m)^pyyaml==", "pyyaml-gone==", text))
    with pytest.raises(AssertionError, match="lacks \\['pyyaml'\\]"):
        check(edited, wanted("embedded"))
