"""A small Django project that runs django-oidc-provider as a real OpenID Provider for tests.

The provider itself (discovery, authorization endpoint with PKCE, token endpoint, JWKS, ID
tokens) is django-oidc-provider from PyPI, unchanged. This project only configures it, gives it
a login form, and adds a test-only control API (``control.py``) that seeds what an identity
administrator would click in the provider's own admin: clients, users, groups, disabling a user
and rotating the signing key. ``tests/support/oidc_provider.py`` starts it as its own process.
"""
