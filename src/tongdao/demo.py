"""``make demo``: a whole Tongdao deployment in network namespaces on this machine.

Through the public API and the real agents it builds: a control plane (``tongdao server`` on
loopback), a PoP in Beijing and one in Frankfurt joined by a registered link, two customer
companies whose headquarters networks both use 198.18.7.0/24 behind site connectors in
Frankfurt, and one employee laptop per company (a stock WireGuard client loaded from its
exported config) connected to the Beijing PoP. It prints what to try, waits, and removes
everything it made (namespaces, daemons, processes, its data directory).

Needs root, wireguard-go, wireguard-tools, nftables and iproute2 (``make install``).
Addresses: only 192.0.2/24, 198.51.100/24, 203.0.113/24, 198.18/15, 100.64/10, fd00::/8.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from tongdao.gateway.desired import connector_interface_name, interface_name
from tongdao.testing import crossborder, licensed, netns, outbox
from tongdao.testing.keys import keypair

PASSWORD = "demo passphrase 通道 2026"  # noqa: S105 - the demo's throwaway users
SITE_V4, SITE_V6 = "198.18.7.0/24", "fd00:77::/64"
COMPANIES = (
    ("Acme Trading (China) Co., Ltd.", "艾克米贸易（中国）有限公司", "91110000802100433B"),
    ("Globex Beijing Co., Ltd.", "环球（北京）有限公司", "914403001922038216"),
)


def say(text: str) -> None:
    print(text, flush=True)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


class Api:
    def __init__(self, base: str, token: str | None = None) -> None:
        self.base = base + "/api/v1"
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def __call__(self, method: str, path: str, **kw: Any) -> Any:
        resp = httpx.request(method, self.base + path, headers=self.headers, timeout=30, **kw)
        if resp.status_code >= 300:
            raise RuntimeError(f"{method} {path}: {resp.status_code} {resp.text}")
        return resp.json() if resp.content else None

    def login(self, email: str) -> Api:
        token = self("POST", "/auth/login", json={"email": email, "password": PASSWORD})["token"]
        return Api(self.base.removesuffix("/api/v1"), token)


class Demo:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.topo = netns.Topology()
        self.procs: list[subprocess.Popen[bytes]] = []
        self.env = {
            **os.environ,
            "TONGDAO_ENV": "development",
            "TONGDAO_DATA_DIR": str(workdir / "server"),
        }

    def spawn(self, argv: list[str], log: str) -> subprocess.Popen[bytes]:
        out = open(self.workdir / log, "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            argv, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        out.close()
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.topo.close()

    def build(self, hold: float | None) -> None:
        tongdao = [sys.executable, "-m", "tongdao"]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        say(f"control plane: {url} (data in {self.workdir / 'server'})")
        subprocess.run(
            [*tongdao, "admin", "bootstrap", "--email", "noc@demo.example", "--password-stdin"],
            input=(PASSWORD + "\n").encode(),
            env=self.env,
            check=True,
            capture_output=True,
            timeout=60,
        )
        self.spawn([*tongdao, "server", "--port", str(port)], "server.log")
        wait_until(lambda: _ready(url), 60, "the control plane")
        admin = Api(url).login("noc@demo.example")
        # Declared networks are approved by a compliance officer, not by the NOC; the admin
        # cannot give that role (separation of duties): the first officer is made on the store.
        subprocess.run(
            [*tongdao, "admin", "bootstrap", "--role", "compliance_officer",
             "--email", "compliance@demo.example", "--display-name", "compliance",
             "--password-stdin"],
            input=(PASSWORD + "\n").encode(),
            env=self.env,
            check=True,
            capture_output=True,
            timeout=60,
        )  # fmt: skip
        officer = Api(url).login("compliance@demo.example")
        outbox_dir = self.workdir / "server" / "outbox"  # no SMTP relay: mail lands here

        # The operator's licence and shareholders: nothing is activated without them.
        admin("POST", "/operator/licences", json=licensed.licence_body())
        for holder in licensed.SHAREHOLDERS:
            admin("POST", "/operator/shareholders", json=holder)
        say(f"licence {licensed.LICENCE_NUMBER} (B13, nationwide); shareholders 51% / 49% foreign")
        # The privacy notice users accept, with the separate statement for transfer abroad.
        officer(
            "POST",
            "/privacy-notices",
            json={
                "version": "demo-1",
                "title": "Tongdao personal information notice (demo)",
                "text": "Tongdao processes your name, ID document and mobile number to give "
                "you VPN service, as the Cybersecurity Law requires (demo text).",
                "transfer_abroad_text": "Your traffic to your company's headquarters network "
                "in Germany carries personal information abroad (demo text).",
            },
        )

        base = 32000 + secrets.randbelow(1000) * 10
        topo = self.topo
        bj_ns, fra_ns = topo.namespace(), topo.namespace()
        bj_wire, fra_wire = topo.veth(bj_ns, fra_ns)
        netns.add_address(bj_ns, bj_wire, "203.0.113.1/24")
        netns.add_address(fra_ns, fra_wire, "203.0.113.2/24")
        netns.add_route(fra_ns, "198.51.100.0/24", via="203.0.113.1")
        bj, fra = crossborder.create_pops(admin, base)
        for n in range(10):
            topo.track(interface_name(base + n))
        link = crossborder.link_pops(admin, bj, fra, "CU-IPLC-DEMO", "工信部国际〔2026〕演示")
        say("PoPs cn-bj-1 and de-fra-1, joined by the registered link bj-fra")

        tries: list[str] = []
        for n, (name_en, name_zh, uscc) in enumerate(COMPANIES):
            label = "ab"[n]
            tenant = admin(
                "POST",
                "/tenants",
                json={
                    "name_en": name_en,
                    "name_zh": name_zh,
                    "uscc": uscc,
                    **licensed.FOREIGN_INVESTED,  # customers are foreign-invested enterprises
                },
            )
            for state in ("under_review", "approved", "active"):  # vetting: the officer's
                officer("PATCH", f"/tenants/{tenant['id']}", json={"state": state})
            tid = tenant["id"]
            users = {}
            for k, (email, roles) in enumerate(
                (
                    (f"it@{label}.demo.example", ["tenant_admin"]),
                    (f"li@{label}.demo.example", ["employee"]),
                )
            ):
                users[email] = admin(
                    "POST",
                    f"/tenants/{tid}/users",
                    json={
                        "email": email,
                        "display_name": email.split("@")[0],
                        "roles": roles,
                        # Real identity (rule identity.real_name), verified by the officer.
                        "legal_name": email.split("@")[0].upper(),
                        "id_type": "passport",
                        "id_number": f"E{n}{k}000001",
                        "mobile": f"+86138000000{n}{k}",
                    },
                )
                user_path = f"/tenants/{tid}/users/{users[email]['id']}"
                officer("POST", f"{user_path}/identity-verification")
                outbox.choose_password(url, outbox_dir, email, PASSWORD)
            it = Api(url).login(f"it@{label}.demo.example")
            li = Api(url).login(f"li@{label}.demo.example")
            # Li accepts the notice and consents to transfer abroad (her HQ is in Frankfurt).
            li_consents = f"/tenants/{tid}/users/{users[f'li@{label}.demo.example']['id']}/consents"
            for kind in ("notice", "transfer_abroad"):
                li("POST", li_consents, json={"kind": kind, "notice_version": "demo-1"})

            dev_ns, conn_ns, hq_ns = topo.namespace(), topo.namespace(), topo.namespace()
            dev_if, bj_if = topo.veth(dev_ns, bj_ns)
            if n == 0:
                netns.add_address(dev_ns, dev_if, "198.51.100.10/24")
                netns.add_address(bj_ns, bj_if, "198.51.100.1/24")
            else:
                netns.add_address(dev_ns, dev_if, "192.0.2.66/30")
                netns.add_address(bj_ns, bj_if, "192.0.2.65/30")
                netns.add_route(dev_ns, "198.51.100.0/24", via="192.0.2.65")
            fra_if, conn_if = topo.veth(fra_ns, conn_ns)
            netns.add_address(fra_ns, fra_if, f"192.0.2.{1 + 4 * n}/30")
            netns.add_address(conn_ns, conn_if, f"192.0.2.{2 + 4 * n}/30")
            netns.add_route(conn_ns, "203.0.113.0/24", via=f"192.0.2.{1 + 4 * n}")
            lan_conn, lan_hq = topo.veth(conn_ns, hq_ns)
            for ns, ifname, v4, v6 in (
                (conn_ns, lan_conn, "198.18.7.1/24", "fd00:77::1/64"),
                (hq_ns, lan_hq, "198.18.7.10/24", "fd00:77::10/64"),
            ):
                netns.add_address(ns, ifname, v4)
                netns.add_address(ns, ifname, v6)
            netns.add_route(hq_ns, "0.0.0.0/0", via="198.18.7.1")
            netns.run(["ip", "-n", hq_ns, "-6", "route", "add", "default", "via", "fd00:77::1"])

            site = it(
                "POST",
                f"/tenants/{tid}/sites",
                json={
                    "name": "hq-frankfurt",
                    "country": "DE",
                    "purpose": "hq",
                    "pop_id": fra["id"],
                    "prefixes": [SITE_V4, SITE_V6],
                },
            )
            for decl in site["declarations"]:  # rule network.declared_only
                officer("POST", f"/declarations/{decl['id']}/approve", json={"reason": "HQ LAN"})
            admin("PATCH", f"/tenants/{tid}/sites/{site['id']}", json={"state": "active"})
            # The company's cross-border authorisation on the link: IT applies (documents
            # uploaded), the compliance officer records the carrier's approval.
            crossborder.authorise(
                it,
                crossborder.http_uploader(it.base, it.headers),
                officer,
                tid,
                [site["id"]],
                link["id"],
            )
            topo.track(connector_interface_name(uuid.UUID(site["id"])))
            private, public = keypair()
            device = li(
                "POST", f"/tenants/{tid}/devices", json={"name": "li-laptop", "public_key": public}
            )
            it(
                "POST",
                f"/tenants/{tid}/policies",
                json={
                    "name": "staff to HQ",
                    "rules": [
                        {
                            "sources": [{"kind": "device", "id": device["id"]}],
                            "destinations": [{"kind": "site", "id": site["id"]}],
                        }
                    ],
                },
            )
            token = it("POST", f"/tenants/{tid}/sites/{site['id']}/enrolments", json={})["token"]
            self.spawn(
                [
                    *tongdao,
                    "connector",
                    "run",
                    "--server",
                    url,
                    "--token",
                    token,
                    "--state-dir",
                    str(self.workdir / f"connector-{label}"),
                    "--netns",
                    conn_ns,
                    "--poll-wait",
                    "10",
                ],
                f"connector-{label}.log",
            )
            if n == 0:
                for pop, ns in ((bj, bj_ns), (fra, fra_ns)):
                    gw_token = admin("POST", f"/pops/{pop['id']}/enrolments", json={})["token"]
                    self.spawn(
                        [
                            *tongdao,
                            "gateway",
                            "run",
                            "--server",
                            url,
                            "--token",
                            gw_token,
                            "--state-dir",
                            str(self.workdir / pop["name"]),
                            "--netns",
                            ns,
                            "--poll-wait",
                            "10",
                        ],
                        f"{pop['name']}.log",
                    )
            conf_path = f"/tenants/{tid}/devices/{device['id']}/wireguard.conf"
            wait_until(partial(_config_ready, li, conf_path), 60, f"{name_en}'s PoP key")
            conf = httpx.get(li.base + conf_path, headers=li.headers, timeout=10).text
            (self.workdir / f"laptop-{label}.conf").write_text(conf)
            client_if = topo.wg_ifname()
            netns.bring_up_client(dev_ns, client_if, conf, private)
            wait_until(
                partial(netns.ping, dev_ns, "198.18.7.10", tries=1),
                60,
                f"{name_en}'s laptop to reach its HQ",
            )
            say(f"{name_en}: laptop ns {dev_ns} ({device['ipv4']}) → HQ 198.18.7.10 works")
            tries.append(f"  ip netns exec {dev_ns} ping -c3 198.18.7.10     # {name_en}'s HQ")
            tries.append(f"  ip netns exec {dev_ns} ping -c3 fd00:77::10")
        say("\nTry it (as root):")
        for line in tries:
            say(line)
        say(f"  ip netns exec {bj_ns} wg show all ; ip netns exec {bj_ns} nft list ruleset")
        say(
            f"  console: {url}/console/  (noc@demo.example / it@a.demo.example / "
            f"li@a.demo.example, password {PASSWORD!r})"
        )
        say(f"  logs and configs: {self.workdir}")
        if hold is None:
            say("\nPress Enter (or Ctrl-C) to tear it all down.")
            with contextlib.suppress(EOFError, KeyboardInterrupt):
                input()
        elif hold > 0:
            time.sleep(hold)


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _config_ready(api: Api, path: str) -> bool:
    return httpx.get(api.base + path, headers=api.headers, timeout=10).status_code == 200


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tongdao.demo", description=__doc__)
    parser.add_argument(
        "--hold",
        type=float,
        default=None,
        help="seconds to keep it up (default: until Enter); 0 = build, check, tear down",
    )
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("the demo needs root (network namespaces)", file=sys.stderr)
        return 2
    missing = [t for t in ("wireguard-go", "wg", "nft", "ip") if shutil.which(t) is None]
    if missing:
        print(f"missing: {', '.join(missing)} (run make install)", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="tongdao-demo-"))
    demo = Demo(workdir)
    try:
        demo.build(args.hold)
        return 0
    except (RuntimeError, subprocess.SubprocessError, OSError, httpx.HTTPError) as exc:
        print(f"demo failed: {exc}\n(logs in {workdir})", file=sys.stderr)
        return 1
    finally:
        say("tearing down ...")
        made = list(demo.topo.namespaces)
        demo.close()
        shutil.rmtree(workdir, ignore_errors=True)
        say(f"removed every namespace ({' '.join(made)}), daemon and process the demo made")


if __name__ == "__main__":
    sys.exit(main())
