"""Plotly figures of the HTML report. Each function returns a figure as JSON text ready to be
embedded in a ``<script>`` (``</`` escaped), and stays small for runs of 10,000+ tasks."""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from corral.report import units as fmt
from corral.report._layout import concurrency, layers, order_in_layers, pack_lanes
from corral.report.metrics import AttemptMetrics, RunMetrics, TaskMetrics

MAX_TIMELINE_BARS = 2500
"""Above this many attempts the timeline shows running attempts over time instead of bars."""
MAX_LANES = 150
"""Above this many packed lanes, attempts of a host share one lane."""
MAX_GRAPH_NODES = 150
"""Above this many tasks the graph shows one node per task name."""
MAX_GROUP_NODES = 12
"""A scatter of more tasks than this is drawn as one node (one tall column otherwise)."""
MAX_COLOURED_GROUPS = 12
MAX_HEATMAP_HOSTS = 200
"""Hosts shown in the host heatmap of large runs (those with the most attempts)."""
CONCURRENCY_BINS = 400

PALETTE = [
    "#4C78A8", "#F58518", "#54A24B", "#B279A2", "#72B7B2", "#EECA3B",
    "#9D755D", "#BAB0AC", "#FF9DA6", "#79706E", "#D67195", "#83BCB6",
]
OTHER = "#C7C7C7"
FAILED = "#D62728"
CRITICAL = "#B10026"
STATE_COLOURS = {
    "succeeded": "#54A24B", "cached": "#9ECAE9", "failed": FAILED, "running": "#F58518", "queued": "#4C78A8",
    "pending": "#BAB0AC", "cancelled": "#79706E", "skipped": "#D3D3D3",
}
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"


def to_script_json(fig: Any) -> str:
    """Figure JSON safe inside ``<script>``."""
    text: str = fig.to_json()
    return text.replace("</", "<\\/")


def _layout(fig: Any, height: int, **extra: Any) -> None:
    fig.update_layout(
        height=height, template="plotly_white", font={"family": FONT, "size": 12},
        margin={"l": 10, "r": 10, "t": 30, "b": 40}, hoverlabel={"font": {"family": FONT}},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.01, "x": 0},
        **extra,
    )


def time_unit(span: float) -> tuple[str, float]:
    """Axis unit for a span of seconds: ``("s", 1)``, ``("min", 60)`` or ``("h", 3600)``."""
    if span > 3 * 3600:
        return "h", 3600.0
    if span > 300:
        return "min", 60.0
    return "s", 1.0


def _round(values: Sequence[float | None], digits: int = 4) -> list[float | None]:
    out: list[float | None] = []
    for v in values:
        if v is None or v == 0 or not math.isfinite(v):
            out.append(v)
        else:
            out.append(round(v, max(0, digits - 1 - int(math.floor(math.log10(abs(v)))))))
    return out


def _colours(groups: Sequence[str]) -> dict[str, str]:
    common = [g for g, _ in Counter(groups).most_common(MAX_COLOURED_GROUPS)]
    return {g: PALETTE[i % len(PALETTE)] for i, g in enumerate(common)}


# ---------------------------------------------------------------------------- timeline


def _timed(m: RunMetrics) -> list[AttemptMetrics]:
    return [a for a in m.attempts if a.started_at is not None and a.ended_at is not None]


def _lanes(attempts: Sequence[AttemptMetrics]) -> list[str]:
    by_host: dict[str, list[int]] = defaultdict(list)
    for i, a in enumerate(attempts):
        by_host[f"{a.executor or '?'} · {a.host or '?'}"].append(i)
    packed: dict[str, list[int]] = {}
    for host, idx in by_host.items():
        packed[host] = pack_lanes([(attempts[i].started_at or 0, attempts[i].ended_at or 0)
                                   for i in idx])
    total = sum(max(lanes) + 1 for lanes in packed.values())
    out = [""] * len(attempts)
    for host, idx in by_host.items():
        for i, lane in zip(idx, packed[host], strict=True):
            out[i] = host if total > MAX_LANES else f"{host} · {lane + 1}"
    return out


def _hover(a: AttemptMetrics, clock: fmt.Clock) -> str:
    start, end = a.started_at or 0.0, a.ended_at or 0.0
    return (
        f"<b>{a.task}</b> · attempt {a.number} · {a.state}<br>{a.executor} on {a.host or '?'}"
        f"<br>{clock.text(start)} → {clock.text(end, date=not clock.same_day(start, end))}"
        f"<br>wall {fmt.duration(a.wall)} · queued {fmt.duration(a.queued)}"
        f"<br>CPU {fmt.duration(a.cpu)} · efficiency {fmt.percent(a.cpu_efficiency)}"
        f"<br>peak memory {fmt.size(a.peak_rss)} of {fmt.size(a.memory_requested)}"
    )


def _span(attempts: Sequence[AttemptMetrics]) -> tuple[float, float]:
    t0 = min((a.started_at or 0.0 for a in attempts), default=0.0)
    return t0, max((a.ended_at or 0.0 for a in attempts), default=t0)


def timeline_clock(m: RunMetrics) -> fmt.Clock:
    """The time zone and precision of the timeline's clock times."""
    t0, t1 = _span(_timed(m))
    return fmt.Clock(t0 if t1 > 0 else m.summary.started_at, t1 - t0)


def _clock_axis(fig: Any, clock: fmt.Clock, **where: Any) -> None:
    """A date axis of wall-clock time; hover shows the time to the second (or millisecond)."""
    fig.update_xaxes(
        type="date", title_text=f"clock time ({clock.zone})",
        hoverformat="%Y-%m-%d %H:%M:%S.%L" if clock.precise else "%Y-%m-%d %H:%M:%S", **where,
    )


def timeline_figure(m: RunMetrics) -> tuple[str, str]:
    """The timeline as figure JSON, and a one-line note on how it was drawn."""
    attempts = _timed(m)
    clock = timeline_clock(m)
    if len(attempts) > MAX_TIMELINE_BARS:
        return _concurrency_figure(m, attempts, clock), (
            f"{len(attempts):,} attempts: running attempts over time by task name, then by host "
            "(darker is busier), then the critical path; attempt bars are drawn for runs of up "
            f"to {MAX_TIMELINE_BARS:,} attempts. Times are {clock.zone}."
        )
    return _bars_figure(m, attempts, clock), (
        "Each bar is one attempt, packed into lanes per executor and host; bars with a dark red "
        f"outline are on the critical path, red bars failed. Times are {clock.zone}."
    )


def _bar_trace(
    rows: Sequence[AttemptMetrics], lanes: Sequence[str], clock: fmt.Clock, **style: Any
) -> Any:
    """Horizontal bars from each attempt's start to its end on a date axis: ``base`` is the
    start in epoch milliseconds and ``x`` the length in milliseconds (numbers, not date text)."""
    import plotly.graph_objects as go

    return go.Bar(
        orientation="h", y=list(lanes), base=[clock.ms(a.started_at or 0.0) for a in rows],
        x=_round([max(((a.ended_at or 0) - (a.started_at or 0)) * 1000, 1e-6) for a in rows]),
        hovertext=[_hover(a, clock) for a in rows], hoverinfo="text", **style,
    )


def _bars_figure(m: RunMetrics, attempts: list[AttemptMetrics], clock: fmt.Clock) -> str:
    import plotly.graph_objects as go

    fig = go.Figure()
    lanes = _lanes(attempts)
    colours = _colours([a.group for a in attempts])
    critical = {tm.task_id for tm in m.tasks if tm.critical}
    series: dict[str, list[int]] = defaultdict(list)
    for i, a in enumerate(attempts):
        key = "failed" if a.state != "succeeded" else a.group if a.group in colours else "other"
        series[key].append(i)
    for name, idx in series.items():
        colour = FAILED if name == "failed" else colours.get(name, OTHER)
        fig.add_trace(_bar_trace([attempts[i] for i in idx], [lanes[i] for i in idx], clock,
                                 name=name, marker={"color": colour}))
    on_path = [i for i, a in enumerate(attempts) if a.task_id in critical]
    if on_path:  # drawn over the coloured bars: a legend entry that can be toggled
        fig.add_trace(_bar_trace(
            [attempts[i] for i in on_path], [lanes[i] for i in on_path], clock,
            name="critical path", marker={"color": "rgba(0,0,0,0)",
                                          "line": {"color": CRITICAL, "width": 2.5}},
        ))
    n_lanes = len(set(lanes))
    _layout(fig, max(260, min(1400, 90 + 22 * n_lanes)), barmode="overlay", bargap=0.15)
    _clock_axis(fig, clock)
    if not attempts:
        fig.add_annotation(text="No attempt has started yet.", showarrow=False,
                           xref="paper", yref="paper", x=0.5, y=0.5, font={"size": 14})
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
    fig.update_yaxes(categoryorder="category descending", automargin=True)
    return to_script_json(fig)


def _concurrency_figure(m: RunMetrics, attempts: list[AttemptMetrics], clock: fmt.Clock) -> str:
    """Running attempts over time stacked by task name, a host x time heatmap of running
    attempts, and the critical path's attempts as bars. The binned curves are placed with
    ``x0``/``dx`` (first bin and bin width) instead of one date per point."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    t0, t1 = _span(attempts)
    hosts = Counter(f"{a.executor} · {a.host or '?'}" for a in attempts)
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, row_heights=[0.45, 0.45, 0.1],
                        vertical_spacing=0.04)
    width = (t1 - t0) / CONCURRENCY_BINS
    bins = {"x0": clock.ms(t0 + width / 2), "dx": _round([width * 1000])[0]}
    colours = _colours([a.group for a in attempts])
    by_group: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for a in attempts:
        by_group[a.group if a.group in colours else "other"].append(
            (a.started_at or t0, a.ended_at or t0))
    for group, ivs in sorted(by_group.items(), key=lambda kv: -len(kv[1])):
        fig.add_trace(go.Scatter(
            y=_round(concurrency(ivs, t0, t1, CONCURRENCY_BINS), 3), name=group, **bins,
            stackgroup="names", mode="lines",
            line={"width": 0.5, "color": colours.get(group, OTHER)},
            hovertemplate="%{x}<br>%{y:.1f} running<extra>" + group + "</extra>",
        ), row=1, col=1)
    shown = sorted(h for h, _ in hosts.most_common(MAX_HEATMAP_HOSTS))
    by_host: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for a in attempts:
        by_host[f"{a.executor} · {a.host or '?'}"].append((a.started_at or t0, a.ended_at or t0))
    fig.add_trace(go.Heatmap(
        y=shown, z=[_round(concurrency(by_host[h], t0, t1, CONCURRENCY_BINS), 2) for h in shown],
        **bins, colorscale="Blues", showscale=False, name="hosts",
        hovertemplate="%{y}<br>%{x}<br>%{z:.1f} running<extra></extra>",
    ), row=2, col=1)
    critical = {tm.task_id for tm in m.tasks if tm.critical}
    path = [a for a in attempts if a.task_id in critical]
    fig.add_trace(_bar_trace(path, ["critical path"] * len(path), clock, name="critical path",
                             marker={"color": CRITICAL}, showlegend=False), row=3, col=1)
    _layout(fig, 380 + min(700, 12 * len(shown)))
    fig.update_yaxes(title_text="attempts running", row=1, col=1)
    fig.update_yaxes(title_text="by host", automargin=True, tickfont={"size": 9}, row=2, col=1)
    _clock_axis(fig, clock)
    fig.update_xaxes(title_text=None, row=1, col=1)
    fig.update_xaxes(title_text=None, row=2, col=1)
    return to_script_json(fig)


# ---------------------------------------------------------------------------- distributions


def distributions_figure(m: RunMetrics, max_groups: int = 15) -> str:
    """Box plots of wall time, CPU time and peak memory per task name."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    done = [a for a in m.attempts if a.state == "succeeded"]
    counts = Counter(a.group for a in done)
    groups = [g for g, _ in counts.most_common(max_groups)]
    peak = max((a.peak_rss or 0 for a in done), default=0)
    mem_unit, mem_div = ("GiB", 1024.0**3) if peak > 4 * 1024**3 else ("MiB", 1024.0**2)
    unit, div = time_unit(max((a.wall or 0.0 for a in done), default=0.0))
    titles = (f"wall time ({unit})", f"CPU time ({unit})", f"peak memory ({mem_unit})")
    fig = make_subplots(rows=1, cols=3, shared_yaxes=True, subplot_titles=titles,
                        horizontal_spacing=0.04)
    colours = _colours(groups)
    for g in reversed(groups):
        rows = [a for a in done if a.group == g]
        values = (
            [None if a.wall is None else a.wall / div for a in rows],
            [None if a.cpu is None else a.cpu / div for a in rows],
            [None if a.peak_rss is None else a.peak_rss / mem_div for a in rows],
        )
        for col, vals in enumerate(values, 1):
            fig.add_trace(go.Box(
                x=_round([v for v in vals if v is not None], 3), name=g, orientation="h",
                marker={"color": colours.get(g, OTHER), "size": 3}, line={"width": 1},
                boxpoints="all" if len(rows) <= 100 else "outliers", jitter=0.4,
                showlegend=False,
            ), row=1, col=col)
    _layout(fig, max(240, 80 + 34 * len(groups)))
    fig.update_layout(margin={"t": 60})
    fig.update_yaxes(automargin=True)
    return to_script_json(fig)


# ---------------------------------------------------------------------------- graph


def _task_node(tm: TaskMetrics) -> dict[str, Any]:
    return {"label": tm.name, "colour": STATE_COLOURS.get(tm.state, OTHER), "size": 14,
            "critical": tm.critical,
            "hover": f"<b>{tm.name}</b><br>{tm.state}{' (reused)' if tm.cached else ''}"
                     f"<br>wall {fmt.duration(tm.duration)}"}


def _group_node(g: str, ts: Sequence[TaskMetrics]) -> dict[str, Any]:
    states = Counter(tm.state for tm in ts)
    worst = next((s for s in ("failed", "running", "queued", "pending", "cancelled") if states[s]), None)
    detail = ", ".join(f"{n:,} {s}" for s, n in states.most_common())
    return {"label": f"{g} ×{len(ts):,}", "size": 12 + 4 * math.log10(len(ts)),
            "colour": STATE_COLOURS.get(worst or max(states, key=lambda s: states[s]), OTHER),
            "critical": any(tm.critical for tm in ts),
            "hover": f"<b>{g}</b><br>{len(ts):,} tasks: {detail}"}


def _graph(
    tasks: Sequence[TaskMetrics], edges: Sequence[tuple[int, int]], group_all: bool
) -> tuple[dict[str, dict[str, Any]], list[tuple[str, str]]]:
    """Nodes and links of the pipeline graph: a task per node, except that a scatter of more
    than MAX_GROUP_NODES tasks (or, with ``group_all``, every scatter) is one node."""
    members: dict[str, list[TaskMetrics]] = defaultdict(list)
    for tm in tasks:
        members[tm.group].append(tm)
    collapsed = {g for g, ts in members.items()
                 if len(ts) > 1 and (group_all or len(ts) > MAX_GROUP_NODES)}
    node_of = {tm.idx: tm.group if tm.group in collapsed else tm.name for tm in tasks}
    nodes: dict[str, dict[str, Any]] = {}
    for g, ts in members.items():
        if g in collapsed:
            nodes[g] = _group_node(g, ts)
        else:
            nodes.update((tm.name, _task_node(tm)) for tm in ts)
    links = {(node_of[a], node_of[b]) for a, b in edges
             if a in node_of and b in node_of and node_of[a] != node_of[b]}
    return nodes, sorted(links)


def graph_figure(m: RunMetrics, edges: Sequence[tuple[int, int]]) -> tuple[str, str]:
    """The pipeline graph, left to right; one node per task name when there are many tasks."""
    import plotly.graph_objects as go

    nodes, links = _graph(m.tasks, edges, group_all=len(m.tasks) > MAX_GRAPH_NODES)
    names = list(nodes)
    grouped = len(names) < len(m.tasks)
    layer = layers(names, links)
    pos = order_in_layers(layer, links)
    fig = go.Figure()
    for critical in (False, True):
        xs: list[float | None] = []
        ys: list[float | None] = []
        for a, b in links:
            if (nodes[a]["critical"] and nodes[b]["critical"]) == critical:
                xs += [layer[a], layer[b], None]
                ys += [pos[a], pos[b], None]
        fig.add_trace(go.Scatter(
            x=xs, y=ys, mode="lines", hoverinfo="skip", showlegend=False,
            line={"color": CRITICAL if critical else "#B8BEC6", "width": 2.2 if critical else 1},
        ))
    fig.add_trace(go.Scatter(
        x=[layer[n] for n in names], y=[pos[n] for n in names], mode="markers+text",
        text=[nodes[n]["label"] for n in names] if len(names) <= 400 else None,
        textposition="top center", textfont={"size": 11},
        hovertext=[nodes[n]["hover"] for n in names], hoverinfo="text", showlegend=False,
        marker={"color": [nodes[n]["colour"] for n in names],
                "size": [nodes[n]["size"] for n in names],
                "line": {"color": [CRITICAL if nodes[n]["critical"] else "#FFFFFF" for n in names],
                         "width": [3 if nodes[n]["critical"] else 1 for n in names]}},
    ))
    widest = max(Counter(layer.values()).values(), default=1)
    _layout(fig, max(260, min(1600, 60 + 34 * widest)))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    note = (
        f"{len(m.tasks):,} tasks drawn as {len(names)} nodes: a scatter of many tasks is one "
        "node, whose size grows with their number; colour is the worst state among them." if grouped else
        "One node per task; colour is the task state; the critical path is outlined in dark red."
    )
    return to_script_json(fig), note


def dumps(data: Any) -> str:
    return json.dumps(data).replace("</", "<\\/")
