"""Monthly transfer caps and bandwidth limits, enforced on the gateways (issue 13)."""
