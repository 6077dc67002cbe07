"""The "domains" benchmark (issue 12, item 2): a tenant's routing domain on the PoP, side by side.

Root only (without root or the tools the report says ``skipped``). Layouts, built with the
agent's own pieces (``WireGuardGoEngine``, ``agent.host``, ``agent.firewall``):

- **today**: every tenant interface in the PoP's one namespace, with ``ip rule iif IF lookup
  TABLE``, its table, and the one ``inet tongdao`` table (conntrack zone per interface,
  stateful default-deny chain per tenant), exactly as ``Applier`` leaves it.
- **netns**: a network namespace per tenant. wireguard-go is started in the PoP's (underlay)
  namespace, so its UDP socket stays there, and its interface is moved into the tenant's
  namespace: the tenant's routes go in that namespace's main table (no ``ip rule``), its
  firewall is the same compiled table minus the zone chains (conntrack is per namespace), and
  the underlay keeps one small table that leaves the tunnels' own UDP untracked, as today's
  table does.
- **vrf**: a VRF device per tenant. Probed (``ip link add type vrf``); measured only where the
  kernel has VRF (``CONFIG_NET_VRF``), otherwise reported as unavailable with the reason.

Phases, each bounded in count and time (``phase_seconds``), every namespace, link and daemon
torn down on the way out (``tongdao.testing.netns.Topology``), test addresses only:

1. **throughput**: iperf3 TCP device → PoP → connector → HQ host through one tenant with a
   ``policy_rules`` policy, one path per layout, rounds alternating the order; Mbit/s per
   layout and each round's ratio to today's layout (paired in time).
2. **tenants**: ``existing + add_samples`` tenants added one by one with real wireguard-go
   daemons, timed by phase (daemon, domain, routing, firewall); the add cost near 0 tenants
   (the first ``add_samples`` adds) and at ``existing``; the rules, routes, nft objects per
   tenant (counted at the end, against the empty PoP); the daemons' RSS and PSS; the machine's
   memory per tenant, daemons included (``/proc/meminfo`` deltas).
3. **memory**: ``memory_tenants`` tenants' routing domains without wireguard-go: a persistent
   TUN device (what wireguard-go creates) stands in for each tenant interface, with the same
   addresses, routes, rules and firewall; kernel memory per tenant from ``/proc/meminfo``
   deltas (MemAvailable, Slab, Percpu, …), taken once built and again when torn down.
   wireguard-go's own memory is per interface in every layout: phase 2 measures it.

Each phase records how busy the machine was with other work (the wireguard-go daemons of the
phase are counted as ours, unlike ``bench.machine.CpuWatch``).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.dataplane import (
    HQ,
    SITE_V4,
    Path4,
    engine_info,
    iperf,
    median,
    missing_tools,
    ratio,
    sh,
    tcp_reaches,
    wait_for,
    wire_path,
)
from bench.machine import _system_cpu_s, _tree_cpu_s, machine_info

LAYOUTS = ("today", "netns", "vrf")
UNDERLAY_TABLE = "tongdao_underlay"


@dataclass(frozen=True)
class DomainsConfig:
    iperf_seconds: int  # 1: one iperf3 run
    iperf_rounds: int  # 1: rounds, each one run per layout (order alternating)
    existing: int  # 2: tenants on the PoP before the second set of timed adds
    add_samples: int  # 2: timed adds at each load point
    memory_tenants: int  # 3: routing domains built for the memory figure
    policy_rules: int  # 1-3: rules in each tenant's policy
    phase_seconds: float  # each phase stops adding past this (marked truncated)


FULL = DomainsConfig(
    iperf_seconds=5,
    iperf_rounds=5,
    existing=200,
    add_samples=15,
    memory_tenants=1000,
    policy_rules=20,
    phase_seconds=420.0,
)
QUICK = DomainsConfig(
    iperf_seconds=1,
    iperf_rounds=1,
    existing=4,
    add_samples=2,
    memory_tenants=10,
    policy_rules=3,
    phase_seconds=60.0,
)


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


# --- the kernel ----------------------------------------------------------------------------
def kernel_config(*names: str) -> dict[str, str | None]:
    """``CONFIG_*`` values from ``/proc/config.gz`` (None: not there, or no config exposed)."""
    import gzip

    found: dict[str, str | None] = dict.fromkeys(names)
    try:
        text = gzip.decompress(Path("/proc/config.gz").read_bytes()).decode()
    except OSError:
        return found
    for line in text.splitlines():
        for name in names:
            if line.startswith(f"{name}="):
                found[name] = line.split("=", 1)[1]
            elif line == f"# {name} is not set":
                found[name] = "not set"
    return found


def probe_vrf() -> dict[str, Any]:
    """Can this kernel make a VRF device? Tried in a scratch namespace, never on the host."""
    from tongdao.testing import netns

    out: dict[str, Any] = {
        "kernel": os.uname().release,
        "config": kernel_config("CONFIG_NET_VRF", "CONFIG_MODULES", "CONFIG_NET_L3_MASTER_DEV"),
        "module_dir_present": Path(f"/lib/modules/{os.uname().release}").is_dir(),
        "vrf_in_sys_module": Path("/sys/module/vrf").exists(),
    }
    with netns.Topology() as topo:
        ns = topo.namespace()
        done = subprocess.run(
            ["ip", "-n", ns, "link", "add", "tdvrf0", "type", "vrf", "table", "100"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    out["ip_link_add_type_vrf"] = (
        "ok" if done.returncode == 0 else f"exit {done.returncode}: {done.stderr.strip()}"
    )
    out["available"] = done.returncode == 0
    return out


# --- host settings -------------------------------------------------------------------------
INOTIFY_INSTANCES = Path("/proc/sys/fs/inotify/max_user_instances")


@contextlib.contextmanager
def inotify_headroom(daemons: int, record: dict[str, Any]) -> Iterator[None]:
    """Every wireguard-go daemon holds one inotify instance (it watches its UAPI socket), and
    root may have ``fs.inotify.max_user_instances`` of them: 128 by default, so the 129th
    daemon on a host fails to start. For the run the limit is raised by ``daemons`` (the
    headroom other work had is kept) and put back afterwards."""
    was = int(INOTIFY_INSTANCES.read_text())
    record["inotify_max_user_instances"] = {"was": was, "raised_to": was + daemons}
    INOTIFY_INSTANCES.write_text(f"{was + daemons}\n")
    try:
        yield
    finally:
        INOTIFY_INSTANCES.write_text(f"{was}\n")
        record["inotify_max_user_instances"]["restored"] = int(INOTIFY_INSTANCES.read_text()) == was


# --- machine -------------------------------------------------------------------------------
MEMINFO_KEYS = (
    "MemFree",
    "MemAvailable",
    "Slab",
    "SReclaimable",
    "SUnreclaim",
    "Percpu",
    "KernelStack",
    "PageTables",
    "VmallocUsed",
    "AnonPages",
)


# The kernel's own memory (what a namespace, a link, a rule or an nft object takes).
KERNEL_KEYS = ("Slab", "Percpu", "KernelStack", "PageTables", "VmallocUsed")


def meminfo() -> dict[str, int]:
    """The fields of ``/proc/meminfo`` this benchmark compares, in KiB."""
    values: dict[str, int] = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in MEMINFO_KEYS:
            values[key] = int(rest.split()[0])
    return values


def settled_meminfo(seconds: float = 2.0) -> dict[str, int]:
    """meminfo after a pause (namespaces are freed by a kernel worker, after RCU)."""
    time.sleep(seconds)
    return meminfo()


def memory_delta(
    before: dict[str, int], after: dict[str, int], tenants: int, sign: int = 1
) -> dict[str, Any]:
    """KiB per tenant: what the kernel took (``sign`` -1 when ``after`` is the torn-down
    state); ``*_drop``: the fall in MemFree/MemAvailable (noisy on a shared machine);
    ``kernel``: the sum of ``KERNEL_KEYS``, the steadier figure."""
    per: dict[str, Any] = {}
    for key in MEMINFO_KEYS:
        if key in before and key in after:
            delta = (after[key] - before[key]) * sign
            if key in ("MemFree", "MemAvailable"):
                key, delta = f"{key}_drop", -delta
            per[key] = round(delta / tenants, 1) if tenants else None
    kernel = [k for k in KERNEL_KEYS if k in before and k in after]
    total = sum((after[k] - before[k]) * sign for k in kernel)
    per["kernel"] = round(total / tenants, 1) if tenants else None
    return {"kib_per_tenant": per, "tenants": tenants}


def daemon_pids(ifnames: Iterable[str]) -> dict[str, int]:
    """ifname → pid of the wireguard-go daemons serving these interfaces (one /proc scan)."""
    wanted = {name.encode() for name in ifnames}
    found: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = [a for a in (entry / "cmdline").read_bytes().split(b"\0") if a]
        except OSError:
            continue
        if len(argv) >= 2 and os.path.basename(argv[0]) == b"wireguard-go" and argv[-1] in wanted:
            found[argv[-1].decode()] = int(entry.name)
    return found


def process_cpu_s(pid: int) -> float:
    try:
        parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def process_memory_kib(pid: int) -> dict[str, int]:
    """Rss and Pss (KiB) of one process (``smaps_rollup``)."""
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("Rss", "Pss"):
                out[key] = int(rest.split()[0])
    except OSError:
        pass
    return out


def _reaped_children_cpu_s() -> float:
    """CPU seconds of this process's children that have exited and been waited for."""
    times = os.times()
    return times.children_user + times.children_system


class LoadWatch:
    """How busy the machine was during a phase: this process's tree (iperf3, ip, nft) and the
    phase's wireguard-go daemons (which leave our tree) are ours; the rest is other work."""

    def __init__(self, ifnames: Callable[[], Iterable[str]]) -> None:
        self.ifnames = ifnames
        self.wall = time.monotonic()
        self.system = _system_cpu_s()[0]
        self.tree = _tree_cpu_s(os.getpid())
        self.reaped = _reaped_children_cpu_s()
        self.daemons = {pid: process_cpu_s(pid) for pid in daemon_pids(ifnames()).values()}

    def result(self) -> dict[str, Any]:
        wall = time.monotonic() - self.wall
        busy = _system_cpu_s()[0] - self.system
        tree = _tree_cpu_s(os.getpid())
        own = sum(cpu - self.tree.get(pid, 0.0) for pid, cpu in tree.items())
        own += _reaped_children_cpu_s() - self.reaped  # iperf3, ip, nft: gone by now
        daemons = sum(
            process_cpu_s(pid) - self.daemons.get(pid, 0.0)
            for pid in daemon_pids(self.ifnames()).values()
        )
        other = max(0.0, busy - own - daemons)
        capacity = wall * len(os.sched_getaffinity(0))
        return {
            "wall_s": round(wall, 2),
            "cpu_s_busy_all": round(busy, 2),
            "cpu_s_bench": round(own, 2),
            "cpu_s_wireguard_go": round(daemons, 2),
            "cpu_s_other_work": round(other, 2),
            "machine_busy_pct": round(100 * busy / capacity, 1) if capacity else None,
            "other_work_pct": round(100 * other / capacity, 1) if capacity else None,
            "loadavg": [round(x, 2) for x in os.getloadavg()],
        }


# --- tenants -------------------------------------------------------------------------------
def filler_policy(rules: int, src: str, allow: Any | None = None) -> tuple[Any, ...]:
    """``rules`` allow rules of the tenant's own device to addresses in 198.19/16 (never
    routed), the last one ``allow`` when given (the flow the throughput phase sends)."""
    from tongdao.gateway.desired import PolicyRule

    out = [
        PolicyRule(
            src=(src,),
            dst=(f"198.19.{i // 250}.{i % 250 + 1}/32",),
            protocol="tcp",
            ports=(str(10000 + i),),
        )
        for i in range(rules - (1 if allow is not None else 0))
    ]
    if allow is not None:
        out.append(allow)
    return tuple(out)


def make_tenant(index: int, ifname: str, port: int, policy_rules: int) -> Any:
    """Tenant ``index``: a /24 of 100.64/10 and a /64 of fd00::/8, a policy of its own."""
    from tongdao.gateway.desired import TenantInterface

    v4 = f"100.{64 + index // 256}.{index % 256}"
    v6 = f"fd00:d0:0:{index:x}"
    return TenantInterface(
        tenant_id=uuid.uuid4(),
        ifname=ifname,
        listen_port=port,
        table=port,
        address_v4=f"{v4}.1/24",
        address_v6=f"{v6}::1/64",
        pools=(f"{v4}.0/24", f"{v6}::/64"),
        policy=filler_policy(policy_rules, f"{v4}.2/32"),
    )


def routes_of(tenant: Any) -> tuple[str, ...]:
    """What the agent's plan routes into a tenant's interface (``InterfacePlan.routes``)."""
    from tongdao.agent.planner import InterfacePlan

    return InterfacePlan(tenant, False, False, False, (), ()).routes


def tenant_only_ruleset(tenant: Any) -> dict[str, Any]:
    """The agent's compiled table for one tenant, minus the conntrack-zone chains: in a
    namespace of its own a tenant has its own connection tracking, and its tunnel's UDP is
    not there (it stays in the underlay)."""
    from tongdao.agent import firewall

    zone_chains = {"zone_in", "zone_out"}
    kept = []
    for command in firewall.compile_ruleset([tenant])["nftables"]:
        body = command.get("add", {})
        if body.get("chain", {}).get("name") in zone_chains:
            continue
        if body.get("rule", {}).get("chain") in zone_chains:
            continue
        kept.append(command)
    return {"nftables": kept}


def underlay_ruleset() -> str:
    """The netns layout's one underlay table: the tunnels' UDP untracked, as in today's."""
    return (
        f"table inet {UNDERLAY_TABLE} {{\n"
        "  set ports { type inet_service; }\n"
        "  chain raw_in { type filter hook prerouting priority raw; policy accept;\n"
        "    udp dport @ports notrack accept\n  }\n"
        "  chain raw_out { type filter hook output priority raw; policy accept;\n"
        "    udp sport @ports notrack accept\n  }\n"
        "}\n"
    )


def nft(ns: str, script: str) -> None:
    sh(["nft", "-f", "-"], netns=ns, input_text=script, timeout=120)


class Layout:
    """A PoP's underlay namespace and its tenants, in one layout."""

    name = ""

    def __init__(self, topo: Any, underlay: str) -> None:
        from tongdao.agent import host
        from tongdao.agent.engine import WireGuardGoEngine

        self.topo = topo
        self.underlay = underlay
        self.engine = WireGuardGoEngine()
        self.tenants: list[Any] = []
        self.domains: dict[str, str] = {}  # ifname → namespace holding it
        host.enable_forwarding(underlay)

    def namespaces(self) -> list[str]:
        return [self.underlay, *sorted(set(self.domains.values()) - {self.underlay})]

    def start_interface(self, tenant: Any, engine: bool) -> None:
        """The tenant's interface in the underlay: wireguard-go (key, port) or a bare TUN."""
        from tongdao.agent.engine import generate_private_key

        if engine:
            self.engine.ensure_interface(tenant.ifname, self.underlay)
            self.engine.configure(
                tenant.ifname,
                private_key=generate_private_key(),
                listen_port=tenant.listen_port,
            )
        else:
            sh(["ip", "-n", self.underlay, "tuntap", "add", "dev", tenant.ifname, "mode", "tun"])

    def add(self, tenant: Any, *, engine: bool = True) -> dict[str, float]:
        raise NotImplementedError

    def build_bulk(self, tenants: list[Any]) -> None:
        """Many TUN-backed tenants at once (the memory phase): the same end state as adding
        them one by one, in fewer commands."""
        raise NotImplementedError


class Today(Layout):
    name = "today"

    def __init__(self, topo: Any, underlay: str) -> None:
        super().__init__(topo, underlay)
        self.installed = False

    def add(self, tenant: Any, *, engine: bool = True) -> dict[str, float]:
        from tongdao.agent import firewall, host

        t0 = time.perf_counter()
        self.start_interface(tenant, engine)
        t1 = time.perf_counter()
        self.tenants.append(tenant)
        self.domains[tenant.ifname] = self.underlay
        ns, name = self.underlay, tenant.ifname
        host.link_up(name, ns)
        host.ensure_addresses(name, [tenant.address_v4, tenant.address_v6], ns)
        host.ensure_table(name, tenant.table, routes_of(tenant), ns)
        host.ensure_rules({t.ifname: t.table for t in self.tenants}, ns)
        t2 = time.perf_counter()
        ruleset = firewall.compile_ruleset(self.tenants)
        if self.installed:
            firewall.apply_ruleset(ruleset, ns)
        else:
            firewall.install_ruleset(ruleset, ns)
            self.installed = True
        t3 = time.perf_counter()
        return {
            "interface_ms": ms(t1 - t0),
            "domain_ms": 0.0,
            "routing_ms": ms(t2 - t1),
            "firewall_ms": ms(t3 - t2),
            "total_ms": ms(t3 - t0),
        }

    def build_bulk(self, tenants: list[Any]) -> None:
        from tongdao.agent import firewall, host

        ns = self.underlay
        commands: list[str] = []
        for t in tenants:
            commands.append(f"tuntap add dev {t.ifname} mode tun")
            commands.append(f"link set dev {t.ifname} up")
            commands.append(f"address add {t.address_v4} dev {t.ifname}")
            commands.append(f"address add {t.address_v6} dev {t.ifname} nodad")
            commands += [f"route replace {p} dev {t.ifname} table {t.table}" for p in routes_of(t)]
        sh(["ip", "-n", ns, "-batch", "-"], input_text="\n".join(commands) + "\n", timeout=600)
        self.tenants += tenants
        for t in tenants:
            self.domains[t.ifname] = ns
        host.ensure_rules({t.ifname: t.table for t in self.tenants}, ns)
        firewall.install_ruleset(firewall.compile_ruleset(self.tenants), ns)
        self.installed = True


class PerNamespace(Layout):
    name = "netns"

    def __init__(self, topo: Any, underlay: str) -> None:
        super().__init__(topo, underlay)
        nft(underlay, underlay_ruleset())

    def add(self, tenant: Any, *, engine: bool = True) -> dict[str, float]:
        from tongdao.agent import firewall, host
        from tongdao.gateway.desired import MAIN_TABLE

        t0 = time.perf_counter()
        self.start_interface(tenant, engine)
        t1 = time.perf_counter()
        domain = self.topo.namespace()
        host.enable_forwarding(domain)
        sh(["ip", "-n", self.underlay, "link", "set", "dev", tenant.ifname, "netns", domain])
        t2 = time.perf_counter()
        self.tenants.append(tenant)
        self.domains[tenant.ifname] = domain
        name = tenant.ifname
        host.link_up(name, domain)
        host.ensure_addresses(name, [tenant.address_v4, tenant.address_v6], domain)
        host.ensure_table(name, MAIN_TABLE, routes_of(tenant), domain, exclusive=False)
        t3 = time.perf_counter()
        firewall.install_ruleset(tenant_only_ruleset(tenant), domain)
        nft(
            self.underlay,
            f"add element inet {UNDERLAY_TABLE} ports {{ {tenant.listen_port} }}\n",
        )
        t4 = time.perf_counter()
        return {
            "interface_ms": ms(t1 - t0),
            "domain_ms": ms(t2 - t1),
            "routing_ms": ms(t3 - t2),
            "firewall_ms": ms(t4 - t3),
            "total_ms": ms(t4 - t0),
        }

    def build_bulk(self, tenants: list[Any]) -> None:
        from tongdao.agent import firewall, host

        domains = [self.topo.namespace() for _ in tenants]
        commands: list[str] = []
        for t, domain in zip(tenants, domains, strict=True):
            commands.append(f"tuntap add dev {t.ifname} mode tun")
            commands.append(f"link set dev {t.ifname} netns {domain}")
        sh(
            ["ip", "-n", self.underlay, "-batch", "-"],
            input_text="\n".join(commands) + "\n",
            timeout=600,
        )
        for t, domain in zip(tenants, domains, strict=True):
            host.enable_forwarding(domain)
            lines = [
                f"link set dev {t.ifname} up",
                f"address add {t.address_v4} dev {t.ifname}",
                f"address add {t.address_v6} dev {t.ifname} nodad",
            ]
            lines += [f"route replace {p} dev {t.ifname}" for p in routes_of(t)]
            sh(["ip", "-n", domain, "-batch", "-"], input_text="\n".join(lines) + "\n")
            firewall.install_ruleset(tenant_only_ruleset(t), domain)
            self.tenants.append(t)
            self.domains[t.ifname] = domain
        ports = ", ".join(str(t.listen_port) for t in tenants)
        nft(self.underlay, f"add element inet {UNDERLAY_TABLE} ports {{ {ports} }}\n")


BUILDERS: dict[str, type[Layout]] = {"today": Today, "netns": PerNamespace}


# --- counting ------------------------------------------------------------------------------
# A namespace's own rules (local, main, default): every namespace has them.
DEFAULT_RULE_PRIORITIES = (0, 32766, 32767)


def count_objects(namespaces: Iterable[str]) -> dict[str, int]:
    """ip rules, routes (every table but local) and nftables objects in these namespaces;
    ``*_configured``: without each namespace's default rules and the routes the kernel adds
    for an interface's own addresses."""
    counts = {
        "ip_rules": 0,
        "ip_rules_configured": 0,
        "routes": 0,
        "routes_configured": 0,
        "nft_tables": 0,
        "nft_chains": 0,
        "nft_rules": 0,
        "nft_sets": 0,
        "nft_set_elements": 0,
    }
    import json

    for ns in namespaces:
        for family in ("-4", "-6"):
            rules = json.loads(sh(["ip", "-n", ns, "-json", family, "rule", "show"]) or "[]")
            counts["ip_rules"] += len(rules)
            counts["ip_rules_configured"] += sum(
                1 for r in rules if r.get("priority") not in DEFAULT_RULE_PRIORITIES
            )
            routes = json.loads(
                sh(["ip", "-n", ns, "-json", family, "route", "show", "table", "all"]) or "[]"
            )
            routes = [r for r in routes if r.get("table") != "local"]
            counts["routes"] += len(routes)
            counts["routes_configured"] += sum(1 for r in routes if r.get("protocol") != "kernel")
        listed = json.loads(sh(["nft", "-j", "list", "ruleset"], netns=ns) or "{}")
        for item in listed.get("nftables", []):
            for kind in ("table", "chain", "rule", "set", "map"):
                if kind in item:
                    key = "nft_sets" if kind == "map" else f"nft_{kind}s"
                    counts[key] += 1
                    counts["nft_set_elements"] += len(item[kind].get("elem", []))
    return counts


def per_tenant(counts: dict[str, int], empty: dict[str, int], tenants: int) -> dict[str, float]:
    return {k: round((counts[k] - empty.get(k, 0)) / tenants, 2) for k in counts}


# --- 1. throughput -------------------------------------------------------------------------
def build_path(topo: Any, layout_name: str, policy_rules: int) -> tuple[Path4, dict[str, Any]]:
    """device → PoP (one tenant, in ``layout_name``) → connector → HQ host, hand-wired with
    the agent's pieces on the PoP and wg/ip on the ends (like ``bench.dataplane``)."""
    from tongdao.agent.engine import PeerConfig
    from tongdao.gateway.desired import Peer, PolicyRule
    from tongdao.testing import netns
    from tongdao.testing.keys import keypair

    path = wire_path(topo)
    dev_k, conn_k = keypair(), keypair()
    pop_if, conn_if, dev_if = topo.wg_ifname(), topo.wg_ifname(), topo.wg_ifname()
    port = int(pop_if.removeprefix("wgt"))
    dev_ip, conn_ip = "100.100.0.2", "100.100.0.3"
    allow = PolicyRule(src=(f"{dev_ip}/32",), dst=(SITE_V4,), protocol="tcp", ports=("5201",))
    tenant = make_tenant(0, pop_if, port, 1).model_copy(
        update={
            "address_v4": "100.100.0.1/24",
            "address_v6": "fd00:d0::1/64",
            "pools": ("100.100.0.0/24", "fd00:d0::/64"),
            "peers": (
                Peer(public_key=dev_k[1], kind="device", ref="dev", allowed_ips=(f"{dev_ip}/32",)),
                Peer(
                    public_key=conn_k[1],
                    kind="site",
                    ref="hq",
                    allowed_ips=(SITE_V4, f"{conn_ip}/32"),
                ),
            ),
            "policy": filler_policy(policy_rules, f"{dev_ip}/32", allow),
        }
    )
    pop = BUILDERS[layout_name](topo, path.pop)
    pop.add(tenant)
    pop.engine.set_peers(pop_if, [PeerConfig.from_desired(p, new=True) for p in tenant.peers])
    pop_public = pop.engine.get(pop_if).public_key
    # connector
    netns.start_wireguard_go(path.conn, conn_if)
    sh(
        [
            "wg", "set", conn_if, "private-key", "/dev/stdin", "listen-port", "51820",
            "peer", pop_public, "endpoint", f"198.51.100.1:{port}",
            "allowed-ips", "100.100.0.0/24", "persistent-keepalive", "25",
        ],
        netns=path.conn,
        input_text=conn_k[0] + "\n",
    )  # fmt: skip
    netns.add_address(path.conn, conn_if, f"{conn_ip}/24")
    sh(["ip", "-n", path.conn, "link", "set", "dev", conn_if, "up"])
    netns.set_forwarding(path.conn)
    conf = (
        "[Interface]\n"
        f"Address = {dev_ip}/32\n"
        "[Peer]\n"
        f"PublicKey = {pop_public}\n"
        f"Endpoint = 198.51.100.1:{port}\n"
        f"AllowedIPs = 100.100.0.0/24, {SITE_V4}\n"
        "PersistentKeepalive = 25\n"
    )
    netns.bring_up_client(path.dev, dev_if, conf, dev_k[0])
    domain = pop.domains[pop_if]
    info = {
        "pop_interface": pop_if,
        "pop_interface_namespace": "underlay" if domain == path.pop else "tenant",
        "pop_interface_mtu": int(
            sh(["cat", f"/sys/class/net/{pop_if}/mtu"], netns=domain).strip() or 0
        ),
        "pop_interface_offloads": offloads(domain, pop_if),
        "tunnel_udp_socket_in_underlay": f":{port} " in sh(["ss", "-Huan"], netns=path.pop),
    }
    return path, info


def offloads(ns: str, ifname: str) -> dict[str, str]:
    wanted = ("tcp-segmentation-offload", "generic-segmentation-offload", "tx-checksumming")
    out: dict[str, str] = {}
    for line in sh(["ethtool", "-k", ifname], netns=ns).splitlines():
        key, _, value = line.strip().partition(":")
        if key in wanted:
            out[key] = value.strip()
    return out


def bench_throughput(cfg: DomainsConfig, layouts: list[str], out: dict[str, Any]) -> None:
    from tongdao.testing import netns

    runs: list[dict[str, Any]] = []
    out["runs"] = runs
    with netns.Topology() as topo:
        paths: dict[str, Path4] = {}
        out["paths"] = {}
        for name in layouts:
            paths[name], out["paths"][name] = build_path(topo, name, cfg.policy_rules)
        for name, path in paths.items():
            wait_for(lambda p=path: tcp_reaches(p), 60, f"HQ {HQ} through {name}", 0.2)  # type: ignore[misc]
        watch = LoadWatch(lambda: topo.interfaces)
        deadline = time.monotonic() + cfg.phase_seconds
        for r in range(cfg.iperf_rounds):
            if time.monotonic() > deadline:
                out["truncated"] = True
                break
            order = layouts if r % 2 == 0 else layouts[::-1]
            for name in order:
                runs.append({"round": r, "layout": name, **iperf(paths[name], cfg.iperf_seconds)})
        out["load"] = watch.result()
    by_layout = {
        name: [x["received_mbit_s"] for x in runs if x["layout"] == name] for name in layouts
    }
    out["median_mbit_s"] = {name: median(v) for name, v in by_layout.items()}
    by_round: dict[int, dict[str, float]] = {}
    for x in runs:
        by_round.setdefault(x["round"], {})[x["layout"]] = x["received_mbit_s"]
    out["ratio_to_today"] = {}
    for name in layouts:
        if name == "today":
            continue
        paired = [
            q for pair in by_round.values() if (q := ratio(pair.get(name), pair.get("today")))
        ]
        out["ratio_to_today"][name] = {"round_ratios": paired, "median": median(paired)}


# --- 2. tenants with their daemons ---------------------------------------------------------
def bench_tenants(cfg: DomainsConfig, layout_name: str, out: dict[str, Any]) -> None:
    from tongdao.testing import netns

    total = cfg.existing + cfg.add_samples
    adds: list[dict[str, Any]] = []
    out["adds"] = adds
    with netns.Topology() as topo:
        underlay = topo.namespace()
        pop = BUILDERS[layout_name](topo, underlay)
        empty = count_objects([underlay])
        mem_before = settled_meminfo()
        watch = LoadWatch(lambda: topo.interfaces)
        deadline = time.monotonic() + cfg.phase_seconds
        for index in range(total):
            if time.monotonic() > deadline:
                out["truncated"] = True
                break
            ifname = topo.wg_ifname()
            tenant = make_tenant(index, ifname, int(ifname[3:]), cfg.policy_rules)
            adds.append({"existing": index, **pop.add(tenant)})
        out["load"] = watch.result()
        built = len(pop.tenants)
        out["tenants"] = built
        mem_after = settled_meminfo()
        out["memory_with_daemons"] = memory_delta(mem_before, mem_after, built)
        pids = daemon_pids(t.ifname for t in pop.tenants)
        if len(pids) != built:
            raise RuntimeError(f"{built} tenants but {len(pids)} wireguard-go daemons")
        usage = [process_memory_kib(pid) for pid in pids.values()]
        out["wireguard_go_kib"] = {
            "daemons": len(usage),
            "rss_median": median([u.get("Rss", 0) for u in usage]),
            "pss_median": median([u.get("Pss", 0) for u in usage]),
        }
        counts = count_objects(pop.namespaces())
        out["objects"] = {"empty_pop": empty, "at_end": counts}
        out["objects_per_tenant"] = per_tenant(counts, empty, built) if built else {}
    early = [a for a in adds if a["existing"] < cfg.add_samples]
    late = [a for a in adds if a["existing"] >= cfg.existing]
    out["add_ms"] = {
        "near_0": phase_medians(early),
        f"at_{cfg.existing}": phase_medians(late),
    }


def phase_medians(adds: list[dict[str, Any]]) -> dict[str, Any]:
    if not adds:
        return {"samples": 0}
    keys = ("total_ms", "interface_ms", "domain_ms", "routing_ms", "firewall_ms")
    result: dict[str, Any] = {
        "samples": len(adds),
        "existing": [adds[0]["existing"], adds[-1]["existing"]],
    }
    for key in keys:
        result[key] = median([a[key] for a in adds])
    result["without_interface_ms"] = median([a["total_ms"] - a["interface_ms"] for a in adds])
    return result


def tenants_phase(
    cfg: DomainsConfig, layout_name: str, out: dict[str, Any], report: dict[str, Any]
) -> None:
    settings = report.setdefault("host_settings", {}).setdefault(layout_name, {})
    with inotify_headroom(cfg.existing + cfg.add_samples, settings):
        bench_tenants(cfg, layout_name, out)


# --- 3. memory of the routing domains ------------------------------------------------------
def bench_memory(cfg: DomainsConfig, layout_name: str, out: dict[str, Any]) -> None:
    from tongdao.testing import netns

    n = cfg.memory_tenants
    before = settled_meminfo()
    with netns.Topology() as topo:
        underlay = topo.namespace()
        pop = BUILDERS[layout_name](topo, underlay)
        base = settled_meminfo()
        tenants = [make_tenant(i, f"tdm{i}", 20000 + i, cfg.policy_rules) for i in range(n)]
        watch = LoadWatch(lambda: ())
        start = time.perf_counter()
        pop.build_bulk(tenants)
        out["build_s"] = round(time.perf_counter() - start, 2)
        out["load"] = watch.result()
        built = settled_meminfo()
        out["tenants"] = len(pop.tenants)
        out["namespaces"] = len(pop.namespaces())
        out["built"] = memory_delta(base, built, n)
        start = time.perf_counter()
    out["teardown_s"] = round(time.perf_counter() - start, 2)
    # Namespaces are freed by a kernel worker after the last reference goes: wait (bounded)
    # until MemAvailable is back within 1% of where it was, then take the figure.
    after = settled_meminfo(2.0)
    for _ in range(10):
        if after["MemAvailable"] >= base["MemAvailable"] * 0.99:
            break
        after = settled_meminfo(1.0)
    out["torn_down"] = memory_delta(after, built, n)
    out["meminfo_kib"] = {"before": before, "base": base, "built": built, "after": after}


# --- driver --------------------------------------------------------------------------------
def run(cfg: DomainsConfig, mode: str = "full") -> dict[str, Any]:
    from tongdao.testing import netns

    report: dict[str, Any] = {
        "benchmark": "domains",
        "mode": mode,
        "config": asdict(cfg),
        "machine": machine_info(),
        "results": {},
        "errors": {},
    }
    if os.geteuid() != 0:
        report["skipped"] = "needs root"
        return report
    missing = [t for t in (*missing_tools(), "ethtool", "ss") if _which(t) is None]
    if missing:
        report["skipped"] = f"missing tools: {', '.join(missing)}"
        return report
    report["engine"] = engine_info()
    namespaces_before = set(netns.list_namespaces())
    began = time.perf_counter()
    try:
        vrf = probe_vrf()
    except Exception:
        vrf = {"available": False, "error": traceback.format_exc()[-2000:]}
    report["vrf"] = vrf
    layouts = [name for name in LAYOUTS if name in BUILDERS]
    report["layouts"] = dict.fromkeys(layouts, "measured")
    if not vrf.get("available"):
        report["layouts"]["vrf"] = (
            "not measured: this kernel cannot make a VRF device "
            f"({vrf.get('ip_link_add_type_vrf', 'probe failed')}; "
            f"CONFIG_NET_VRF {vrf.get('config', {}).get('CONFIG_NET_VRF')})"
        )
    else:
        report["layouts"]["vrf"] = "available but not built by this benchmark"
    phases: list[tuple[str, Callable[[dict[str, Any]], None]]] = [
        ("throughput", lambda o: bench_throughput(cfg, layouts, o)),
    ]
    for name in layouts:
        phases.append((f"tenants_{name}", lambda o, n=name: tenants_phase(cfg, n, o, report)))  # type: ignore[misc]
    for name in layouts:
        phases.append((f"memory_{name}", lambda o, n=name: bench_memory(cfg, n, o)))  # type: ignore[misc]
    for name, phase in phases:
        out: dict[str, Any] = {"background_busy_pct_before": background_busy_pct()}
        report["results"][name] = out
        start = time.perf_counter()
        try:
            phase(out)
        except Exception:  # the report keeps what was measured, and why it stopped
            report["errors"][name] = traceback.format_exc()[-4000:]
        out["wall_s"] = round(time.perf_counter() - start, 1)
    report["wall_s"] = round(time.perf_counter() - began, 1)
    left = sorted(set(netns.list_namespaces()) - namespaces_before)
    report["cleanup"] = {"namespaces_left": left}
    if left:
        report["errors"]["cleanup"] = f"namespaces left behind: {left}"
    report["table"] = table(report)
    return report


def _which(tool: str) -> str | None:
    import shutil

    return shutil.which(tool)


def background_busy_pct(seconds: float = 1.0) -> float:
    from bench.dataplane import background_busy_pct as busy

    return busy(seconds)


def table(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The figures side by side, one row per layout."""
    res = report["results"]
    rows: dict[str, dict[str, Any]] = {}
    thr = res.get("throughput", {})
    for name in report.get("layouts", {}):
        if f"tenants_{name}" not in res:
            continue
        ten, mem = res.get(f"tenants_{name}", {}), res.get(f"memory_{name}", {})
        add = ten.get("add_ms", {})
        late = next((v for k, v in add.items() if k.startswith("at_")), {})
        rows[name] = {
            "throughput_mbit_s": thr.get("median_mbit_s", {}).get(name),
            "throughput_ratio_to_today": 1.0
            if name == "today"
            else thr.get("ratio_to_today", {}).get(name, {}).get("median"),
            "objects_per_tenant": ten.get("objects_per_tenant"),
            "add_ms_near_0": add.get("near_0", {}).get("total_ms"),
            "add_ms_at_existing": late.get("total_ms"),
            "add_ms_at_existing_without_daemon": late.get("without_interface_ms"),
            "kernel_kib_per_tenant_built": mem.get("built", {}).get("kib_per_tenant"),
            "kernel_kib_per_tenant_torn_down": mem.get("torn_down", {}).get("kib_per_tenant"),
            "memory_tenants": mem.get("tenants"),
            "wireguard_go_kib": ten.get("wireguard_go_kib"),
            "kib_per_tenant_with_daemon": ten.get("memory_with_daemons", {}).get("kib_per_tenant"),
        }
    return rows


def summary(report: dict[str, Any]) -> str:
    lines = [f"domains benchmark ({report['mode']})"]
    if report.get("skipped"):
        return lines[0] + f": skipped: {report['skipped']}"
    for name, state in report.get("layouts", {}).items():
        if state != "measured":
            lines.append(f"  {name}: {state}")
    for name, row in report.get("table", {}).items():
        kib = row.get("kernel_kib_per_tenant_built") or {}
        objects = row.get("objects_per_tenant") or {}
        wg = row.get("wireguard_go_kib") or {}
        lines.append(
            f"  {name}: {row.get('throughput_mbit_s')} Mbit/s "
            f"(×{row.get('throughput_ratio_to_today')} of today); per tenant: "
            f"{objects.get('ip_rules')} ip rules, {objects.get('routes')} routes, "
            f"{objects.get('nft_rules')} nft rules, {objects.get('nft_sets')} sets; add "
            f"{row.get('add_ms_near_0')} ms near 0, {row.get('add_ms_at_existing')} ms at "
            f"{report['config']['existing']} ({row.get('add_ms_at_existing_without_daemon')} "
            f"without the daemon); kernel {kib.get('kernel')} KiB/tenant at "
            f"{row.get('memory_tenants')} (slab {kib.get('Slab')}, percpu {kib.get('Percpu')}, "
            f"MemAvailable drop {kib.get('MemAvailable_drop')}); "
            f"wireguard-go PSS {wg.get('pss_median')} KiB, RSS {wg.get('rss_median')} KiB"
        )
    for name, r in report.get("results", {}).items():
        load = r.get("load") or {}
        if load.get("other_work_pct") is not None:
            lines.append(
                f"  {name}: other work {load['other_work_pct']}% of the machine "
                f"(busy {load['machine_busy_pct']}%), idle-time busy before "
                f"{r.get('background_busy_pct_before')}%"
            )
    for name, err in report.get("errors", {}).items():
        lines.append(f"  ERROR in {name}: {err.strip().splitlines()[-1]}")
    lines.append(f"  wall {report.get('wall_s')} s")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover - convenience
    import json
    import sys

    quick = "--quick" in sys.argv
    rep = run(QUICK if quick else FULL, "quick" if quick else "full")
    print(json.dumps(rep, indent=2)[:3000])
    print(summary(rep))
