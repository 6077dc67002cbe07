"""The invoice page's credit-note form (issue 13): an amount per chosen line makes a partial
credit note (as the API's route does); a refusal shows next to that line's field, the typed
values kept and nothing stored; empty amounts credit the whole invoice."""

from __future__ import annotations

import re

from tests.conftest import both_stores
from tests.support.world import World
from tests.web.test_billing_pages import B, _api, _billed, _clerk, _error, _form_error, _value, _zh


@both_stores
def test_partial_credit_through_the_page(world: World) -> None:
    clerk = _clerk(world)
    invoice_id = _billed(world, clerk)
    path = f"{B}/tenants/{world.a.id}/invoices/{invoice_id}"
    api_path = f"/tenants/{world.a.id}/invoices/{invoice_id}"
    assert clerk.post(path + "/issue").status_code == 303
    page = clerk.get(path).text
    # One field per line, each with what is left to credit.
    assert 'name="credit_1"' in page and 'name="credit_2"' in page
    assert "¥1,000.00" in page and "¥71.00" in page

    # Over what the line has: 409 next to that line's field, values kept, nothing stored.
    over = clerk.post(
        path + "/credit-notes", {"reason": "折让", "credit_1": "", "credit_2": "71.01"}
    )
    assert over.status_code == 409
    assert "71.00" in _error(over.text, "credit_2") and _value(over.text, "credit_2") == "71.01"
    assert _value(over.text, "reason", "f-credit-reason") == "折让"
    bad = clerk.post(path + "/credit-notes", {"reason": "x", "credit_1": "abc"})
    assert bad.status_code == 422 and _error(bad.text, "credit_1")
    zero = clerk.post(path + "/credit-notes", {"reason": "x", "credit_1": "0"})
    assert zero.status_code == 422 and _error(zero.text, "credit_1")
    blank = clerk.post(path + "/credit-notes", {"reason": "", "credit_2": "10.00"})
    assert blank.status_code == 422 and _error(blank.text, "reason", "f-credit-reason")
    listed = _api(world, "GET", f"/tenants/{world.a.id}/invoices?kind=credit_note")
    assert listed["count"] == 0

    done = clerk.post(path + "/credit-notes", {"reason": "一个席位多计", "credit_2": "35.50"})
    assert done.status_code == 303 and done.headers["location"].endswith("?done=credited")
    notes = _api(world, "GET", f"/tenants/{world.a.id}/invoices?kind=credit_note")["data"]
    assert [(n["number"], n["total"], n["corrects_id"]) for n in notes] == [
        ("CN00000001", "-37.63", invoice_id)
    ]
    page = clerk.get(path).text
    assert "CN00000001" in page and "¥35.50" in page  # what is left on line 2
    assert "¥1,097.63" in page  # outstanding: 1135.26 − 37.63

    # The whole invoice once part of it is credited: refused, said on the form.
    whole = clerk.post(path + "/credit-notes", {"reason": "全部冲红"})
    assert whole.status_code == 409 and "line by line" in _form_error(whole.text) + whole.text
    _zh(clerk)
    whole = clerk.post(path + "/credit-notes", {"reason": "全部冲红"})
    assert whole.status_code == 409 and "请按行冲红剩余部分" in whole.text
    over = clerk.post(path + "/credit-notes", {"reason": "x", "credit_1": "1000.01"})
    assert "超过第 1 行尚可冲红的金额 ¥1000.00" in _error(over.text, "credit_1")
    note = f"{B}/tenants/{world.a.id}/invoices/{notes[0]['id']}"
    shown = clerk.get(note).text
    assert "-¥35.50" in shown or "¥-35.50" in shown or "−¥35.50" in shown
    assert _api(world, "GET", api_path)["state"] == "issued"


def _ids(html: str) -> list[str]:
    return re.findall(r'\sid="([^"]+)"', html)


@both_stores
def test_the_invoice_page_has_unique_ids_a_quantity_per_line_and_credits_can_pay_it(
    world: World,
) -> None:
    """The credit and void forms' reasons have ids of their own (each label names its own
    field); a line is credited by quantity; credits and payments that cover the invoice make
    it paid; a credit note's page shows no empty Actions card."""
    clerk = _clerk(world)
    invoice_id = _billed(world, clerk)
    path = f"{B}/tenants/{world.a.id}/invoices/{invoice_id}"
    api_path = f"/tenants/{world.a.id}/invoices/{invoice_id}"
    assert clerk.post(path + "/issue").status_code == 303
    page = clerk.get(path).text
    ids = _ids(page)
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    for target in re.findall(r'<label for="([^"]+)"', page):
        assert target in ids, target
    assert 'for="f-credit-reason"' in page
    assert 'name="credit_qty_2"' in page and "2 " in _hint(page, "credit_qty_2")

    # A quantity: one of the two seats; refusals by quantity go next to the quantity.
    over = clerk.post(path + "/credit-notes", {"reason": "x", "credit_qty_2": "3"})
    assert over.status_code == 409 and _error(over.text, "credit_qty_2")
    assert _value(over.text, "credit_qty_2") == "3"
    both = clerk.post(path + "/credit-notes", {"reason": "x", "credit_2": "1", "credit_qty_2": "1"})
    assert both.status_code == 422 and _error(both.text, "credit_2")
    one = clerk.post(path + "/credit-notes", {"reason": "一个席位", "credit_qty_2": "1"})
    assert one.status_code == 303, one.text
    notes = _api(world, "GET", f"/tenants/{world.a.id}/invoices?kind=credit_note")["data"]
    assert [(n["total"], n["lines"][0]["quantity"]) for n in notes] == [("-37.63", "-1.000000")]

    # Paid in part, then credited for the rest: nothing owed, the invoice is paid.
    paid = clerk.post(
        path + "/payments", {"amount": "1000.00", "received_on": "2026-12-05", "reference": ""}
    )
    assert paid.status_code == 303, paid.text
    rest = clerk.post(
        path + "/credit-notes", {"reason": "折让", "credit_1": "56.60", "credit_qty_2": "1"}
    )
    assert rest.status_code == 303, rest.text
    assert _api(world, "GET", api_path)["state"] == "paid"
    page = clerk.get(path).text
    assert 'id="pay-form"' not in page and 'id="void-form"' not in page

    # A credit note's page: no Actions card with nothing in it.
    note = f"{B}/tenants/{world.a.id}/invoices/{notes[0]['id']}"
    assert 'id="actions-title"' not in clerk.get(note).text


def _hint(html: str, field: str) -> str:
    found = re.search(rf'id="f-{re.escape(field)}-hint">([^<]*)<', html)
    assert found, f"no hint for {field}"
    return found.group(1)
