"""Cross-border service per tenant: applications, the compliance officer's decision, the
authorisation that gates a tenant's path abroad, and its expiry (issue 14)."""
