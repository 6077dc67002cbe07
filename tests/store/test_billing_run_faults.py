"""The monthly run when a later tenant's computation fails in the database itself (review of
the set-based batch write, s23-billrev)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError

from tests.store.test_billing_store import MONTH, invoices_of, numbers, series_value
from tests.support.billing import add_plan, add_tenants, subscribe
from tongdao.audit import chain
from tongdao.billing import service
from tongdao.runtime import Runtime


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_a_database_error_in_a_later_tenant_keeps_the_tenants_before_it(
    runtime: Runtime,
) -> None:
    """A tenant's own query failing on PostgreSQL (a statement timeout, a cancelled query:
    here a division by zero) aborts the transaction; the batch's tenants before it are still
    written (no gap) and the run raises the tenant's error, not "transaction is aborted"."""
    plan = add_plan(runtime, seat_basis="active")  # seats counted per tenant, in the batch
    tenants = add_tenants(runtime, 4)
    for t in tenants:
        subscribe(runtime, t, plan, date(2027, 1, 1))
    victim = sorted(tenants)[2]

    def fail_for_victim(
        _conn: object, _cursor: object, statement: str, params: Any, _ctx: object, _many: bool
    ) -> tuple[str, Any]:
        values = params.values() if isinstance(params, Mapping) else params or ()
        if "FROM usage_records" in statement and any(
            v == victim or v == victim.hex or v == str(victim) for v in values
        ):
            statement = f"SELECT * FROM ({statement}) AS q WHERE 1 / 0 = 1"  # noqa: S608
        return statement, params

    event.listen(runtime.db.engine, "before_cursor_execute", fail_for_victim, retval=True)
    try:
        with pytest.raises(DBAPIError) as raised:
            service.run_month(runtime.db, MONTH)
    finally:
        event.remove(runtime.db.engine, "before_cursor_execute", fail_for_victim)
    assert "division by zero" in str(raised.value)
    assert numbers(runtime) == [1, 2] and series_value(runtime) == 2
    assert [i.tenant_id for i in invoices_of(runtime)] == sorted(tenants)[:2]
    again = service.run_month(runtime.db, MONTH)
    assert again.created == ["INV00000003", "INV00000004"] and again.existing == 2
    report = chain.verify_chain(runtime.db, chain.SigningKey.from_settings(runtime.settings))
    assert report.ok, report
