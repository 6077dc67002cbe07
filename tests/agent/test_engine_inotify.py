"""The wireguard-go engine keeps the host's inotify instance limit above its daemons.

Each wireguard-go daemon holds one inotify instance; at the kernel's default limit (128) the
129th tenant's daemon on a PoP started and never answered (found by ``python -m bench
domains``). These tests point the engine at a file standing in for
``/proc/sys/fs/inotify/max_user_instances`` and a socket directory with N daemons' sockets."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tongdao.agent.engine import INOTIFY_HEADROOM, WireGuardGoEngine


def engine_with(tmp_path: Path, daemons: int, limit: str) -> tuple[WireGuardGoEngine, Path]:
    sockets = tmp_path / "wireguard"
    sockets.mkdir()
    for n in range(daemons):
        (sockets / f"wgt{n}.sock").touch()
    setting = tmp_path / "max_user_instances"
    setting.write_text(limit)
    return WireGuardGoEngine(socket_dir=sockets, inotify_limit=setting), setting


def test_the_limit_is_raised_before_the_daemons_reach_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine, setting = engine_with(tmp_path, 100, "128\n")
    with caplog.at_level(logging.WARNING, logger="tongdao.agent.engine"):
        engine.make_inotify_room()
    assert int(setting.read_text()) == 256  # doubled: 100 + 1 + 32 needed
    assert "raised fs.inotify.max_user_instances from 128 to 256" in caplog.text


def test_a_limit_with_room_is_left_alone(tmp_path: Path) -> None:
    engine, setting = engine_with(tmp_path, 3, "8192\n")
    engine.make_inotify_room()
    assert setting.read_text() == "8192\n"


def test_a_large_pop_gets_what_it_needs(tmp_path: Path) -> None:
    engine, setting = engine_with(tmp_path, 600, "512")
    engine.make_inotify_room()
    assert int(setting.read_text()) == 1024
    (tmp_path / "tiny").mkdir()
    engine, setting = engine_with(tmp_path / "tiny", 0, "1")
    engine.make_inotify_room()
    assert int(setting.read_text()) == 1 + INOTIFY_HEADROOM


class ReadOnlySetting(type(Path())):  # type: ignore[misc]
    """A setting that reads but refuses writes, as /proc does to a process without the right."""

    def write_text(self, *args: object, **kwargs: object) -> int:
        raise PermissionError(13, "Permission denied", str(self))


def test_a_limit_that_cannot_be_raised_is_a_warning_not_a_failure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine, setting = engine_with(tmp_path, 200, "128")
    engine.inotify_limit = ReadOnlySetting(setting)
    with caplog.at_level(logging.WARNING, logger="tongdao.agent.engine"):
        engine.make_inotify_room()
    assert setting.read_text() == "128"
    assert "fs.inotify.max_user_instances is 128" in caplog.text
    assert "set it to at least 233" in caplog.text


def test_a_host_without_the_setting_is_left_alone(tmp_path: Path) -> None:
    engine, setting = engine_with(tmp_path, 200, "not a number")
    engine.make_inotify_room()
    assert setting.read_text() == "not a number"
    engine.inotify_limit = tmp_path / "missing"
    engine.make_inotify_room()
    assert not (tmp_path / "missing").exists()
