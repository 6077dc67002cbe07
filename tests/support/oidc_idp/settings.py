"""Django settings of the test OpenID Provider; everything instance-specific comes from the
environment the fixture sets (``tests/support/oidc_provider.py``)."""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent

SECRET_KEY = os.environ["OIDC_IDP_SECRET_KEY"]
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
# The serving script sets SITE_URL to http://127.0.0.1:<port> once its socket is bound; the
# issuer is SITE_URL + "/openid".
SITE_URL = os.environ.get("OIDC_IDP_SITE_URL", "")

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "oidc_provider",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "tests.support.oidc_idp.faults.SignatureFaults",
]

ROOT_URLCONF = "tests.support.oidc_idp.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
            ]
        },
    }
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ["OIDC_IDP_DATABASE"],
    }
}

# Fast hashing: test users only.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
USE_TZ = True
TIME_ZONE = "UTC"
LOGIN_URL = "/login/"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

OIDC_IDTOKEN_INCLUDE_CLAIMS = True
OIDC_IDTOKEN_EXPIRE = int(os.environ.get("OIDC_IDP_ID_TOKEN_EXPIRE", "600"))
OIDC_USERINFO = "tests.support.oidc_idp.claims.userinfo"
OIDC_EXTRA_SCOPE_CLAIMS = "tests.support.oidc_idp.claims.GroupsScopeClaims"
OIDC_IDTOKEN_PROCESSING_HOOK = "tests.support.oidc_idp.faults.id_token_hook"
OIDC_DISCOVERY_CACHE_ENABLE = False

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
}
