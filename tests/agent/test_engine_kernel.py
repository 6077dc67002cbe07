"""The kernel engine's parts that need no kernel module: the engine choice (with a faked
probe), the module's build, and the netlink encoding (what is sent is what a read-back
parses to). The engine against the real module runs in a VM: test_engine_kernel_vm.py."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tongdao.agent import kernel
from tongdao.agent.engine import EngineError, PeerConfig, WireGuardGoEngine
from tongdao.agent.kernel import (
    CHUNK_BYTES,
    NLA_F_NESTED,
    KernelEngine,
    _device_state,
    _nla,
    _peer_chunks,
    choose_engine,
    kernel_build,
    kernel_module_available,
)
from tongdao.cli import app
from tongdao.testing.keys import keypair


def never() -> bool:
    raise AssertionError("the probe must not run")


def test_auto_takes_the_kernel_engine_where_the_module_is() -> None:
    engine = choose_engine("auto", "td-x", probe=lambda: True)
    assert isinstance(engine, KernelEngine) and engine.netns == "td-x"
    assert isinstance(choose_engine("auto", probe=lambda: False), WireGuardGoEngine)


def test_an_explicit_choice_is_kept_or_refused() -> None:
    assert isinstance(choose_engine("wireguard-go", probe=never), WireGuardGoEngine)
    assert isinstance(choose_engine("kernel", probe=lambda: True), KernelEngine)
    with pytest.raises(EngineError, match="wireguard module"):
        choose_engine("kernel", probe=lambda: False)
    with pytest.raises(ValueError, match="auto, kernel, wireguard-go"):
        choose_engine("userspace", probe=never)


def test_the_probe_and_the_build_read_the_module(tmp_path: Path) -> None:
    module = tmp_path / "wireguard"
    module.mkdir()
    (module / "version").write_text("1.0.0\n")
    assert kernel_module_available(module)
    build = kernel_build(module)
    assert (build.engine, build.version, build.source) == (
        "kernel",
        "1.0.0",
        str(module / "version"),
    )
    assert build.outdated is False  # the minimum version is wireguard-go's
    assert build.describe().startswith("kernel 1.0.0 (wireguard module, Linux ")


def test_the_cli_takes_an_engine_choice() -> None:
    runner = CliRunner()
    for command in (["gateway", "run", "--help"], ["connector", "run", "--help"]):
        done = runner.invoke(app, command)
        assert done.exit_code == 0 and "--engine" in done.output
    done = runner.invoke(
        app,
        [
            *("gateway", "run", "--server", "http://127.0.0.1:9", "--state-dir", "/nonexistent"),
            *("--engine", "userspace"),
        ],
    )
    assert done.exit_code == 2 and "userspace" in done.output


def test_what_is_sent_reads_back_as_it_was_set() -> None:
    psk = base64.b64encode(os.urandom(32)).decode()
    peers = [
        PeerConfig(
            keypair()[1],
            (f"100.64.{i // 256}.{i % 256}/32", f"fd00::{i + 1:x}/128"),
            "[fd00::1]:51820" if i % 2 else "198.51.100.2:51820",
            25 if i % 3 else None,
            psk if i == 7 else None,
        )
        for i in range(3_000)
    ]
    chunks = _peer_chunks(peers, [])
    assert len(chunks) > 1 and all(len(c) <= CHUNK_BYTES for c in chunks)
    # a get dump carries the peers in the same attributes (and more: counters, handshake)
    replies = [memoryview(_nla(8 | NLA_F_NESTED, chunk)) for chunk in chunks]
    state = _device_state("wgt1", replies)
    assert list(state.peers) == [p.public_key for p in peers]
    for cfg in peers[:10]:
        got = state.peers[cfg.public_key]
        assert got.allowed_ips == cfg.allowed_ips and got.endpoint == cfg.endpoint
        assert got.keepalive == cfg.keepalive and got.has_preshared_key == (cfg is peers[7])


def test_a_peer_continued_in_the_next_message_is_one_peer() -> None:
    key = keypair()[1]
    first = _peer_chunks([PeerConfig(key, ("100.64.0.1/32",), "198.51.100.2:1")], [])
    second = _peer_chunks([PeerConfig(key, ("fd00::1/128",), new=True)], [])
    replies = [memoryview(_nla(8 | NLA_F_NESTED, c)) for c in (*first, *second)]
    [(got_key, got)] = _device_state("wgt1", replies).peers.items()
    assert got_key == key and got.allowed_ips == ("100.64.0.1/32", "fd00::1/128")
    assert got.endpoint == "198.51.100.2:1"


def test_a_peer_with_more_allowed_ips_than_one_attribute_holds_is_split() -> None:
    """Netlink attribute lengths are 16-bit: 2,400 IPv4 and 1,600 IPv6 prefixes (about 115 KB)
    go on in further parts naming the same key, which read back as the one peer."""
    key = keypair()[1]
    prefixes = (
        *(f"100.{64 + i // 256}.{i % 256}.0/24" for i in range(2_400)),
        *(f"fd00:{i + 1:x}::/64" for i in range(1_600)),
    )
    chunks = _peer_chunks([PeerConfig(key, prefixes, "198.51.100.2:1")], [])
    assert len(chunks) > 1 and all(len(c) <= 65_535 for c in chunks)
    replies = [memoryview(_nla(8 | NLA_F_NESTED, c)) for c in chunks]
    [(got_key, got)] = _device_state("wgt1", replies).peers.items()
    assert got_key == key and got.allowed_ips == prefixes
    assert got.endpoint == "198.51.100.2:1"


def test_bad_changes_are_refused_before_a_socket_is_opened(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_socket(*_a: object, **_k: object) -> None:
        raise AssertionError("nothing may be sent")

    monkeypatch.setattr(kernel, "_Genl", no_socket)
    engine = KernelEngine()
    key = keypair()[1]
    with pytest.raises(ValueError, match="twice"):
        engine.set_peers("wgt1", [PeerConfig(key, ())], removals=[key])
    with pytest.raises(ValueError, match="twice"):
        engine.set_peers("wgt1", [PeerConfig(key, ()), PeerConfig(key, ())])
    with pytest.raises(ValueError, match="base64"):
        engine.set_peers("wgt1", [PeerConfig(key, ()), PeerConfig("n*pe", ())])
    with pytest.raises(ValueError, match="CIDR"):
        engine.set_peers("wgt1", [PeerConfig(key, ("100.64.0.0/33",))])
    with pytest.raises(ValueError, match="IP address"):
        engine.set_peers("wgt1", [PeerConfig(key, (), "example.com:51820")])
    with pytest.raises(ValueError, match="listen port"):
        engine.configure("wgt1", listen_port=70000)
    with pytest.raises(ValueError, match="interface names"):
        engine.get("a-name-far-too-long")
    engine.set_peers("wgt1")  # nothing to change: nothing sent


def test_a_working_directory_under_the_guests_tmpfs_is_shared_apart() -> None:
    """A checkout cloned into /tmp (a CI run's) is hidden by the guest's own /tmp unless it
    is shared with the guest apart (the VM test failed with "can't cd to /tmp/..." before)."""
    from tongdao.testing.vm import hidden_by_guest_tmpfs

    assert hidden_by_guest_tmpfs(Path("/tmp/ci19"))
    assert hidden_by_guest_tmpfs(Path("/var/tmp/x/y"))
    assert hidden_by_guest_tmpfs(Path("/run/user"))
    assert not hidden_by_guest_tmpfs(Path("/work/main"))
    assert not hidden_by_guest_tmpfs(Path("/tmpfoo"))


def test_the_newest_guest_kernel_is_chosen_by_version(tmp_path: Path) -> None:
    from tongdao.testing.vm import find_kernel

    for release in ("6.1.0-9-amd64", "6.1.0-10-amd64", "6.1.0-11-amd64.part"):
        (tmp_path / release / "boot").mkdir(parents=True)
        (tmp_path / release / "boot" / f"vmlinuz-{release}").touch()
        (tmp_path / release / "lib" / "modules" / release).mkdir(parents=True)
        (tmp_path / release / "lib" / "modules" / release / "modules.dep").touch()
    (tmp_path / "6.1.0-11-amd64.part" / "boot" / "vmlinuz-6.1.0-11-amd64.part").unlink()
    kernel = find_kernel(tmp_path)
    assert kernel is not None and kernel.release == "6.1.0-10-amd64"
