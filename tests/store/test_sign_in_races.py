"""Sign-in under concurrency, on SQLite and PostgreSQL: one TOTP code signs in once however
many requests race with it, and a burst of parallel guesses from one address gets no more
tries than the throttle allows one after another."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pyotp

from tests.conftest import both_stores
from tests.support.world import PASSWORD, make_user
from tongdao.auth import service
from tongdao.errors import AuthenticationError, Throttled
from tongdao.runtime import Ctx, Runtime
from tongdao.tenancy.models import User

THREADS = 8
EMAIL = "racer@operator.example"


def _parallel(work: Callable[[int], str]) -> list[str]:
    """Run ``work`` in THREADS threads released together; their outcomes."""
    outcomes: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(THREADS)

    def runner(n: int) -> None:
        try:
            start.wait(timeout=30)
            outcome = work(n)
        except BaseException as exc:
            outcome = f"raised {type(exc).__name__}: {exc}"
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=runner, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "sign-in threads hung"
    return outcomes


def _attempt(runtime: Runtime, password: str, code: str | None, source_ip: str) -> str:
    with runtime.db.session() as session:
        ctx = Ctx(session=session, runtime=runtime, source_ip=source_ip)
        try:
            service.login(ctx, EMAIL, password, code, source_ip)
        except AuthenticationError:
            return "refused"
        except Throttled:
            return "throttled"
        session.commit()
        return "signed in"


def _enable_totp(runtime: Runtime) -> pyotp.TOTP:
    user_id, _token = make_user(runtime, EMAIL, ["auditor"])
    with runtime.db.session() as session:
        user = session.get(User, user_id)
        assert user is not None
        ctx = Ctx(session=session, runtime=runtime)
        secret, _uri = service.begin_totp(ctx, user)
        totp = pyotp.TOTP(secret)
        service.confirm_totp(ctx, user, totp.now())
        session.commit()
    return totp


@both_stores
def test_one_totp_code_signs_in_once(runtime: Runtime) -> None:
    totp = _enable_totp(runtime)
    code = totp.at(time.time() + 30)
    outcomes = _parallel(lambda n: _attempt(runtime, PASSWORD, code, f"198.51.100.{n + 1}"))
    assert sorted(outcomes) == ["refused"] * (THREADS - 1) + ["signed in"], outcomes


@both_stores
def test_a_burst_of_guesses_gets_only_the_free_tries(runtime: Runtime) -> None:
    make_user(runtime, EMAIL, ["auditor"])
    free = runtime.settings.login_max_failures
    assert free < THREADS
    outcomes = _parallel(lambda n: _attempt(runtime, "a parallel guess", None, "203.0.113.9"))
    assert outcomes.count("refused") == free, outcomes
    assert outcomes.count("throttled") == THREADS - free, outcomes
