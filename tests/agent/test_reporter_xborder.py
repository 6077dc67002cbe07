"""The reporter's cross-border bytes: deltas of the gateway's cumulative nftables counters in
each row (``cross_border_rx_bytes`` / ``cross_border_tx_bytes``), never more than the row's
rx / tx, nothing lost or counted twice across a reporter restart or a counter reset."""

from __future__ import annotations

from tests.agent.test_reporter import IFNAME, Bench, bench
from tongdao.agent.reporter import Reporter

__all__ = ["bench"]


def rows(b: Bench) -> dict[str, tuple[int, int, int, int]]:
    return {
        p["peer_key"]: (
            p["rx_bytes"],
            p["tx_bytes"],
            p["cross_border_rx_bytes"],
            p["cross_border_tx_bytes"],
        )
        for p in b.server.reports[-1]["peers"]
    }


def test_cross_border_deltas_survive_restarts_and_resets(bench: Bench) -> None:
    a, b = bench.keys[:2]
    counters: dict[tuple[str, str], tuple[int, int]] = {}

    def reporter() -> Reporter:
        return bench.reporter(cross_border=lambda: dict(counters))

    r = reporter()
    bench.engine.set(a, 10_000, 20_000)
    bench.engine.set(b, 500, 500)
    counters[(IFNAME, a)] = (4_000, 9_000)
    assert bench.tick(r)
    assert rows(bench) == {a: (10_000, 20_000, 4_000, 9_000), b: (500, 500, 0, 0)}
    # The agent restarts: the next reporter goes on from the saved baseline.
    r = reporter()
    bench.engine.set(a, 15_000, 30_000)
    counters[(IFNAME, a)] = (5_000, 10_000)
    assert bench.tick(r)
    assert rows(bench)[a] == (5_000, 10_000, 1_000, 1_000)
    # The host rebooted: the counter starts again from zero and counts in full.
    counters[(IFNAME, a)] = (700, 300)
    bench.engine.set(a, 16_000, 31_000)
    assert bench.tick(r)
    assert rows(bench)[a] == (1_000, 1_000, 700, 300)
    # Read a moment apart, the counters claim more than WireGuard carried: capped at it.
    counters[(IFNAME, a)] = (2_700, 300)
    bench.engine.set(a, 17_000, 31_000)
    assert bench.tick(r)
    assert rows(bench)[a] == (1_000, 0, 1_000, 0)
    # A failed read keeps the baseline: nothing counted twice afterwards.

    def broken() -> dict[tuple[str, str], tuple[int, int]]:
        raise OSError("nft is gone")

    r = bench.reporter(cross_border=broken)
    bench.engine.set(a, 18_000, 31_000)
    assert bench.tick(r)
    assert rows(bench)[a] == (1_000, 0, 0, 0)
    r = reporter()
    counters[(IFNAME, a)] = (2_900, 300)
    bench.engine.set(a, 19_000, 31_000)
    assert bench.tick(r)
    assert rows(bench)[a] == (1_000, 0, 200, 0)


def test_engine_read_failure_keeps_the_cross_border_baseline(bench: Bench) -> None:
    """A tick whose engine read fails keeps the interface's cross-border baseline as it keeps
    the engine's: the next tick counts only what came since, not the whole counter again."""
    from tongdao.agent.engine import EngineError

    a = bench.keys[0]
    counters: dict[tuple[str, str], tuple[int, int]] = {}
    r = bench.reporter(cross_border=lambda: dict(counters))
    bench.engine.set(a, 10_000, 20_000)
    counters[(IFNAME, a)] = (4_000, 9_000)
    assert bench.tick(r)
    assert rows(bench)[a] == (10_000, 20_000, 4_000, 9_000)
    bench.engine.error = EngineError("uapi socket busy")
    bench.tick(r)  # nothing read for the interface this time
    bench.engine.error = None
    bench.engine.set(a, 11_000, 21_000)
    counters[(IFNAME, a)] = (4_500, 9_500)
    assert bench.tick(r)
    assert rows(bench)[a] == (1_000, 1_000, 500, 500)


def test_peer_missing_from_the_engine_once_keeps_its_cross_border_baseline(bench: Bench) -> None:
    """A peer the engine does not list for one tick (its interface is being rebuilt) keeps
    its cross-border baseline while its counter is still in the table."""
    a = bench.keys[0]
    counters: dict[tuple[str, str], tuple[int, int]] = {}
    r = bench.reporter(cross_border=lambda: dict(counters))
    bench.engine.set(a, 10_000, 20_000)
    counters[(IFNAME, a)] = (4_000, 9_000)
    assert bench.tick(r)
    del bench.engine.counters[IFNAME]  # the interface is gone for a tick
    bench.tick(r)
    bench.engine.set(a, 1_000, 1_000)  # a new daemon counts from zero
    counters[(IFNAME, a)] = (4_500, 9_500)  # the counter table outlived it
    assert bench.tick(r)
    assert rows(bench)[a] == (1_000, 1_000, 500, 500)
