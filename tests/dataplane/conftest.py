"""Data-plane tests: root, network namespaces, wireguard-go and nftables, for real."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import need
from tongdao.agent.gateway import GatewayAgent


@pytest.fixture(autouse=True)
def _dataplane_prerequisites() -> None:
    if os.geteuid() != 0:
        need("root")
    for tool in ("wireguard-go", "wg", "nft", "ip", "ping"):
        if shutil.which(tool) is None:
            need(tool)
    if not Path("/dev/net/tun").exists():
        need("/dev/net/tun")


@pytest.fixture
def agents() -> Iterator[list[tuple[GatewayAgent, threading.Thread]]]:
    """Agents a test starts on threads (appended as (agent, thread)): stopped and joined at
    the end, whatever happened."""
    running: list[tuple[GatewayAgent, threading.Thread]] = []
    try:
        yield running
    finally:
        for agent, thread in running:
            agent.stop()
            thread.join(20)
