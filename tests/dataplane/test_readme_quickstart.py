"""The README's quick start, followed literally, ends in a working tunnel.

The marked shell blocks of the section (``tests/support/readme.py``) run as written: terminal 1
(``make run``) as its own process, terminal 2's blocks in order in one ``bash`` with ``set -euo
pipefail``, from a directory that looks like a fresh clone (this repository's files and
``.venv`` linked in, no ``data``), with an environment that holds no ``TONGDAO_*`` variable, so
every setting the steps need must come from the README. The only change is the port in the
settings line (a free one, so the run cannot collide with a server on 8080); the passwords
the README asks for are typed on standard input. Between the proof and the tear-down the test
takes its own look with ``wg show … dump`` on both ends; afterwards, nothing the README made
may be left: no namespace, no wireguard-go, no UAPI socket.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import need
from tests.support.readme import ROOT, on_port, quick_start
from tongdao.agent.engine import SOCKET_DIR, wireguard_go_pids
from tongdao.auth.passwords import policy_problem
from tongdao.testing import netns

pytestmark = pytest.mark.root

NAMESPACES = ("td-pop", "td-laptop")
INTERFACES = ("tongdao0", *(f"wgt{port}" for port in range(51820, 51830)))
PASSWORDS = ("plum orchard lantern quietly", "granite kettle saffron window")
# Checked by the test between the README's proof (step 6) and its tear-down (step 7).
LOOK = """
ip netns exec td-pop wg show wgt51820 dump > "$QS_LOOK/pop.dump"
ip netns exec td-laptop wg show tongdao0 dump > "$QS_LOOK/laptop.dump"
wg pubkey < quickstart/laptop.key > "$QS_LOOK/laptop.pub"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def leftovers() -> list[str]:
    """What of the quick start's namespaces, daemons and sockets exists now."""
    found = [name for name in NAMESPACES if netns.list_namespaces(name)]
    for ifname in INTERFACES:
        if wireguard_go_pids(ifname):
            found.append(f"wireguard-go {ifname}")
        if (SOCKET_DIR / f"{ifname}.sock").exists():
            found.append(str(SOCKET_DIR / f"{ifname}.sock"))
    return found


def stop_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Signal the process's whole group (it and what it left in the background), then kill."""
    for signum in (sig, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signum)
        try:
            proc.wait(timeout=20)
            # Background children of a finished shell: the group may outlive its leader.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            return
        except subprocess.TimeoutExpired:
            continue


def remove_leftovers() -> None:
    for ifname in INTERFACES:
        for pid in wireguard_go_pids(ifname):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    for name in NAMESPACES:
        netns.delete_namespace(name)
    deadline = time.monotonic() + 5
    while any(wireguard_go_pids(i) for i in INTERFACES) and time.monotonic() < deadline:
        time.sleep(0.05)
    for ifname in INTERFACES:
        (SOCKET_DIR / f"{ifname}.sock").unlink(missing_ok=True)


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """A directory that looks like a fresh clone with ``make venv`` done: every top-level
    entry linked in, except what a run makes (``data``, ``quickstart``)."""
    if not (ROOT / ".venv" / "bin" / "tongdao").exists():
        need(".venv/bin/tongdao (make venv)")
    where = tmp_path / "tongdao"
    where.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in ("data", "quickstart", ".git"):
            (where / entry.name).symlink_to(entry)
    return where


@pytest.fixture
def quiet_host() -> Iterator[None]:
    """The quick start uses fixed names: refuse to run over a quick start someone left up,
    and remove whatever the run made, also when it failed."""
    for tool in ("wg-quick", "make", "python3"):
        if shutil.which(tool) is None:
            need(tool)
    busy = leftovers()
    if busy:
        pytest.fail(f"a quick start is up on this host already (remove it first): {busy}")
    try:
        yield
    finally:
        remove_leftovers()


def test_readme_quick_start_ends_in_a_working_tunnel(
    clone: Path, tmp_path: Path, quiet_host: None
) -> None:
    qs = quick_start()
    for password in PASSWORDS:
        assert policy_problem(password) is None
    port = free_port()
    look = tmp_path / "look"
    look.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "HOME": str(tmp_path / "home"),
        "LANG": "C.UTF-8",
        "QS_LOOK": str(look),
    }
    server_log = tmp_path / "terminal1.log"
    with server_log.open("wb") as out:
        server = subprocess.Popen(
            ["bash", "-euo", "pipefail", "-c", on_port(qs.server, port)],
            cwd=clone,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    steps = [on_port(qs.steps[0], port), *qs.steps[1:]]
    script = "\n".join([*steps[:-1], LOOK, steps[-1]]) + "\n"
    (clone / "terminal2.sh").write_text(script, encoding="utf-8")
    terminal2: subprocess.Popen[bytes] | None = None
    try:
        # "wait for `serving on http://127.0.0.1:8080`" (on this run's port).
        deadline = time.monotonic() + 120
        while f"serving on http://127.0.0.1:{port}" not in server_log.read_text(errors="replace"):
            assert server.poll() is None, server_log.read_text(errors="replace")
            assert time.monotonic() < deadline, server_log.read_text(errors="replace")
            time.sleep(0.2)
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
        started = time.monotonic()
        terminal2 = subprocess.Popen(
            ["bash", "-euo", "pipefail", "terminal2.sh"],
            cwd=clone,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        typed = "".join(p + "\n" for p in PASSWORDS).encode()
        out, _ = terminal2.communicate(typed, timeout=300)
        text = out.decode(errors="replace")
        took = time.monotonic() - started
        gateway_log = clone / "quickstart" / "gateway.log"
        logs = f"{text}\n--- gateway ---\n" + (
            gateway_log.read_text(errors="replace") if gateway_log.exists() else "(none)"
        )
        assert terminal2.returncode == 0, logs
        print(f"terminal 2 took {took:.1f} s")
        # The README's own proof: three answered pings and a handshake in `wg show`.
        assert re.search(r"\d+ packets transmitted, 3 received", text), logs
        assert "latest handshake:" in text, logs
        # An independent look at both ends: each holds the other as a peer with a handshake
        # and bytes received.
        laptop_key = (look / "laptop.pub").read_text().strip()
        pop_rows = [r.split("\t") for r in (look / "pop.dump").read_text().splitlines()]
        laptop_rows = [r.split("\t") for r in (look / "laptop.dump").read_text().splitlines()]
        pop_key = pop_rows[0][1]
        (pop_peer,) = [r for r in pop_rows[1:] if r[0] == laptop_key]
        (laptop_peer,) = laptop_rows[1:]
        assert laptop_rows[0][1] == laptop_key
        assert laptop_peer[0] == pop_key and laptop_peer[2] == "198.51.100.1:51820"
        for row in (pop_peer, laptop_peer):
            assert int(row[4]) > 0 and int(row[5]) > 0, row  # latest handshake, rx bytes
        # The tear-down took everything down.
        assert not leftovers(), leftovers()
    finally:
        if terminal2 is not None:
            stop_group(terminal2, signal.SIGTERM)
        stop_group(server, signal.SIGINT)  # Ctrl-C in terminal 1
    assert "Traceback" not in server_log.read_text(errors="replace")
