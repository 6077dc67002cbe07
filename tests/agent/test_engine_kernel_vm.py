"""The kernel engine for real: ``kernel_guest.py`` run by pytest inside a VM of Debian's kernel.

These hosts have no ``wireguard`` module; ``tongdao.testing.vm`` boots Debian's stock kernel
(qemu tcg, the host's filesystem shared read-only over 9p) and runs this checkout's pytest
on ``tests/agent/kernel_guest.py`` there. A VM that cannot start fails this test under
``make test`` (``TONGDAO_TEST_REQUIRE_ALL=1``); it is never a silent skip there.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import need
from tongdao.testing import vm

# Boots a VM under software emulation: minutes on a loaded machine.
pytestmark = [pytest.mark.root, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
GUEST = ROOT / "tests" / "agent" / "kernel_guest.py"
VM_TIMEOUT = 420.0  # seconds; about 2-3 min on 2 cores under tcg


def test_the_kernel_engine_in_a_vm_of_debians_kernel() -> None:
    if os.geteuid() != 0:
        need("root")
    lacks = vm.missing()
    if lacks:
        need(", ".join(lacks))
    expected = len(re.findall(r"^def test_", GUEST.read_text(), re.M))
    started = time.monotonic()
    result = vm.run_in_vm(
        [
            sys.executable,
            # no plugin but pytest-timeout: the installed ones' imports (schemathesis,
            # hypothesis, ...) take a minute and more under tcg
            *("-m", "pytest", "-p", "pytest_timeout", "-p", "no:cacheprovider", "--noconftest"),
            "--basetemp=/tmp/kernel-guest",
            *("-q", "-rA", "--durations=8", "--timeout=300", str(GUEST.relative_to(ROOT))),
        ],
        cwd=ROOT,
        env={"TONGDAO_TEST_REQUIRE_ALL": "1", "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
        timeout=VM_TIMEOUT,
    )
    wall = time.monotonic() - started
    report = (
        f"\n--- guest pytest ---\n{result.output[-12000:]}"
        f"\n--- console ---\n{result.console[-3000:]}"
    )
    print(f"VM: boot {result.boot_seconds:.1f} s (guest clock), wall {wall:.1f} s")
    print(result.output[-3000:])
    assert result.returncode == 0, report
    # -q ends with "6 passed in 107.23s (0:01:47)"
    summary = re.findall(r"^=*\s*(\d+ \w+(?:, \d+ \w+)*) in [\d.]+s", result.output, re.M)
    assert summary, report
    assert summary[-1] == f"{expected} passed", report
