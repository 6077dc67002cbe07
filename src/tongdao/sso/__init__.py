"""Customers' own OpenID Providers: per-tenant settings, e-mail domain claims, SSO sign-in."""
