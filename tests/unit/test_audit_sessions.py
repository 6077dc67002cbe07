"""Connection sessions from usage reports: the pure planner and the endpoint parser."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from tongdao.audit.sessions import INACTIVITY, Conn, Seen, plan, split_endpoint

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
TENANT = uuid.uuid4()
KEY = "k" * 43 + "="


def seen(
    *,
    endpoint: str | None = "198.51.100.2:51820",
    rx: int = 10,
    tx: int = 20,
    ref: str = "dev-1",
    kind: str = "device",
    handshake: datetime | None = None,
) -> Seen:
    return Seen(KEY, TENANT, kind, ref, endpoint, rx, tx, handshake)


def period(n: int) -> tuple[datetime, datetime]:
    """The n-th 30-second report period."""
    return T0 + timedelta(seconds=30 * n), T0 + timedelta(seconds=30 * (n + 1))


def run(conns: dict[str, Conn], peers: list[Seen], n: int) -> tuple[list[Conn], list[Conn]]:
    start, end = period(n)
    before = {key: replace(conn) for key, conn in conns.items()}
    result = plan(conns, peers, start, end)
    assert conns == before  # the planner changes nothing it was given
    after = result.after(conns)
    conns.clear()
    conns.update(after)
    return result.opened, result.closed


def test_a_session_starts_at_the_handshake_adds_up_and_ends_after_inactivity() -> None:
    conns: dict[str, Conn] = {}
    handshake = period(0)[0] + timedelta(seconds=7)
    opened, closed = run(conns, [seen(handshake=handshake)], 0)
    assert len(opened) == 1 and not closed
    assert opened[0].started_at == handshake
    run(conns, [seen(rx=1, tx=2)], 1)
    run(conns, [], 2)  # quiet for a while: still open
    assert conns[KEY].rx_bytes == 11 and conns[KEY].tx_bytes == 22
    assert conns[KEY].last_active_at == period(1)[1]
    quiet = int(INACTIVITY.total_seconds() // 30) + 2
    opened, closed = run(conns, [], quiet)
    assert not opened and [c.last_active_at for c in closed] == [period(1)[1]]
    assert not conns


def test_a_new_endpoint_ends_the_session_and_starts_another() -> None:
    conns: dict[str, Conn] = {}
    run(conns, [seen()], 0)
    opened, closed = run(conns, [seen(endpoint="203.0.113.9:40000", rx=5, tx=5)], 1)
    assert [c.endpoint for c in closed] == ["198.51.100.2:51820"]
    assert [(c.endpoint, c.started_at, c.rx_bytes) for c in opened] == [
        ("203.0.113.9:40000", period(1)[0], 5)
    ]


def test_activity_after_inactivity_is_a_new_session_and_transit_is_not_one() -> None:
    conns: dict[str, Conn] = {}
    run(conns, [seen(), seen(kind="pop", ref="pop-2")], 0)
    assert len(conns) == 1
    later = int(INACTIVITY.total_seconds() // 30) + 3
    opened, closed = run(conns, [seen()], later)
    assert len(opened) == 1 and len(closed) == 1
    assert opened[0].started_at == period(later)[0]  # no handshake in this period
    # Same key now for another device: the old session ends.
    opened, closed = run(conns, [seen(ref="dev-2")], later + 1)
    assert [c.peer_ref for c in closed] == ["dev-1"] and [c.peer_ref for c in opened] == ["dev-2"]


def test_an_old_handshake_does_not_backdate_the_start() -> None:
    conns: dict[str, Conn] = {}
    opened, _ = run(conns, [seen(handshake=T0 - timedelta(hours=3))], 0)
    assert opened[0].started_at == period(0)[0]


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("198.51.100.2:51820", ("198.51.100.2", 51820)),
        ("[fd00::2]:51820", ("fd00::2", 51820)),
        (None, (None, None)),
        ("", (None, None)),
        ("not-an-endpoint", ("not-an-endpoint", None)),
        ("198.51.100.2:99999", ("198.51.100.2:99999", None)),
    ],
)
def test_split_endpoint(endpoint: str | None, expected: tuple[str | None, int | None]) -> None:
    assert split_endpoint(endpoint) == expected
