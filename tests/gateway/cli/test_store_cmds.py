"""Arguments of the key, balance and usage commands: refused as usage errors (exit 2)."""

from __future__ import annotations

import pytest

from gateway.cli import main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("keys", "create", "--name", "x", "--expires-in", "0s"), "argument --expires-in: must be"),
        (("keys", "create", "--name", "x", "--expires-in", "0d0h"), "argument --expires-in: must"),
        (("keys", "create", "--name", "x", "--expires-in", "soon"), "invalid duration 'soon'"),
        (("keys", "create", "--name", "x", "--balance", "-5"), "--balance: must not be negative"),
        (("keys", "create", "--name", "x", "--balance", "5x"), "invalid int value: '5x'"),
        (("keys", "create", "--name", "x", "--agent", ""), "--agent: must be a non-empty"),
        (("keys", "create", "--name", "x", "--agent", "a,b"), "without commas"),
        (("keys", "create", "--name", ""), "--name: must be a non-empty"),
        (("keys", "limits", "key_x", "--rpm", "-1"), "--rpm: must be 0 (none) or positive"),
        (("balance", "add", "key_x", "0"), "argument credits: must not be 0"),
        (("balance", "add", "key_x", "1" + "0" * 30), "argument credits: must be between"),
    ],
)
def test_bad_values_are_usage_errors(
    argv: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main.parser().parse_args(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_good_values_pass() -> None:
    args = main.parser().parse_args(
        ["keys", "create", "--name", "x", "--balance", "0", "--expires-in", "1d12h"]
    )
    assert (args.balance, args.expires_in) == (0, 36 * 3600)
    assert main.parser().parse_args(["balance", "add", "key_x", "-5"]).credits == -5
    assert main.parser().parse_args(["keys", "rotate", "key_x", "--grace", "0s"]).grace == 0


def test_an_expiry_beyond_the_year_9999_is_shown_not_a_traceback() -> None:
    from gateway.cli.store_cmds import _when

    assert _when(1e300) == "1e+300"  # keys the admin API made before expiries were capped
    assert _when(0) == "" and _when(None) == ""


def test_purge_progress_reports_only_each_ten_thousand_walked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A short batch (a key with a few stored values) printed '... 0 listed values erased'."""
    import asyncio
    from collections.abc import Callable

    from gateway.cli import store_cmds
    from gateway.store import erasure

    async def purge_key(
        store: object, key_id: str, *, progress: Callable[[int], None], **_: object
    ) -> str:
        for walked in (0, 2, 3, 9_999, 10_000, 10_400, 19_800, 20_300):
            progress(walked)
        return key_id

    monkeypatch.setattr(erasure, "purge_key", purge_key)
    args = main.parser().parse_args(["keys", "purge", "key_x"])
    asyncio.run(store_cmds._erase(object(), args))  # type: ignore[arg-type]
    err = capsys.readouterr().err.splitlines()
    assert err == ["... 10000 listed values erased", "... 20000 listed values erased"]
