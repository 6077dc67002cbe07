"""Billing: plans, subscriptions, invoices with 6% VAT, credit notes (红字), payments.

The money rule lives in :mod:`tongdao.billing.money`; the store side in
:mod:`tongdao.billing.service`; exports (CSV, e-fapiao JSON) in :mod:`tongdao.billing.export`.
"""
