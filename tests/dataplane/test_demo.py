"""``make demo`` keeps working: built, checked end to end, and torn down without leftovers."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tongdao.testing import netns

pytestmark = pytest.mark.root


def test_demo_builds_checks_and_cleans_up() -> None:
    before = set(netns.list_namespaces())
    result = subprocess.run(
        [sys.executable, "-m", "tongdao.demo", "--hold", "0"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("→ HQ 198.18.7.10 works") == 2
    assert "removed every namespace" in result.stdout
    made = set(netns.list_namespaces()) - before
    assert not made, f"the demo left namespaces behind: {made}"
