"""Latency samples and their summary (percentiles by linear interpolation, in ms)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of sorted values, interpolating between ranks."""
    if not sorted_values:
        return math.nan
    if len(sorted_values) == 1:
        return sorted_values[0]
    rank = (len(sorted_values) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(sorted_values) - 1)
    frac = rank - low
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * frac


def summarize(samples_ms: Sequence[float]) -> dict[str, Any]:
    ordered = sorted(samples_ms)
    if not ordered:
        return {"samples": 0}
    return {
        "samples": len(ordered),
        "p50_ms": round(percentile(ordered, 50), 3),
        "p95_ms": round(percentile(ordered, 95), 3),
        "p99_ms": round(percentile(ordered, 99), 3),
        "mean_ms": round(statistics.fmean(ordered), 3),
        "min_ms": round(ordered[0], 3),
        "max_ms": round(ordered[-1], 3),
    }


@dataclass
class Metric:
    """One measured operation: client-side latency and, when the server reports it, the
    time the application spent on the request inside the server process."""

    name: str
    description: str
    budget_p95_ms: float | None = None
    latency_ms: list[float] = field(default_factory=list)
    service_ms: list[float] = field(default_factory=list)

    def add(self, latency_ms: float, service_ms: float | None) -> None:
        self.latency_ms.append(latency_ms)
        if service_ms is not None:
            self.service_ms.append(service_ms)

    def to_json(self) -> dict[str, Any]:
        latency = summarize(self.latency_ms)
        out: dict[str, Any] = {
            "description": self.description,
            "latency": latency,
            "service": summarize(self.service_ms),
        }
        if self.budget_p95_ms is not None:
            p95 = latency.get("p95_ms")
            out["budget"] = {
                "p95_ms": self.budget_p95_ms,
                "pass": p95 is not None and p95 <= self.budget_p95_ms,
            }
        return out
