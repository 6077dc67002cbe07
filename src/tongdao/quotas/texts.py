"""The quota mail (80% and 100% of a monthly transfer cap), in each recipient's language.

Like every mail to a person (:mod:`tongdao.mail.texts`), each recipient gets it in their
stored language (``users.language``; English when none): the tenant's admins and the
operator's staff may read different ones. The English texts are the source; 简体中文 comes
from the console's catalogue ``quotas.po``, so a missing translation fails the catalogue
check. The tenant is named in the language's form (its Chinese name where it has one).
"""

from __future__ import annotations

from tongdao.mail.texts import language_of
from tongdao.web import i18n
from tongdao.web.i18n import N_

MB = 1_000_000

SUBJECT = {
    (True, False): N_("Tongdao: tenant %(tenant)s passed %(level)s%% of its monthly transfer cap"),
    (True, True): N_("Tongdao: tenant %(tenant)s reached its monthly transfer cap"),
    (False, False): N_(
        "Tongdao: user %(user)s of %(tenant)s passed %(level)s%% of their monthly transfer cap"
    ),
    (False, True): N_("Tongdao: user %(user)s of %(tenant)s reached their monthly transfer cap"),
}
USED = N_("Transfer in %(month)s (Asia/Shanghai): %(used)s MB of the cap of %(cap)s MB.")
ENFORCED = N_(
    "Traffic over the cap is now blocked or throttled on every gateway, as the tenant's limits say."
)
PASSED = N_(
    "Traffic continues until the cap is reached; then it is blocked or throttled, as the "
    "tenant's limits say."
)


def quota_mail(
    language: str | None,
    *,
    tenant: tuple[str, str],
    user: str | None,
    level: int,
    month: str,
    used_bytes: int,
    cap_bytes: int,
) -> tuple[str, str]:
    """(subject, body) of a quota event's mail in ``language``; ``tenant`` is (English name,
    Chinese name), ``user`` the e-mail of the user whose cap it is (None: the tenant's)."""
    lang = language_of(language)
    gettext = i18n.translations(lang).gettext
    name_en, name_zh = tenant
    name = name_zh if lang != i18n.DEFAULT and name_zh else name_en
    reached = level >= 100
    subject = gettext(SUBJECT[(user is None, reached)]) % {
        "tenant": name,
        "user": user or "",
        "level": level,
    }
    body = f"{subject} ({month})\n\n" + gettext(USED) % {
        "month": month,
        "used": f"{used_bytes / MB:,.1f}",
        "cap": f"{cap_bytes / MB:,.1f}",
    }
    body += "\n\n" + gettext(ENFORCED if reached else PASSED)
    return f"{subject} ({month})", body + "\n"
