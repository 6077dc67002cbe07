"""The mail Tongdao sends to people, in the recipient's language.

Each person has a language (``users.language``: the console's choice, kept on the account).
A link mail (an invitation to choose a password, an admin's reset, "forgot password") is
written in it, subject and body; the one-time link is the same in every language. A new
user's language is set when they are invited: the inviting admin's (see
:func:`tongdao.auth.reset.invite`). The English texts are the source; 简体中文 comes from the
console's catalogues (``mail.po``), so a missing translation fails the catalogue check.
"""

from __future__ import annotations

from datetime import timedelta

from tongdao.web import i18n
from tongdao.web.i18n import N_

INVITATION = (
    N_("Tongdao: choose your password"),
    N_("An account on Tongdao was created for you (%(email)s)."),
    N_("If you did not expect this message, ignore it."),
)
ADMIN_RESET = (
    N_("Tongdao: your password was reset"),
    N_(
        "Your administrator reset the password of your Tongdao account (%(email)s): your "
        "sessions and API tokens were ended and the old password no longer works."
    ),
    N_("Nobody else can see this link; do not forward it."),
)
SELF_RESET = (
    N_("Tongdao: choose a new password"),
    N_("Someone asked to reset the password of the Tongdao account %(email)s."),
    N_("If it was not you, ignore this message: your password stays as it is."),
)
GREETING = N_("Hello %(name)s,")
CHOOSE = N_("Choose your password here within %(validity)s; the link works once:")


def language_of(language: str | None) -> str:
    """A stored language as one the mail is written in (English when none or unknown)."""
    return language if language in i18n.LANGUAGES else i18n.DEFAULT


def validity(delta: timedelta, language: str) -> str:
    """``3 days``, ``1 hour``, ``90 minutes`` in ``language``."""
    ngettext = i18n.translations(language).ngettext
    seconds = int(delta.total_seconds())
    if seconds >= 86400 and seconds % 86400 == 0:
        n = seconds // 86400
        return ngettext("%(num)d day", "%(num)d days", n) % {"num": n}
    if seconds >= 3600 and seconds % 3600 == 0:
        n = seconds // 3600
        return ngettext("%(num)d hour", "%(num)d hours", n) % {"num": n}
    n = seconds // 60
    return ngettext("%(num)d minute", "%(num)d minutes", n) % {"num": n}


def link_mail(
    texts: tuple[str, str, str],
    language: str,
    *,
    email: str,
    name: str,
    lifetime: timedelta,
    url: str,
) -> tuple[str, str]:
    """(subject, body) of a mail carrying a one-time link, in ``language``."""
    language = language_of(language)
    gettext = i18n.translations(language).gettext
    subject, opening, closing = (gettext(text) for text in texts)
    body = (
        f"{gettext(GREETING) % {'name': name}}\n\n"
        f"{opening % {'email': email}}\n\n"
        f"{gettext(CHOOSE) % {'validity': validity(lifetime, language)}}\n\n"
        f"{url}\n\n"
        f"{closing}\n"
    )
    return subject, body
