"""The tests mirror the package: each module has ``tests/<path>/test_<module>.py``, or a
row of tests/README.md's table says where it is covered."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = ROOT / "plugins" / "gateway_plugins"


def mirrored(module: Path) -> Path:
    if module.is_relative_to(PLUGINS):
        rest = module.relative_to(PLUGINS)
        return ROOT / "tests" / "plugins" / rest.parent / f"test_{rest.name}"
    rest = module.relative_to(ROOT)
    return ROOT / "tests" / rest.parent / f"test_{rest.name}"


def listed() -> list[str]:
    """The module patterns in the first column of the README's table."""
    rows = re.findall(r"(?m)^\| (`[^|]+`) \|", (ROOT / "tests" / "README.md").read_text())
    return [name for row in rows for name in re.findall(r"`([^`]+\.py)`", row)]


def test_every_module_has_its_test_file_or_says_where_it_is_covered() -> None:
    patterns = listed()
    modules = [
        path
        for base in (ROOT / "gateway", PLUGINS)
        for path in sorted(base.rglob("*.py"))
        if path.name != "__init__.py"
    ]
    lacking = [
        str(m.relative_to(ROOT))
        for m in modules
        if not mirrored(m).exists()
        and not any(fnmatch.fnmatch(str(m.relative_to(ROOT)), p) for p in patterns)
    ]
    assert not lacking, f"no test file and no row in tests/README.md: {lacking}"


def test_every_row_names_a_module_that_exists() -> None:
    for pattern in listed():
        assert list(ROOT.glob(pattern)), f"tests/README.md lists {pattern}, which is gone"
