"""Pure layout helpers for the report figures: timeline lanes, concurrency curves, DAG layers."""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence
from typing import TypeVar

N = TypeVar("N", bound=Hashable)


def pack_lanes(intervals: Sequence[tuple[float, float]]) -> list[int]:
    """Assign each ``(start, end)`` interval the lowest free lane so that intervals in one lane
    never overlap. Returns the lane of each interval, in input order."""
    order = sorted(range(len(intervals)), key=lambda i: intervals[i])
    free: list[int] = []
    busy: list[tuple[float, int]] = []
    lanes = [0] * len(intervals)
    count = 0
    for i in order:
        start, end = intervals[i]
        while busy and busy[0][0] <= start:
            heapq.heappush(free, heapq.heappop(busy)[1])
        if free:
            lane = heapq.heappop(free)
        else:
            lane, count = count, count + 1
        lanes[i] = lane
        heapq.heappush(busy, (end, lane))
    return lanes


def concurrency(
    intervals: Iterable[tuple[float, float]], t0: float, t1: float, bins: int
) -> list[float]:
    """Average number of running intervals in each of ``bins`` equal bins of ``[t0, t1]``."""
    width = (t1 - t0) / bins if t1 > t0 else 1.0
    events: list[tuple[float, int]] = []
    for start, end in intervals:
        if end > start:
            events.append((start, 1))
            events.append((end, -1))
    events.sort()
    area = [0.0] * bins
    running, last = 0, t0
    for time, delta in [*events, (t1, 0)]:
        time = min(max(time, t0), t1)
        _spread(area, running, last, time, t0, width)
        running += delta
        last = time
    return [a / width for a in area]


def _spread(area: list[float], running: int, a: float, b: float, t0: float, width: float) -> None:
    """Add ``running * dt`` over ``[a, b]`` to the bins it covers."""
    if running == 0 or b <= a:
        return
    first = min(int((a - t0) / width), len(area) - 1)
    last = min(int((b - t0) / width), len(area) - 1)
    for k in range(first, last + 1):
        lo = max(a, t0 + k * width)
        hi = min(b, t0 + (k + 1) * width)
        if hi > lo:
            area[k] += running * (hi - lo)


def layers(nodes: Sequence[N], edges: Iterable[tuple[N, N]]) -> dict[N, int]:
    """Longest-path layering of a DAG: sources in layer 0, each node one right of its deepest
    parent. Nodes on a cycle (not expected) go after all others."""
    known = set(nodes)
    children: dict[N, list[N]] = defaultdict(list)
    indeg: dict[N, int] = dict.fromkeys(nodes, 0)
    for a, b in edges:
        if a in known and b in known and a != b:
            children[a].append(b)
            indeg[b] += 1
    layer = dict.fromkeys(nodes, 0)
    ready = [n for n in nodes if indeg[n] == 0]
    done = 0
    while ready:
        n = ready.pop()
        done += 1
        for c in children[n]:
            layer[c] = max(layer[c], layer[n] + 1)
            indeg[c] -= 1
            if indeg[c] == 0:
                ready.append(c)
    if done < len(nodes):
        deepest = max(layer.values(), default=0) + 1
        for n in nodes:
            if indeg[n] > 0:
                layer[n] = deepest
    return layer


def order_in_layers(
    layer: dict[N, int], edges: Iterable[tuple[N, N]]
) -> dict[N, float]:
    """Vertical positions: nodes of a layer ordered by the mean position of their parents
    (one barycentre sweep), centred on 0."""
    parents: dict[N, list[N]] = defaultdict(list)
    for a, b in edges:
        if a in layer and b in layer:
            parents[b].append(a)
    by_layer: dict[int, list[N]] = defaultdict(list)
    for n, k in layer.items():
        by_layer[k].append(n)
    pos: dict[N, float] = {}
    for k in sorted(by_layer):
        members = by_layer[k]

        def key(n: N) -> float:
            ps = [pos[p] for p in parents[n] if p in pos]
            return sum(ps) / len(ps) if ps else 0.0

        members.sort(key=key)
        offset = (len(members) - 1) / 2
        for i, n in enumerate(members):
            pos[n] = i - offset
    return pos
