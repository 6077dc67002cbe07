"""First run: while no operator admin exists, a one-time setup code guards the setup page.

The server prints the code on its console and in its log when it starts on a store without an
operator admin (and again whenever it is replaced). Whoever can read the server's output may
create the first operator admin in the browser; nobody else can, wherever they connect from
(a source address proves nothing behind a proxy, where everyone is 127.0.0.1).

The code is held in this process only: it is never stored, so a copy of the store does not
carry it. It is used once. Wrong tries do not replace it: if they did, anyone who can reach the
page could keep the printed code stale (ten wrong posts every few seconds) so that the person
reading the log could never finish, and flood the log with new codes. Twelve characters of a
31-letter alphabet are 59 bits: at a thousand guesses a second, a year of guessing has a chance
of about 4 in 10 million. Wrong tries are counted and logged (at 10, 100, 1000, ...). Each
replica of a multi-replica deployment prints its own; ``tongdao admin bootstrap`` stays for
automation.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import sys
import threading
from dataclasses import dataclass, field

from tongdao.runtime import Runtime

log = logging.getLogger("tongdao.setup")

ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L
GROUPS = 3
GROUP_LENGTH = 4
MAX_WRONG = 10  # wrong tries before the first warning in the log
MAX_OFFERED = 100


def _new_code() -> str:
    groups = ("".join(secrets.choice(ALPHABET) for _ in range(GROUP_LENGTH)) for _ in range(GROUPS))
    return "-".join(groups)


def normalise(code: str) -> str:
    """Upper case, ASCII letters and digits only (other characters cannot be in a code),
    grouped by four."""
    cleaned = "".join(ch for ch in code.upper() if ch.isascii() and ch.isalnum())
    return "-".join(cleaned[i : i + GROUP_LENGTH] for i in range(0, len(cleaned), GROUP_LENGTH))


@dataclass
class FirstRun:
    """The setup code of this server process."""

    _code: str | None = None
    _wrong: int = 0
    _done: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = "/console/setup"

    def announce(self, runtime: Runtime) -> str | None:
        """Make and print the code if the store has no operator admin yet."""
        from tongdao.operator.bootstrap import operator_admin_exists
        from tongdao.runtime import Ctx

        with runtime.db.session(write=False) as session:
            if operator_admin_exists(Ctx(session=session, runtime=runtime)):
                with self._lock:
                    self._done = True
                    self._code = None
                return None
        settings = runtime.settings
        self.url = f"http://{settings.host}:{settings.port}/console/setup"
        return self.code()

    def code(self) -> str | None:
        with self._lock:
            if self._done:
                return None
            if self._code is None:
                self._code = _new_code()
                _print(self._code, self.url)
            return self._code

    def check(self, offered: str) -> bool:
        """Whether ``offered`` is the current code (wrong tries are counted and logged)."""
        offered_bytes = normalise(offered[:MAX_OFFERED]).encode("ascii")
        with self._lock:
            if self._done or self._code is None:
                return False
            if hmac.compare_digest(offered_bytes, self._code.encode("ascii")):
                return True
            self._wrong += 1
            if self._wrong >= MAX_WRONG and str(self._wrong).strip("0") == "1":
                log.warning("%d wrong setup codes posted so far", self._wrong)
            return False

    def finish(self) -> None:
        with self._lock:
            self._done = True
            self._code = None


def _print(code: str, url: str) -> None:
    message = (
        f"No operator admin exists yet. Open the console's setup page {url} "
        f"and enter this one-time setup code: {code}"
    )
    log.warning("%s", message)
    print(f"\n  {message}\n", file=sys.stderr, flush=True)
