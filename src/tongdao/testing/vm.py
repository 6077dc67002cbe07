"""A throwaway VM that runs one command of this checkout under Debian's own kernel.

These hosts have no ``wireguard`` kernel module; Debian's stock kernel has it. ``run_in_vm``
boots that kernel (unpacked by ``scripts/install-system.sh`` under :data:`KERNEL_DIR`, never
installed on the host) in ``qemu-system-x86_64 -accel tcg`` with a small initramfs of our own:
busybox-static and the virtio/9p modules. The guest mounts the host's root filesystem
read-only over 9p (``-virtfs``) and makes it its root (``switch_root``), with fresh tmpfs on
``/tmp``, ``/run`` and ``/var/tmp``, so it runs this checkout's virtualenv Python and pytest
as they are on the host (mind their imports: under tcg each costs tens of times the host's).
A per-run directory is shared read-write at the same path on both sides: the command's
output and exit code come back through it, the boot's progress through the serial console
(``console.log`` there). The guest's kernel loads its modules from :data:`KERNEL_DIR` (its
``/proc/sys/kernel/modprobe`` is a wrapper calling ``modprobe -d``).

Bounded: qemu is killed when ``timeout`` passes and always on the way out; the VM has no
network card (its namespaces and veths are its own).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tongdao.errors import TongdaoError

KERNEL_DIR = Path(os.environ.get("TONGDAO_VM_KERNEL_DIR", "/var/cache/tongdao/vm-kernel"))
QEMU = "qemu-system-x86_64"
BUSYBOX = "/bin/busybox"
BOOT_MODULES = (
    "virtio_pci",
    "9pnet_virtio",
    "9p",
    "virtio-rng",
)
"""Loaded by the initramfs (with their dependencies, from modules.dep) to reach the host's
filesystem; everything else loads on demand from the shared module tree."""
PRELOAD_MODULES = ("wireguard", "veth", "nf_tables", "nf_conntrack", "tun")
"""Loaded before the command runs (a kernel engine probes ``/sys/module/wireguard``)."""
MARK = "tongdao-vm:"


class VmError(TongdaoError):
    """The VM could not be prepared, did not boot, or did not finish in time."""


@dataclass(frozen=True)
class GuestKernel:
    release: str
    root: Path  # the unpacked package: boot/vmlinuz-<release>, lib/modules/<release>/

    @property
    def vmlinuz(self) -> Path:
        return self.root / "boot" / f"vmlinuz-{self.release}"

    @property
    def modules(self) -> Path:
        return self.root / "lib" / "modules" / self.release


@dataclass(frozen=True)
class VmResult:
    returncode: int
    output: str  # the command's stdout and stderr, interleaved
    console: str  # the serial console: kernel messages and the init's marks
    boot_seconds: float  # qemu start → the command starting in the guest
    seconds: float  # qemu start → qemu gone


def find_kernel(base: Path = KERNEL_DIR) -> GuestKernel | None:
    """The newest unpacked guest kernel with a modules.dep, or None."""
    found: list[GuestKernel] = []
    for root in base.glob("*") if base.is_dir() else []:
        kernel = GuestKernel(root.name, root)
        if kernel.vmlinuz.is_file() and (kernel.modules / "modules.dep").is_file():
            found.append(kernel)
    # by version (6.1.0-10 after 6.1.0-9), not by name
    return max(found, key=lambda k: _version_key(k.release), default=None)


def _version_key(release: str) -> tuple[tuple[int, str], ...]:
    return tuple(
        (int(part), "") if part.isdigit() else (-1, part) for part in re.split(r"[.-]", release)
    )


def missing() -> list[str]:
    """What this host lacks to run a VM (empty when it can)."""
    lacks = []
    if shutil.which(QEMU) is None:
        lacks.append(f"{QEMU} (qemu-system-x86)")
    if not Path(BUSYBOX).is_file():
        lacks.append(f"{BUSYBOX} (busybox-static)")
    if shutil.which("modprobe") is None:
        lacks.append("modprobe (kmod)")
    if find_kernel() is None:
        lacks.append(f"a guest kernel under {KERNEL_DIR} (scripts/install-system.sh)")
    return lacks


def _module_closure(kernel: GuestKernel, names: Sequence[str]) -> list[str]:
    """Paths (relative to the modules dir) of ``names`` and their dependencies, load order."""
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in (kernel.modules / "modules.dep").read_text().splitlines():
        path, _, rest = line.partition(":")
        deps[path] = rest.split()
        stem = Path(path).name.split(".ko")[0]
        by_name[stem] = path
        by_name.setdefault(stem.replace("-", "_"), path)
    order: list[str] = []

    def visit(path: str) -> None:
        if path in order:
            return
        # modules.dep lists every dependency, deepest last
        for dep in reversed(deps.get(path, [])):
            visit(dep)
        order.append(path)

    for name in names:
        found = by_name.get(name) or by_name.get(name.replace("-", "_"))
        if found is None:
            raise VmError(f"module {name} is not in {kernel.modules}")
        visit(found)
    return order


def _cpio(entries: Sequence[tuple[str, int, bytes]]) -> bytes:
    """A newc cpio archive of (name, mode, data) entries (directories have empty data)."""
    out = io.BytesIO()

    def add(name: str, mode: int, data: bytes, ino: int) -> None:
        encoded = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0)
        out.write(b"070701" + b"".join(b"%08X" % f for f in fields) + encoded)
        out.write(b"\0" * (-(110 + len(encoded)) % 4))
        out.write(data)
        out.write(b"\0" * (-len(data) % 4))

    for ino, (name, mode, data) in enumerate(entries, start=1):
        add(name, mode, data, ino)
    add("TRAILER!!!", 0, b"", 0)
    return out.getvalue()


_INIT = """#!/bin/busybox sh
B=/bin/busybox
$B mount -t proc proc /proc
$B mount -t sysfs sysfs /sys
$B mount -t devtmpfs devtmpfs /dev
$B echo "{mark} init $($B cut -d' ' -f1 /proc/uptime)" > /dev/ttyS0
for m in {boot_modules}; do
  $B insmod /modules/$m || $B echo "{mark} insmod $m failed" > /dev/ttyS0
done
R=/newroot
$B mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=loose,ro hostroot $R || {{
  $B echo "{mark} cannot mount the host's root" > /dev/ttyS0; $B poweroff -f; }}
for d in tmp run var/tmp; do $B mount -t tmpfs -o mode=1777 tmpfs $R/$d; done
$B mount --move /proc $R/proc
$B mount --move /sys $R/sys
$B mount --move /dev $R/dev
$B mkdir -p $R/dev/pts $R/dev/shm $R{share}
$B mount -t devpts devpts $R/dev/pts
$B mount -t tmpfs -o mode=1777 tmpfs $R/dev/shm
$B ln -sf /proc/self/fd $R/dev/fd
$B ln -sf /proc/self/fd/0 $R/dev/stdin
$B ln -sf /proc/self/fd/1 $R/dev/stdout
$B ln -sf /proc/self/fd/2 $R/dev/stderr
$B mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 tdshare $R{share} || {{
  $B echo "{mark} cannot mount the share" > /dev/ttyS0; $B poweroff -f; }}
{work_mount}$B echo {share}/modprobe > $R/proc/sys/kernel/modprobe
$B hostname tongdao-vm
# the host's root becomes the root, for the kernel's own helpers (modprobe) too
exec $B switch_root $R /bin/busybox sh {share}/stage2.sh
"""

_STAGE2 = """B=/bin/busybox
$B echo "{mark} ready $($B cut -d' ' -f1 /proc/uptime)" > /dev/ttyS0
/bin/sh {share}/run.sh > {share}/output 2>&1
rc=$?
$B echo $rc > {share}/rc
$B echo "{mark} exit $rc $($B cut -d' ' -f1 /proc/uptime)" > /dev/ttyS0
$B sync
$B umount {share}
$B poweroff -f
"""


# The guest's own tmpfs hide the host's directories there: a working directory under one of
# them (a checkout cloned into /tmp, as a CI run may do) is shared with the guest apart.
_GUEST_TMPFS = (Path("/tmp"), Path("/run"), Path("/var/tmp"))  # noqa: S108 (paths, not files)
_WORK_MOUNT = """$B mkdir -p $R{work}
$B mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=loose,ro tdwork $R{work} || {{
  $B echo "{mark} cannot mount the working directory" > /dev/ttyS0; $B poweroff -f; }}
"""


def hidden_by_guest_tmpfs(path: Path) -> bool:
    """Whether ``path`` lies under a directory the guest mounts a fresh tmpfs on."""
    path = path.resolve()
    return any(path == top or top in path.parents for top in _GUEST_TMPFS)


def _initramfs(kernel: GuestKernel, share: Path, work: Path | None = None) -> bytes:
    modules = _module_closure(kernel, BOOT_MODULES)
    entries: list[tuple[str, int, bytes]] = [
        (d, stat.S_IFDIR | 0o755, b"") for d in ("bin", "dev", "proc", "sys", "newroot")
    ]
    entries.append(("modules", stat.S_IFDIR | 0o755, b""))
    entries.append(("bin/busybox", stat.S_IFREG | 0o755, Path(BUSYBOX).read_bytes()))
    for path in modules:
        data = (kernel.modules / path).read_bytes()
        entries.append((f"modules/{Path(path).name}", stat.S_IFREG | 0o644, data))
    init = _INIT.format(
        mark=MARK,
        boot_modules=" ".join(Path(p).name for p in modules),
        share=share,
        work_mount=_WORK_MOUNT.format(work=shlex.quote(str(work)), mark=MARK) if work else "",
    )
    entries.append(("init", stat.S_IFREG | 0o755, init.encode()))
    return _cpio(entries)


def _script(command: Sequence[str], cwd: Path, env: Mapping[str, str], kernel: GuestKernel) -> str:
    lines = ["set -u"]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in env.items()]
    modprobe = shutil.which("modprobe") or "/usr/sbin/modprobe"
    lines.append(
        f"{shlex.quote(modprobe)} -d {shlex.quote(str(kernel.root))} -a "
        + " ".join(PRELOAD_MODULES)
        + " || echo 'tongdao-vm: modprobe failed' >&2"
    )
    lines.append(f"cd {shlex.quote(str(cwd))} || exit 125")
    lines.append(shlex.join(command))
    return "\n".join(lines) + "\n"


def run_in_vm(
    command: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 300.0,
    memory_mb: int = 2048,
    cpus: int = 2,
    kernel: GuestKernel | None = None,
    keep: Path | None = None,
) -> VmResult:
    """Boot, run ``command`` (argv) in ``cwd`` as root with ``env`` (plus PATH, HOME, LANG),
    power off, and return its exit code and output. Raises :class:`VmError` when the VM
    cannot start, or the command did not finish within ``timeout`` seconds of qemu's start
    (qemu is killed). ``keep``: copy the run directory (console, output) there."""
    lacks = missing()
    if lacks:
        raise VmError(f"cannot run a VM here: missing {', '.join(lacks)}")
    kernel = kernel or find_kernel()
    assert kernel is not None
    base_env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    share = Path(tempfile.mkdtemp(prefix="tongdao-vm-"))
    share.chmod(0o755)
    try:
        (share / "stage2.sh").write_text(_STAGE2.format(mark=MARK, share=share))
        (share / "run.sh").write_text(
            _script(command, cwd or Path.cwd(), base_env | dict(env or {}), kernel)
        )
        wrapper = share / "modprobe"
        modprobe = shutil.which("modprobe") or "/usr/sbin/modprobe"
        wrapper.write_text(f'#!/bin/sh\nexec {modprobe} -d {kernel.root} "$@"\n')
        wrapper.chmod(0o755)
        work = (cwd or Path.cwd()).resolve()
        apart = work if hidden_by_guest_tmpfs(work) else None
        initrd = share / "initramfs.cpio"
        initrd.write_bytes(_initramfs(kernel, share, apart))
        console = share / "console.log"
        argv = [
            QEMU,
            *("-accel", "tcg", "-cpu", "max", "-smp", str(cpus), "-m", str(memory_mb)),
            *("-nodefaults", "-no-reboot", "-display", "none"),
            *("-serial", f"file:{console}"),
            *("-kernel", str(kernel.vmlinuz), "-initrd", str(initrd)),
            "-append",
            "console=ttyS0 panic=-1 quiet loglevel=3 mitigations=off",
            "-virtfs",
            "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
            "-virtfs",
            f"local,path={share},mount_tag=tdshare,security_model=none",
            *("-device", "virtio-rng-pci"),
        ]
        if apart is not None:
            argv += [
                "-virtfs",
                f"local,path={apart},mount_tag=tdwork,security_model=none,readonly=on,"
                "multidevs=remap",
            ]
        started = time.monotonic()
        with subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        ) as proc:
            try:
                qemu_output, _ = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill(proc)
                raise VmError(
                    f"the VM did not finish within {timeout:.0f} s; console:\n"
                    + _tail(console)
                    + "\noutput:\n"
                    + _tail(share / "output")
                ) from None
            finally:
                _kill(proc)
        seconds = time.monotonic() - started
        log = console.read_text(errors="replace") if console.exists() else ""
        rc_file = share / "rc"
        if not rc_file.exists():
            raise VmError(
                f"the VM stopped without running the command (qemu exited {proc.returncode}:"
                f" {qemu_output.decode(errors='replace')[-800:]}); console:\n{log[-3000:]}"
            )
        ready = re.search(rf"{MARK} ready ([\d.]+)", log)
        boot = float(ready.group(1)) if ready else float("nan")
        output = (share / "output").read_text(errors="replace")
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            for name in ("console.log", "output", "run.sh"):
                if (share / name).exists():
                    shutil.copy(share / name, keep / name)
        # the guest's uptime at "ready" plus qemu's own start-up (the time to its first
        # instruction is not in the guest's clock): measured to qemu start on the host side
        first = re.search(rf"{MARK} init ([\d.]+)", log)
        return VmResult(
            returncode=int(rc_file.read_text().strip() or "-1"),
            output=output,
            console=log,
            boot_seconds=boot if first else float("nan"),
            seconds=seconds,
        )
    finally:
        shutil.rmtree(share, ignore_errors=True)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _tail(path: Path, size: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return "(none)"
