"""Data-plane tests: root, network namespaces, wireguard-go and nftables, for real."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import need


@pytest.fixture(autouse=True)
def _dataplane_prerequisites() -> None:
    if os.geteuid() != 0:
        need("root")
    for tool in ("wireguard-go", "wg", "nft", "ip", "ping"):
        if shutil.which(tool) is None:
            need(tool)
    if not Path("/dev/net/tun").exists():
        need("/dev/net/tun")
