"""ConfigWatcher: it starts from the digest of what was served, not of a later read."""

from __future__ import annotations

import base64
import hashlib
import logging
from pathlib import Path
from typing import Any

import pytest

from gateway.config import NO_ROUTES, load_config
from gateway.pipeline import Gateway
from gateway.reload import ConfigWatcher
from gateway.store import Store
from gateway.tasks import BackgroundTasks

FIRST = "backends:\n  echo: {type: echo}\nroutes:\n  a: {backend: echo}\n"
SECOND = FIRST + "  b: {backend: echo}\n"


async def test_a_file_changed_between_load_and_watch_is_applied(
    tmp_path: Path, fake_store: Store
) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(FIRST)
    config = load_config(path)
    assert config.sha256 == hashlib.sha256(FIRST.encode()).hexdigest()
    gateway = Gateway.build(config, fake_store, BackgroundTasks())
    path.write_text(SECOND)  # changed before the watcher first looks
    watcher = ConfigWatcher(gateway, str(path))
    assert watcher.digest == config.sha256
    assert await watcher.check()
    assert set(gateway.config.routes) == {"a", "b"}
    assert watcher.digest == gateway.config.sha256 == hashlib.sha256(SECOND.encode()).hexdigest()
    assert not await watcher.check()  # unchanged since


async def test_a_bad_edit_undone_clears_its_problem(tmp_path: Path, fake_store: Store) -> None:
    """/readyz stops listing a rejected file's problem once the served file is back."""
    path = tmp_path / "gateway.yaml"
    path.write_text(FIRST)
    gateway = Gateway.build(load_config(path), fake_store, BackgroundTasks())
    watcher = ConfigWatcher(gateway, str(path))
    path.write_text(FIRST + "  c: [\n")
    assert not await watcher.check()
    assert watcher.status()["problems"]
    path.write_text(FIRST)  # restored byte for byte: no reload, and no problem either
    assert not await watcher.check()
    assert watcher.status()["problems"] == [] and watcher.reloads == 0
    path.unlink()
    assert not await watcher.check()
    assert "unreadable" in str(watcher.status()["problems"])
    path.write_text(FIRST)
    assert not await watcher.check()
    assert watcher.status()["problems"] == []


async def test_a_file_emptied_is_rejected_as_serve_would_refuse_it(
    tmp_path: Path, fake_store: Store
) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(FIRST)
    gateway = Gateway.build(load_config(path), fake_store, BackgroundTasks())
    watcher = ConfigWatcher(gateway, str(path))
    path.write_text("")  # a truncated write, or an editor's first save
    assert not await watcher.check()
    assert set(gateway.config.routes) == {"a"}
    assert watcher.problems == (f"{path}:1: routes: {NO_ROUTES}",)


async def test_reasoning_events_and_access_log_change_at_once(
    tmp_path: Path, fake_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(FIRST)
    gateway = Gateway.build(load_config(path), fake_store, BackgroundTasks())
    watcher = ConfigWatcher(gateway, str(path))
    path.write_text("responses: {reasoning_events: spec}\naccess_log: false\n" + FIRST)
    with caplog.at_level(logging.WARNING, logger="gateway.reload"):
        assert await watcher.check()
    assert gateway.config.responses.reasoning_events == "spec"
    assert gateway.generation.filters == ()  # the default access log is gone
    assert "next restart" not in caplog.text
    path.write_text("responses: {events_max: 60}\n" + FIRST)
    with caplog.at_level(logging.WARNING, logger="gateway.reload"):
        assert await watcher.check()
    assert "responses.events_max" in caplog.text and "next restart" in caplog.text


async def test_the_storage_policy_changes_at_once_and_encryption_at_restart(
    tmp_path: Path, fake_store: Store, caplog: pytest.LogCaptureFixture, monkeypatch: Any
) -> None:
    """A reload that turns storage off for an agent applies to the next request; the
    encryption keys are read once, at start-up."""
    path = tmp_path / "gateway.yaml"
    path.write_text(FIRST)
    gateway = Gateway.build(load_config(path), fake_store, BackgroundTasks())
    watcher = ConfigWatcher(gateway, str(path))
    assert gateway.storage("a").allowed and gateway.storage("a").retention_seconds == 2592000
    routes = "  a: {backend: echo, store: never}\n  b: {backend: echo, retention_seconds: 60}\n"
    path.write_text("backends:\n  echo: {type: echo}\nroutes:\n" + routes)
    with caplog.at_level(logging.WARNING, logger="gateway.reload"):
        assert await watcher.check()
    assert not gateway.storage("a").allowed
    assert gateway.storage("b").allowed and gateway.storage("b").retention_seconds == 60
    path.write_text("responses: {retention_seconds: 30, store: never}\n" + FIRST)
    assert await watcher.check()
    assert not gateway.storage("a").allowed and gateway.storage("a").retention_seconds == 30
    assert "next restart" not in caplog.text
    monkeypatch.setenv("GW_TEST_CONTENT_KEY", base64.b64encode(bytes(32)).decode())
    path.write_text("responses: {encryption: {key_env: GW_TEST_CONTENT_KEY}}\n" + FIRST)
    with caplog.at_level(logging.WARNING, logger="gateway.reload"):
        assert await watcher.check()
    assert "responses.encryption" in caplog.text and "next restart" in caplog.text
    assert not gateway.cipher.encrypts


async def test_alert_thresholds_and_webhook_change_at_once(
    tmp_path: Path,
    fake_store: Store,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``alerts`` follows the file: the next settlement checks the new thresholds, and the
    webhook's deliveries use the new url (read at each pass), with no restart warning."""
    monkeypatch.setenv("GW_RELOAD_ALERT_SECRET", "s")
    path = tmp_path / "gateway.yaml"
    path.write_text(FIRST)
    gateway = Gateway.build(load_config(path), fake_store, BackgroundTasks())
    watcher = ConfigWatcher(gateway, str(path))
    assert not gateway.meter.alerter.on and gateway.meter.alerter.settings.webhook is None
    path.write_text(
        "alerts:\n  thresholds: [0.5, 0.9]\n"
        "  webhook: {url: 'http://127.0.0.1:9/hook', secret_env: GW_RELOAD_ALERT_SECRET}\n" + FIRST
    )
    with caplog.at_level(logging.WARNING, logger="gateway.reload"):
        assert await watcher.check()
    assert "next restart" not in caplog.text
    alerter = gateway.meter.alerter
    assert alerter.on and alerter.settings.thresholds == (0.5, 0.9)
    assert alerter.settings.webhook is not None
    assert alerter.settings.webhook.url == "http://127.0.0.1:9/hook"
    path.write_text(FIRST)  # thresholds off again: settlements check nothing
    assert await watcher.check()
    assert not gateway.meter.alerter.on and gateway.meter.alerter.settings.webhook is None
