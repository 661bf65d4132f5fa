from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.errors import UsageError
from corral.report._figures import timeline_figure
from corral.report._layout import concurrency, layers, pack_lanes
from corral.report.html import tail_file, write_report
from corral.report.metrics import run_metrics
from corral.report.units import Clock, duration, timestamp
from corral.store import Store

from .report_rows import RunBuilder, build_large

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
AXES_JS = """() => {
  const layout = document.getElementById("timeline")._fullLayout;
  return Object.keys(layout).filter((k) => /^xaxis\\d*$/.test(k)).map((k) => ({
    type: layout[k].type, title: (layout[k].title || {}).text || "", range: layout[k].range}));
}"""


def test_layout_helpers() -> None:
    assert pack_lanes([(0, 10), (5, 15), (10, 20), (12, 13)]) == [0, 1, 0, 2]
    assert concurrency([(0, 10), (5, 10)], 0, 10, 2) == [1.0, 2.0]
    assert layers(["a", "b", "c", "d"], [("a", "b"), ("b", "c"), ("a", "c")]) == {
        "a": 0, "b": 1, "c": 2, "d": 0}


def test_tail_file(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    tail = tail_file(log, lines=3)
    assert tail == "…\nline 97\nline 98\nline 99"
    assert tail_file(tmp_path / "missing.log") is None


def test_small_report_sections(store: Store, tmp_path: Path, galaxy: RunBuilder) -> None:
    out = write_report(store, "run-a", tmp_path / "r" / "report.html")
    html = out.read_text()
    assert html.count("<script>") == 2  # plotly.js once, the figures once
    assert 'id="timeline"' in html and 'id="graph"' in html and 'id="distributions-plot"' in html
    assert "roots: requested 8G, peak 614.4M — request 1G" in html
    assert "ValueError: bad value" in html and "step 2" in html  # error and log tails
    assert "Most common errors" not in html  # a single failure needs no summary
    assert "numpy 1.26.4" in html and "3.11.9 (CPython)" in html
    for section in ("Critical path", "Distributions per task name", "Task names", "Failures"):
        assert section in html
    assert "http://" not in re.sub(r"http://x/raw\.csv|http://www\.w3\.org[^\"']*", "", html)[
        len("<!DOCTYPE html>"):200]  # nothing fetched in the head


def test_report_escapes_task_names(store: Store, tmp_path: Path) -> None:
    b = RunBuilder(store, "esc", 1.0, tmp_path)
    b.task("evil</script><b>x", attempts=[{"wall": 1}])
    html = write_report(store, "esc", tmp_path / "e.html").read_text()
    assert "evil</script>" not in html


def test_report_of_a_run_without_attempts(store: Store, tmp_path: Path) -> None:
    b = RunBuilder(store, "empty", 1.0, tmp_path, environment=None, state="pending")
    b.task("only", state="pending", attempts=[])
    html = write_report(store, "empty", tmp_path / "e.html").read_text()
    assert "Not recorded for this run." in html and 'id="timeline"' in html


def test_report_path_is_a_directory(store: Store, tmp_path: Path, galaxy: RunBuilder) -> None:
    with pytest.raises(UsageError, match="give a file name"):
        write_report(store, "run-a", tmp_path)


@pytest.fixture
def kolkata() -> Iterator[None]:
    """Local time is India's (UTC+05:30, no daylight saving) for the test."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Kolkata"
    time.tzset()
    yield
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()


def test_clock_zone_and_text(kolkata: None) -> None:
    clock = Clock(1_700_000_000.0, span=100)
    assert clock.zone == "IST, UTC+05:30" and clock.shift == 19_800
    assert clock.ms(1_700_000_000.25) == (1_700_000_000 + 19_800) * 1000 + 250
    assert clock.text(1_700_000_000.25) == "2023-11-15 03:43:20.250"
    assert Clock(1_700_000_000.0, span=3600).text(1_700_000_000.25, date=False) == "03:43:20"


def test_timestamps_name_their_zone(kolkata: None) -> None:
    assert timestamp(1_700_000_000.0) == "2023-11-15 03:43:20 IST"
    assert timestamp(None) == "-"


def test_short_durations_in_milliseconds() -> None:
    assert [duration(x) for x in (0, 0.0031, 0.045, 0.35, 42, 192)] == [
        "0 s", "3.1 ms", "45 ms", "0.35 s", "42 s", "3m 12s"]


def _figure(text: str) -> dict[str, Any]:
    figure: dict[str, Any] = json.loads(text.replace("<\\/", "</"))
    return figure


def test_timeline_is_on_a_clock_axis(
    store: Store, galaxy: RunBuilder, kolkata: None
) -> None:
    text, note = timeline_figure(run_metrics(store, "run-a"))
    fig = _figure(text)
    axis = fig["layout"]["xaxis"]
    assert axis["type"] == "date" and axis["title"]["text"] == "clock time (IST, UTC+05:30)"
    assert note.endswith("Times are IST, UTC+05:30.")
    bars = {tr["name"]: tr for tr in fig["data"]}
    prep = bars["prep"]  # starts at the run's t0, walls 20 s: epoch ms shifted to local time
    assert prep["base"] == [(1_700_000_000 + 19_800) * 1000] and prep["x"] == [20_000]
    assert "2023-11-15 03:43:20.000 → 03:43:40.000" in prep["hovertext"][0]
    path = bars["critical path"]  # an outline over the bars of the critical path
    assert path["marker"]["line"]["color"] == "#B10026" and len(path["base"]) >= 3
    assert any("<b>prep</b>" in h for h in path["hovertext"])


def test_timeline_without_attempts(store: Store, tmp_path: Path) -> None:
    b = RunBuilder(store, "empty", 1.0, tmp_path, environment=None, state="pending")
    b.task("only", state="pending", attempts=[])
    fig = _figure(timeline_figure(run_metrics(store, "empty"))[0])
    assert fig["data"] == [] and fig["layout"]["annotations"][0]["text"].startswith("No attempt")


@pytest.fixture(scope="module")
def big_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("big")
    store = Store.open(root)
    build_large(store, 10_000)
    path = write_report(store, "big", root / "big.html")
    store.close()
    return path


def test_report_of_10000_tasks_stays_small(big_report: Path) -> None:
    size = big_report.stat().st_size
    assert size < 10 * 1024**2, f"report is {size / 1024**2:.1f} MiB"
    html = big_report.read_text()
    assert 'id="timeline"' in html and "10,300 attempts: running attempts over time" in html
    assert '"type":"date"' in html and '"dx":' in html  # binned curves: first bin + bin width
    assert "Showing 500 of 10,000 tasks" in html
    assert "sim \\u00d79,997" in html  # graph collapsed to task names
    assert "Most common errors" in html and "RuntimeError: diverged" in html
    assert "95 more failed tasks" not in html and "20 more failed tasks" in html


def _chromium_or_skip() -> str:
    if CHROMIUM:
        return CHROMIUM
    if os.environ.get("CORRAL_REQUIRE_CLUSTERS") == "1":
        pytest.fail("chromium is required (CORRAL_REQUIRE_CLUSTERS=1); apt-get install chromium")
    pytest.skip("chromium not installed")


@pytest.mark.browser
@pytest.mark.parametrize("which", ["small", "large"])
def test_report_renders_in_chromium(
    which: str, store: Store, tmp_path: Path, galaxy: RunBuilder, big_report: Path
) -> None:
    chromium = _chromium_or_skip()
    playwright = pytest.importorskip("playwright.sync_api")
    path = write_report(store, "run-a", tmp_path / "small.html") if which == "small" else big_report
    errors: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"],
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2000})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(path.as_uri(), wait_until="load")
            page.wait_for_selector("#timeline .main-svg", timeout=30_000)
            assert page.locator("#graph .main-svg").count() >= 1
            assert page.locator("#timeline .main-svg").count() >= 1
            bars = page.locator("#timeline g.trace").count()
            assert bars >= 2
            axes = page.evaluate(AXES_JS)
            assert axes and all(a["type"] == "date" for a in axes), axes
            assert any(a["title"].startswith("clock time (") for a in axes), axes
            assert all(a["range"][0].startswith("2023-11-1") for a in axes), axes
            ticks = page.locator("#timeline .xaxislayer-above text").all_text_contents()
            assert any(re.fullmatch(r"\d\d:\d\d(:\d\d)?", t) for t in ticks), ticks
            if which == "small":
                bar = page.locator("#timeline g.trace.bars g.point path").first
                bar.evaluate("e => e.scrollIntoView({block: 'center'})")  # not under the nav
                box = bar.bounding_box()  # Plotly's drag layer above the bars gets the mouse
                assert box is not None
                page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
                label = page.locator("#timeline .hoverlayer .hovertext").first.text_content() or ""
                assert "→" in label and "wall" in label, label
            page.screenshot(path=str(tmp_path / f"{which}.png"), full_page=False)
        finally:
            browser.close()
    assert errors == []
    assert (tmp_path / f"{which}.png").stat().st_size > 10_000


def test_graph_draws_a_large_scatter_as_one_node() -> None:
    """32 map elements and a gather: the scatter is one node (not a 32-node column), a small
    scatter and single tasks keep a node each, and links follow the collapsed nodes."""
    from corral.report._figures import STATE_COLOURS, _graph
    from corral.report.metrics import TaskMetrics

    def tm(idx: int, name: str, group: str, state: str = "succeeded") -> TaskMetrics:
        return TaskMetrics(idx, idx, name, group, state, False, 1, 1.0, None)

    tasks = [tm(i, f"roots[{i}]", "roots", "failed" if i == 7 else "succeeded")
             for i in range(32)]
    tasks += [tm(32 + i, f"small[{i}]", "small") for i in range(3)]
    tasks += [tm(35, "heatmap", "heatmap"), tm(36, "prep", "prep")]
    edges = [(36, i) for i in range(32)] + [(i, 35) for i in range(32)] + [(36, 32), (32, 35)]
    nodes, links = _graph(tasks, edges, group_all=False)
    assert set(nodes) == {"roots", "small[0]", "small[1]", "small[2]", "heatmap", "prep"}
    assert nodes["roots"]["label"] == "roots ×32" and nodes["roots"]["colour"] == STATE_COLOURS["failed"]
    assert links == [("prep", "roots"), ("prep", "small[0]"), ("roots", "heatmap"),
                     ("small[0]", "heatmap")]
    everything, _ = _graph(tasks, edges, group_all=True)
    assert set(everything) == {"roots", "small", "heatmap", "prep"}
