"""Words for the audit log's action codes and object kinds, in the reader's language.

The log stores codes (``login``, ``invitation_sent``, ``prefix_declaration``); the audit page
shows a label beside each code and keeps the code itself visible, since auditors search and
filter by it. A code with no label here (an old record, a new action not yet named) shows as
it is.

The codes come from two places: the explicit ``record(session, action, object_type, ...)``
calls in the services, and the ORM hook in :mod:`tongdao.audit.recorder`, which records
``create``/``update``/``delete`` of every model with an ``__audit_type__``.
``tests/web/test_audit_labels.py`` reads the code for both and fails when one lacks a label.
"""

from __future__ import annotations

from tongdao.web.i18n import N_, Locale

ACTIONS: dict[str, str] = {
    # The ORM hook: every change to an audited object.
    "create": N_("Object created"),
    "update": N_("Object changed"),
    "delete": N_("Object deleted"),
    # Signing in and credentials.
    "login": N_("Sign-in succeeded"),
    "login_failed": N_("Sign-in failed"),
    "reauthentication_failed": N_("Password check before a sensitive action failed"),
    "sign_in_unlocked": N_("Sign-in unlocked by an administrator"),
    "password_changed": N_("Password changed"),
    "invitation_sent": N_("Invitation sent"),
    "password_reset": N_("Password reset by an administrator"),
    "password_reset_requested": N_("Password reset requested"),
    "password_set_by_link": N_("Password set through an e-mailed link"),
    "second_factors_reset": N_("Second factors reset by an administrator"),
    # Real-name identity.
    "verify_identity": N_("Identity verified"),
    "withdraw_identity_verification": N_("Identity verification withdrawn"),
    # Personal data.
    "export_personal_data": N_("Personal data exported"),
    "erase_personal_data": N_("Personal data erased"),
    "erase_personal": N_("Personal fields blanked in old audit records"),
    "rotate_data_key": N_("Data encryption key rotated"),
    # The audit log itself.
    "export": N_("Regulator export downloaded"),
    "purge": N_("Records past retention purged"),
    # What gateways report.
    "connection": N_("Connection session"),
    "usage_rows_dropped": N_("Usage report rows dropped"),
    # Billing.
    "billing_invoice_made": N_("Invoice made by the monthly billing run"),
    "billing_reminder_sent": N_("Payment reminder sent for an overdue invoice"),
    "billing_suspend": N_("Tenant suspended for non-payment"),
    "billing_lift": N_("Suspension for non-payment lifted"),
    # Cross-border service.
    "crossborder_expired": N_("Cross-border authorisation expired"),
    # The scheduled compliance check (tongdao.compliance.watch).
    "compliance_breach": N_("Compliance breach found by the scheduled check"),
    "compliance_breach_resolved": N_("Compliance breach resolved"),
    "compliance_suspend": N_("Tenant suspended at the end of a compliance grace period"),
    "compliance_lift": N_("Compliance suspension lifted"),
}

OBJECT_KINDS: dict[str, str] = {
    "api_token": N_("API token"),
    "second_factor_policy": N_("Second-factor rule for staff"),
    "webauthn_credential": N_("Security key or passkey"),
    "audit_log": N_("Audit log"),
    "billing_plan": N_("Billing plan"),
    "billing_reminder": N_("Payment reminder"),
    "billing_suspension": N_("Suspension for non-payment"),
    "billing_subscription": N_("Billing subscription"),
    "compliance_breach": N_("Compliance breach"),
    "compliance_suspension": N_("Suspension by the compliance check"),
    "compliance_watch": N_("Compliance check settings"),
    "consent": N_("Consent"),
    "crossborder_application": N_("Cross-border application"),
    "crossborder_document": N_("Cross-border document"),
    "data_key": N_("Data encryption key"),
    "device": N_("Device"),
    "gateway": N_("Gateway"),
    "gateway_enrolment": N_("Gateway enrolment"),
    "group": N_("Group"),
    "group_member": N_("Group membership"),
    "invoice": N_("Invoice or credit note"),
    "invoice_line": N_("Invoice line"),
    "licence": N_("Licence"),
    "quota_event": N_("Quota event (80% or 100% of a cap)"),
    "tenant_limits": N_("Tenant's transfer caps and bandwidth limits"),
    "user_limits": N_("User's transfer cap and bandwidth limit"),
    "link": N_("Network link"),
    "mail_settings": N_("Mail settings"),
    "operator": N_("Operator"),
    "payment": N_("Payment"),
    "policy": N_("Access policy"),
    "pop": N_("PoP"),
    "pop_tenant_interface": N_("Tenant interface on a PoP"),
    "prefix_allowance": N_("Prefix allowance"),
    "prefix_declaration": N_("Prefix declaration"),
    "privacy_notice": N_("Privacy notice"),
    "shareholder": N_("Shareholder"),
    "site": N_("Site"),
    "tenant": N_("Tenant"),
    "user": N_("User"),
}

# What sort of record it is (``tongdao.audit.chain.KINDS``).
RECORD_KINDS: dict[str, str] = {
    "change": N_("Change to an object"),
    "event": N_("Event"),
    "session": N_("Connection session"),
    "export": N_("Export"),
    "erase": N_("Erasure"),
    "checkpoint": N_("Chain checkpoint"),
}


def action_label(locale: Locale, code: str | None) -> str:
    """The action in words, or ``""`` when the code has no label (the page shows the code)."""
    label = ACTIONS.get(code or "")
    return locale.gettext(label) if label else ""


def kind_label(locale: Locale, code: str | None) -> str:
    """The object kind in words, or ``""`` when the code has no label."""
    label = OBJECT_KINDS.get(code or "")
    return locale.gettext(label) if label else ""


def record_kind_label(locale: Locale, code: str | None) -> str:
    """The record's kind in words, or the code itself when it has no label."""
    label = RECORD_KINDS.get(code or "")
    return locale.gettext(label) if label else (code or "")


def kind_options(locale: Locale) -> list[tuple[str, str]]:
    """The object-kind filter's choices, ``Prefix declaration (prefix_declaration)``, in the
    order of their codes (the same order in either language)."""
    return [(code, f"{kind_label(locale, code)} ({code})") for code in sorted(OBJECT_KINDS)]
