"""Third-party plugins: a throwaway package, installed by pip, registers a backend
and a filter through entry points exactly as the built-in ones do."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import openai
import pytest

from gateway.config import parse_config
from gateway.errors import ConfigError
from tests.conftest import StartGateway

PACKAGE = "throwaway_gateway_plugin"

BACKEND = """
from dataclasses import dataclass

from gateway.plugin import BackendPlugin, Completed, FilterPlugin, TextDelta, Usage


@dataclass(frozen=True)
class Options:
    greeting: str = "plugin says"


class Backend:
    def __init__(self, name, options):
        self.options = options

    async def invoke(self, invocation, ctx):
        yield (TextDelta(f"{self.options.greeting}: {invocation.last_user_text()}"),)
        yield (Usage(input_tokens=3, output_tokens=1), Completed())

    async def aclose(self):
        pass


@dataclass(frozen=True)
class ShoutOptions:
    pass


class Shout:
    def __init__(self, options):
        pass

    async def wrap(self, batches, ctx):
        async for batch in batches:
            yield tuple(shout(event) for event in batch)


def shout(event):
    return TextDelta(event.text.upper()) if isinstance(event, TextDelta) else event


PLUGIN = BackendPlugin(options=Options, create=Backend)
SHOUT = FilterPlugin(options=ShoutOptions, create=Shout)
"""

ENTRY_POINTS = f"""[agent_gateway.backends]
throwaway = {PACKAGE}:PLUGIN
broken = {PACKAGE}.broken:PLUGIN

[agent_gateway.filters]
shout = {PACKAGE}:SHOUT
"""


def _wheel(folder: Path) -> Path:
    """A minimal, valid wheel of the throwaway package."""
    info = f"{PACKAGE}-0.1.dist-info"
    files = {
        f"{PACKAGE}/__init__.py": BACKEND,
        f"{PACKAGE}/broken.py": "raise RuntimeError('this plugin cannot load')\n",
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: throwaway-gateway-plugin\nVersion: 0.1\n",
        f"{info}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
        f"{info}/entry_points.txt": ENTRY_POINTS,
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{name},sha256={digest.decode()},{len(text.encode())}")
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = "\n".join(record) + "\n"
    path = folder / f"{PACKAGE}-0.1-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for name, text in files.items():
            wheel.writestr(name, text)
    return path


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package, installed by pip (offline) into a folder of its own."""
    folder = tmp_path_factory.mktemp("plugin")
    target = folder / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--disable-pip-version-check", "--target", str(target), str(_wheel(folder))],
        check=True,
    )  # fmt: skip
    return target


@pytest.fixture
def plugin_on_path(installed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(installed))


CONFIG = """
backends:
  third:
    type: throwaway
    greeting: hello from a plugin
filters:
  - type: shout
routes:
  party: {backend: third}
"""


@pytest.mark.usefixtures("plugin_on_path")
async def test_a_route_to_a_third_party_backend_with_a_third_party_filter(
    start_gateway: StartGateway,
) -> None:
    gw = await start_gateway(CONFIG)
    async with openai.AsyncOpenAI(
        base_url=f"{gw.url}/v1", api_key=await gw.new_key(), max_retries=0
    ) as client:
        reply = await client.chat.completions.create(
            model="party", messages=[{"role": "user", "content": "hi"}]
        )
    assert reply.choices[0].message.content == "HELLO FROM A PLUGIN: HI"


@pytest.mark.usefixtures("plugin_on_path")
def test_plugin_options_are_checked_like_built_in_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("backends:\n  third: {type: throwaway, greting: typo}\n")
    (problem,) = caught.value.problems
    assert problem.path == "backends.third.greting" and problem.line == 2


@pytest.mark.usefixtures("plugin_on_path")
def test_a_plugin_that_fails_to_load_is_named() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("backends:\n  b: {type: broken}\n")
    (problem,) = caught.value.problems
    assert problem.path == "backends.b.type"
    assert "'broken' failed to load" in problem.message
    assert "this plugin cannot load" in problem.message


def test_an_unknown_type_is_named_with_the_known_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("backends:\n  b: {type: throwaway}\nfilters:\n  - type: shout\n")
    backend, filter_ = caught.value.problems
    assert "unknown backend type 'throwaway'" in backend.message and "echo" in backend.message
    assert (filter_.path, filter_.line) == ("filters[0].type", 4)
    assert "unknown filter type 'shout'" in filter_.message


def test_gateway_config_check_names_an_unknown_type(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text("backends:\n  b:\n    type: nope\n")
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "config", "check", str(path)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert f"{path}:3: backends.b.type: unknown backend type 'nope'" in done.stderr
