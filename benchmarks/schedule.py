"""How long a set of runs takes on N GPUs when each GPU takes the longest run still waiting (longest-first)."""

from __future__ import annotations

import heapq


def longest_first(costs: list[float], gpus: int) -> list[float]:
    """Return each GPU's busy time when runs, longest first, go to the GPU that is free soonest."""
    if gpus < 1:
        raise ValueError(f"gpus must be at least 1, got {gpus}")
    loads = [(0.0, g) for g in range(gpus)]
    for cost in sorted(costs, reverse=True):
        load, g = heapq.heappop(loads)
        heapq.heappush(loads, (load + cost, g))
    return [load for load, _ in sorted(loads, key=lambda t: t[1])]


def makespan(costs: list[float], gpus: int) -> float:
    """Return the wall time of `costs` on `gpus` GPUs under longest-first scheduling."""
    return max(longest_first(costs, gpus))


def projection(costs: list[float], gpus: tuple[int, ...] = (1, 2, 4, 8)) -> list[list]:
    """Return table rows [GPUs, wall time, lower bound max(sum/N, longest run), efficiency] for each GPU count."""
    total, longest = sum(costs), max(costs, default=0.0)
    rows = []
    for n in gpus:
        wall = makespan(costs, n)
        rows.append([n, wall, max(total / n, longest), total / (n * wall) if wall else 1.0])
    return rows
