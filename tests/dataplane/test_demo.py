"""``make demo`` keeps working: built, checked end to end, and torn down without leftovers."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tongdao.testing import netns

pytestmark = pytest.mark.root


def test_demo_builds_checks_and_cleans_up() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tongdao.demo", "--hold", "0"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("→ HQ 198.18.7.10 works") == 2
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("removed every namespace (")
    made = set(last.split("(", 1)[1].split(")", 1)[0].split())
    assert len(made) >= 8
    left = made & set(netns.list_namespaces())
    assert not left, f"the demo left namespaces behind: {left}"
