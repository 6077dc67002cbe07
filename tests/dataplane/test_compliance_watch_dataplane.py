"""On the data plane (namespaces, wireguard-go, nftables): the scheduled compliance check's
suspension at the end of the grace period takes the tenant's peers off the PoP and its traffic
stops; putting the rule right brings both back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.api.test_compliance_watch import foreign_majority, foreign_minority
from tests.dataplane.test_gateway_agent import Lab, lab, wait_until  # noqa: F401  (lab: the fixture)
from tongdao.compliance import watch
from tongdao.testing import netns

pytestmark = pytest.mark.root


def test_the_compliance_suspension_takes_the_tenant_off_the_pop(lab: Lab) -> None:  # noqa: F811
    ns1, dev1 = lab.device("198.51.100.2", "198.51.100.1", "laptop-1")
    lab.thread.start()

    def conf_ready() -> bool:
        url = f"/tenants/{lab.world.a.id}/devices/{dev1['id']}/wireguard.conf"
        return lab.api("GET", url, lab.world.a.employee.headers).status_code == 200

    wait_until(conf_ready, 30, "the gateway to publish its key")
    wait_until(lambda: dev1["public_key"] in lab.wg_peers(), 30, "device peers on the PoP")
    lab.connect(ns1, dev1, "198.51.100.1")
    gateway = lab.gateway_address()
    assert netns.ping(ns1, gateway)

    runtime = lab.world.runtime
    t0 = datetime.now(UTC)
    foreign_majority(lab.world)
    assert watch.check(runtime, t0).opened == ["ownership"]
    assert netns.ping(ns1, gateway), "service continues through the grace period"
    assert watch.check(runtime, t0 + timedelta(days=7)).suspended == [lab.world.a.id]
    wait_until(lambda: lab.wg_peers() == {}, 20, "the suspended tenant's peers to go")
    wait_until(lambda: not netns.ping(ns1, gateway, tries=1), 20, "the tenant's traffic to stop")

    foreign_minority(lab.world)
    assert watch.check(runtime, t0 + timedelta(days=8)).lifted == [lab.world.a.id]
    wait_until(lambda: netns.ping(ns1, gateway, tries=1), 20, "the tenant to come back")
