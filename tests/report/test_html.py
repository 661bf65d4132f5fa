from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from corral.errors import UsageError
from corral.report._layout import concurrency, layers, pack_lanes
from corral.report.html import tail_file, write_report
from corral.store import Store

from .report_rows import RunBuilder, build_large

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


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
            page.screenshot(path=str(tmp_path / f"{which}.png"), full_page=False)
        finally:
            browser.close()
    assert errors == []
    assert (tmp_path / f"{which}.png").stat().st_size > 10_000
