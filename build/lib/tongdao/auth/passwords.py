"""Password hashing with argon2id and the password policy (NIST SP 800-63B-4, 3.1.1.2).

The policy: at least 15 characters for an account that signs in with its password alone,
at least 8 for one with a second factor (TOTP), up to 256; no composition rules (no "a digit
and a capital"); and not a value attackers try first: a password from the shipped blocklist of
common and breached passwords (``common-passwords.txt.gz``, 40,101 entries, built by
``scripts/build_password_blocklist.py`` from the lists Django and zxcvbn ship), compared
case-insensitively, also once the spaces, or the digits and punctuation around it, are taken
away; one short piece repeated (``passwordpassword``, ``abcabcabc…``) or a run of keys
(``123456789012345``, ``qwertyuiopasdfgh``); or the service's name or the account's own e-mail
address.
"""

from __future__ import annotations

import gzip
import re
import unicodedata
from collections.abc import Iterable
from functools import cache
from importlib import resources

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 15  # an account without a second factor
MIN_LENGTH_WITH_SECOND_FACTOR = 8
MAX_LENGTH = 256  # NIST: at least 64
BLOCKLIST_FILE = "common-passwords.txt.gz"
SERVICE_WORDS = ("tongdao", "通道")
_EDGES = re.compile(r"^[\W\d_]+|[\W\d_]+$")
# Keyboard rows and alphabetic / numeric runs: a password inside one of these is a walk.
_FORWARD = ("1234567890" * 4, "qwertyuiopasdfghjklzxcvbnm", "abcdefghijklmnopqrstuvwxyz")
_RUNS: tuple[str, ...] = (*_FORWARD, *(run[::-1] for run in _FORWARD))


class Passwords:
    def __init__(self, time_cost: int = 3, memory_kib: int = 65536) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=1, type=Type.ID
        )
        # A hash to verify against when the user does not exist, so timing does not tell.
        self._decoy = self._hasher.hash("decoy password for timing")

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash or self._decoy, password) and bool(
                password_hash
            )
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False


@cache
def blocklist() -> frozenset[str]:
    """The shipped common and breached passwords, lowercased."""
    raw = resources.files("tongdao.auth").joinpath(BLOCKLIST_FILE).read_bytes()
    return frozenset(line for line in gzip.decompress(raw).decode().splitlines() if line)


def min_length(*, has_second_factor: bool) -> int:
    return MIN_LENGTH_WITH_SECOND_FACTOR if has_second_factor else MIN_LENGTH


def policy_problem(
    password: str, *, has_second_factor: bool = False, context: Iterable[str] = ()
) -> str | None:
    """Why a password is refused, or None.

    ``has_second_factor``: the account signs in with TOTP too (a shorter password is enough);
    the default is the stricter rule. ``context``: words specific to the account, such as its
    e-mail address, that its password must not be.
    """
    shortest = min_length(has_second_factor=has_second_factor)
    if len(password) < shortest:
        return f"must be at least {shortest} characters" + (
            "" if has_second_factor else f" ({MIN_LENGTH_WITH_SECOND_FACTOR} with TOTP turned on)"
        )
    if len(password) > MAX_LENGTH:
        return f"must be at most {MAX_LENGTH} characters"
    folded = unicodedata.normalize("NFKC", password).casefold()
    forms = {folded, "".join(folded.split()), _EDGES.sub("", folded)}
    forms |= {_EDGES.sub("", form) for form in list(forms)}
    listed = blocklist()
    if any(form in listed for form in forms):
        return "is a commonly used or breached password; choose another"
    for form in forms:
        if _repeated_unit(form) is not None or any(form in run for run in _RUNS if form):
            return "is one short piece repeated or a run of keys; choose something less predictable"
    own = {w for w in _context_words(context) if len(w) >= 4}
    if any(form in own for form in forms):
        return "is the name of the service or of your account; choose another"
    return None


def _repeated_unit(text: str) -> str | None:
    """The piece ``text`` repeats (``abcabc`` → ``abc``), or None."""
    if not text:
        return None
    doubled = (text + text).find(text, 1)
    return text[:doubled] if doubled < len(text) else None


def _context_words(context: Iterable[str]) -> set[str]:
    words: set[str] = set(SERVICE_WORDS)
    for item in context:
        folded = unicodedata.normalize("NFKC", item).casefold().strip()
        if not folded:
            continue
        words.add(folded)
        local = folded.partition("@")[0]
        words.add(local)
        words.add(re.sub(r"[\W_]+", "", local))
    return {w for w in words if w}
