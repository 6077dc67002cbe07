"""Quota events as Prometheus metrics, read from the store at scrape time (so every replica
shows the same figures; no label names a tenant or a person):

* ``tongdao_quota_subjects{subject,level}``: subjects (``tenant``, ``user``) that passed 80% /
  100% of their monthly transfer cap in the current Asia/Shanghai month;
* ``tongdao_quota_enforced{subject}``: of those at 100%, the ones the gateways block or
  throttle now (not lifted by a raised cap).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from tongdao.quotas.models import QuotaEvent
from tongdao.quotas.service import TENANT, current_counts, month_of

if TYPE_CHECKING:
    from tongdao.runtime import Runtime


class QuotaCollector(Collector):
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterable[Metric]:
        now = self.runtime.clock()
        with self.runtime.db.session(write=False) as session:
            counts = current_counts(session, now)
            enforced = {TENANT: 0, "user": 0}
            for subject, count in session.execute(
                select(QuotaEvent.subject, func.count())
                .where(
                    QuotaEvent.month == month_of(now),
                    QuotaEvent.level == 100,
                    QuotaEvent.lifted_at.is_(None),
                )
                .group_by(QuotaEvent.subject)
            ):
                enforced[TENANT if subject == TENANT else "user"] += int(count)
        family = GaugeMetricFamily(
            "tongdao_quota_subjects",
            "tenants and users past 80% / 100% of their monthly transfer cap this month",
            labels=["subject", "level"],
        )
        for (subject, level), count in sorted(counts.items()):
            family.add_metric([subject, str(level)], count)
        yield family
        family = GaugeMetricFamily(
            "tongdao_quota_enforced",
            "tenants and users over their cap whose traffic the gateways block or throttle now",
            labels=["subject"],
        )
        for subject in (TENANT, "user"):
            family.add_metric([subject], enforced.get(subject, 0))
        yield family
