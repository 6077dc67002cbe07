"""tongdao.copies: copies used only at the version they were made at, bounded by items."""

from __future__ import annotations

from tongdao.copies import Copies


def test_a_copy_is_used_only_at_its_version() -> None:
    copies: Copies[dict[str, int]] = Copies()
    copies.put("g", 7, {"a": 1})
    assert copies.get("g", 7) == {"a": 1}
    assert copies.get("g", 8) is None and copies.get("h", 7) is None
    copies.put("g", 8, {"b": 2})
    assert copies.get("g", 7) is None and copies.get("g", 8) == {"b": 2}
    copies.clear()
    assert copies.get("g", 8) is None


def test_the_least_recently_used_go_first_and_a_copy_too_big_is_not_kept() -> None:
    copies: Copies[list[int]] = Copies(limit=5)
    copies.put("a", 1, [1, 2])
    copies.put("b", 1, [1, 2])
    assert copies.get("a", 1) == [1, 2]  # a is now the most recently used
    copies.put("c", 1, [1, 2])  # 6 items > 5: b goes
    assert copies.get("b", 1) is None
    assert copies.get("a", 1) == [1, 2] and copies.get("c", 1) == [1, 2]
    copies.put("d", 1, list(range(6)))
    assert copies.get("d", 1) is None and copies.get("a", 1) == [1, 2]
