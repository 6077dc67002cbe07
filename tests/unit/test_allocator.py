"""Pure IPAM arithmetic: pools carved from 100.64.0.0/10."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from tongdao.ipam.allocator import OVERLAY_V4, first_fit


def test_first_fit_fills_from_the_bottom() -> None:
    a = first_fit(OVERLAY_V4, 22, [])
    b = first_fit(OVERLAY_V4, 22, [a] if a else [])
    assert str(a) == "100.64.0.0/22"
    assert str(b) == "100.64.4.0/22"


def test_first_fit_skips_a_larger_block_and_realigns() -> None:
    used = [ipaddress.ip_network("100.64.0.0/24"), ipaddress.ip_network("100.64.4.0/22")]
    assert str(first_fit(OVERLAY_V4, 22, used)) == "100.64.8.0/22"
    assert str(first_fit(OVERLAY_V4, 24, used)) == "100.64.1.0/24"


def test_first_fit_reports_exhaustion() -> None:
    assert first_fit(OVERLAY_V4, 10, [OVERLAY_V4]) is None


@settings(max_examples=60)
@given(st.lists(st.integers(16, 26), min_size=1, max_size=40))
def test_carved_pools_never_overlap(sizes: list[int]) -> None:
    used: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for size in sizes:
        block = first_fit(OVERLAY_V4, size, used)
        assert block is not None
        assert block.subnet_of(OVERLAY_V4)  # type: ignore[arg-type]
        assert block.prefixlen == size
        assert all(not block.overlaps(u) for u in used)  # type: ignore[arg-type]
        used.append(block)
