"""The engine's build: which wireguard-go is installed, and the agent's warning on an old one."""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

import pytest

from tests.conftest import need
from tongdao.agent.engine import (
    ENGINE_MIN_VERSION,
    EngineBuild,
    FakeEngine,
    wireguard_go_build,
)
from tongdao.agent.gateway import GatewayAgent


def test_installed_wireguard_go_is_the_offload_build() -> None:
    """``make install`` puts wireguard-go 0.0.20231211 or later in place (bookworm-backports on
    Debian bookworm); the build is read from its Debian package, checked by dpkg itself."""
    if shutil.which("wireguard-go") is None:
        need("wireguard-go")
    build = wireguard_go_build()
    assert build.version is not None, build
    assert build.outdated is False, (
        f"{build.describe()} is older than {ENGINE_MIN_VERSION}: run make install"
    )
    if build.source == "dpkg":
        subprocess.run(
            ["dpkg", "--compare-versions", build.version, "ge", ENGINE_MIN_VERSION], check=True
        )


@pytest.mark.parametrize(
    ("version", "source", "outdated"),
    [
        ("0.0.20220316-1+b4", "dpkg", True),  # Debian bookworm's own
        ("0.0.20231211-1~bpo12+1", "dpkg", False),  # bookworm-backports
        ("0.0.20250522-1", "dpkg", False),
        ("0.0.20220316", "--version", True),
        # 0.0.20231211 says v0.0.20230223 (its version.go was not bumped): cannot tell
        ("0.0.20230223", "--version", None),
        ("0.0.20230223-1", "dpkg", True),
        (None, "", None),
    ],
)
def test_outdated(version: str | None, source: str, outdated: bool | None) -> None:
    assert EngineBuild("wireguard-go", "/usr/bin/wireguard-go", version, source).outdated is (
        outdated
    )


class OldEngine(FakeEngine):
    def build(self) -> EngineBuild:
        return EngineBuild("wireguard-go", "/usr/bin/wireguard-go", "0.0.20220316-1+b4", "dpkg")


def test_agent_warns_on_an_old_engine_and_still_runs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    agent = GatewayAgent("http://127.0.0.1:9", tmp_path / "gw", engine=OldEngine())
    with caplog.at_level(logging.INFO, logger="tongdao.agent.gateway"):
        build = agent.check_engine()
    assert build.outdated is True
    assert agent.engine_build == build
    [record] = [r for r in caplog.records if "engine" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "0.0.20220316-1+b4" in record.getMessage()
    assert "bookworm-backports" in record.getMessage()


def test_agent_logs_a_current_engine_at_info(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    agent = GatewayAgent("http://127.0.0.1:9", tmp_path / "gw", engine=FakeEngine())
    with caplog.at_level(logging.INFO, logger="tongdao.agent.gateway"):
        agent.check_engine()
    [record] = [r for r in caplog.records if "engine" in r.getMessage()]
    assert record.levelno == logging.INFO
    assert ENGINE_MIN_VERSION in record.getMessage()


class UpgradedUnderRunningDaemons(FakeEngine):
    def replaced(self, ifnames: Iterable[str]) -> list[str]:
        return [name for name in ifnames if name == "wgt51820"]


def test_agent_warns_about_daemons_running_a_replaced_binary(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    agent = GatewayAgent(
        "http://127.0.0.1:9", tmp_path / "gw", engine=UpgradedUnderRunningDaemons()
    )
    agent.state.save_owned({"wgt51820", "wgt51821"})
    with caplog.at_level(logging.INFO, logger="tongdao.agent.gateway"):
        agent.check_engine()
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "1 interfaces (wgt51820) run a wireguard-go binary replaced" in warning.getMessage()
