"""``corral ui`` on a local working directory, driven in real headless Chromium: the runs list,
a failed run's page (graph and timeline drawn by Plotly, the failure's traceback and log, `why`,
the lineage of an output, the report's download), and a running run cancelled with confirmation
while the pages follow it live. Every page is screenshotted and has no console error."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.store import Store

from .conftest import CHAIN, SUMS, Browser

CORRAL = [sys.executable, "-m", "corral"]


def corral(wd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CORRAL, *args], cwd=wd, capture_output=True, text=True, timeout=120)  # noqa: S603


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two runs of sums (succeeded; failed, its total rerun with scale 2), shared by the module."""
    wd = tmp_path_factory.mktemp("wd")
    (wd / "sums.py").write_text(SUMS)
    (wd / "chain.py").write_text(CHAIN)
    assert corral(wd, "run", "sums.py").returncode == 0
    assert corral(wd, "run", "sums.py", "--fail", "--scale", "2").returncode == 1
    return wd


@pytest.fixture(scope="module")
def ui(workdir: Path) -> Iterator[str]:
    proc = subprocess.Popen([*CORRAL, "ui", "-C", str(workdir)], stdout=subprocess.PIPE,  # noqa: S603
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert found, line + (proc.stderr.read() if proc.stderr and proc.poll() is not None else "")
        url = found.group(0)
        _wait_up(url)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _wait_up(url: str) -> None:
    import httpx

    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            assert time.monotonic() < deadline, f"corral ui did not answer at {url}"
            time.sleep(0.1)


def _run_ids(workdir: Path) -> dict[str, str]:
    store = Store.open(workdir)
    try:
        return {f"{r['pipeline']}-{r['state']}": r["id"] for r in store.list_runs(10)}
    finally:
        store.close()


def test_runs_list_and_a_failed_runs_page(workdir: Path, ui: str, browser: Browser, tmp_path: Path) -> None:
    ids = _run_ids(workdir)
    page = browser.page
    page.goto(ui)
    assert page.locator("#runs tbody tr").count() >= 2
    assert page.locator(f'tr[data-run="{ids["sums-failed"]}"] [data-state]').inner_text() == "failed"
    assert page.locator(f'tr[data-run="{ids["sums-succeeded"]}"] [data-progress]').inner_text() == "5 / 5"
    page.screenshot(path=str(tmp_path / "runs.png"))
    page.select_option("#f-state", "failed")
    page.get_by_role("button", name="Filter", exact=True).click()
    assert page.locator("#runs tbody tr").count() == 1

    page.get_by_role("link", name=ids["sums-failed"]).click()
    page.wait_for_selector("#graph .main-svg")
    page.wait_for_selector("#timeline .main-svg")
    assert page.locator("#timeline g.trace").count() >= 1
    failure = page.locator("details.failure").first
    assert "boom" in failure.inner_text() and "ValueError: bad value 3" in failure.inner_text()
    assert "about to fail" in failure.inner_text()  # the log's tail
    assert "square" in page.locator("#h-resources + .scroll").inner_text()
    page.screenshot(path=str(tmp_path / "run.png"), full_page=True)

    page.fill("#why-task", "total")
    page.get_by_role("button", name="Explain", exact=True).click()
    assert "ran" in page.locator(".explanation").inner_text()
    assert "scale" in page.locator(".explanation").inner_text()  # its parameter changed: 1 -> 2
    page.fill("#lineage-path", "total.txt")
    page.get_by_role("button", name="Trace", exact=True).click()
    tree = page.locator("ul.tree").inner_text()
    assert "write" in tree and "total" in tree and "square[2]" in tree
    page.fill("#lineage-path", "nothing.txt")
    page.get_by_role("button", name="Trace", exact=True).click()
    assert "no task of any run wrote" in page.locator("#lineage-error").inner_text()
    page.screenshot(path=str(tmp_path / "why-lineage.png"), full_page=True)

    with page.expect_download() as info:
        page.get_by_role("link", name="Download HTML report").click()
    report = Path(info.value.path()).read_text()
    assert ids["sums-failed"] in report and "<html" in report
    assert browser.errors == []


def test_cancel_a_running_run_with_confirmation(workdir: Path, ui: str, browser: Browser, tmp_path: Path) -> None:
    env = {**os.environ}
    running = subprocess.Popen([*CORRAL, "run", "chain.py", "--n", "30", "--seconds", "1"], cwd=workdir,  # noqa: S603
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 30
        while "chain-running" not in _run_ids(workdir):
            assert time.monotonic() < deadline and running.poll() is None, "the chain did not start"
            time.sleep(0.2)
        run_id = _run_ids(workdir)["chain-running"]
        page = browser.page
        page.goto(ui)
        row = page.locator(f'tr[data-run="{run_id}"]')
        assert row.locator("[data-state]").inner_text() == "running"
        first = row.locator("[data-progress]").inner_text()
        # the list follows the run by itself (server-sent events): its progress moves on
        page.wait_for_function(
            "([id, first]) => document.querySelector(`tr[data-run='${id}'] [data-progress]`).textContent !== first",
            arg=[run_id, first], timeout=15_000)
        page.screenshot(path=str(tmp_path / "runs-live.png"))

        page.get_by_role("link", name=run_id).click()
        page.wait_for_selector("#timeline .main-svg")
        page.get_by_role("link", name="Cancel run").click()
        assert "Cancel run" in page.locator("h1").inner_text()  # the confirmation page
        page.screenshot(path=str(tmp_path / "confirm.png"))
        page.get_by_role("button", name="Yes, cancel the run").click()
        page.wait_for_selector("#run-state .st-cancelled", timeout=30_000)  # followed live, then reloaded
        page.screenshot(path=str(tmp_path / "cancelled.png"), full_page=True)
        assert running.wait(timeout=30) == 1  # corral run saw its run cancelled
        assert _run_ids(workdir).get("chain-cancelled") == run_id
        assert browser.errors == []
    finally:
        if running.poll() is None:
            running.kill()
            running.wait()


def test_runs_list_filters_pages_and_bad_input(workdir: Path) -> None:
    from fastapi.testclient import TestClient

    from corral.web.app import create_app

    client = TestClient(create_app(workdir))
    ids = _run_ids(workdir)
    assert client.get("/", params={"q": ids["sums-failed"][-6:]}).text.count("data-run=") == 1
    assert client.get("/", params={"pipeline": "nosuch"}).text.count("data-run=") == 0
    assert client.get("/", params={"pipeline": "sums", "state": ""}).text.count("data-run=") == 2
    bad = client.get("/", params={"state": "finished"})
    assert bad.status_code == 400 and "unknown run state &#39;finished&#39;" in bad.text
    assert client.get("/", params={"page": "0"}).status_code == 400
    assert client.get("/runs/nosuchrun").status_code == 404
    done = client.get(f"/runs/{ids['sums-succeeded']}/control", params={"action": "cancel"})
    assert done.status_code == 400 and "cannot cancel" in done.text
    forged = client.post(f"/runs/{ids['sums-succeeded']}/control", data={"action": "cancel", "token": "x"})
    assert forged.status_code == 400 and "form has expired" in forged.text
    crate = client.get(f"/runs/{ids['sums-succeeded']}/ro-crate.zip")
    assert crate.status_code == 200 and crate.content[:2] == b"PK"
    snapshot = client.get("/events", params={"run": ids["sums-succeeded"]})  # ended: one update, then done
    events = [line for line in snapshot.text.splitlines() if line.startswith(("event:", "data:"))]
    assert events[0] == "event: update" and events[-2:] == ["event: done", "data: {}"]
    assert json.loads(events[1][5:])["runs"][0]["state"] == "succeeded"


def test_corral_ui_without_the_gateway_extra_says_what_to_install(workdir: Path) -> None:
    code = ("import sys; sys.modules['fastapi'] = None; sys.argv = ['corral', 'ui']; "
            "from corral.cli.app import main; main()")
    proc = subprocess.run([sys.executable, "-c", code], cwd=workdir, capture_output=True, text=True,  # noqa: S603
                          timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'corral[gateway]'" in lines[0], proc.stderr


def test_corral_ui_on_a_busy_port_says_so(workdir: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = corral(workdir, "ui", "--port", str(port))
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"error: port {port} on 127.0.0.1 cannot be used (Address already in use); "
                                   "choose another with --port, or leave --port out for a free one")


def test_the_run_page_builds_only_the_figures_it_shows(workdir: Path) -> None:
    """The run page asks the report's context for its two figures (the report builds all three,
    the same ones); an unknown figure name is refused naming the known ones."""
    from corral.errors import UsageError
    from corral.report import load_run, report_context
    from corral.report.metrics import compute_metrics
    from corral.web import views

    store = Store.open(workdir)
    try:
        data = load_run(store, _run_ids(workdir)["sums-succeeded"])
        m = compute_metrics(data)
        page = views.run_parts(store, data.run_id)["figures"]
        full = report_context(data, m)["figures"]
        assert page["distributions"] is None and full["distributions"] is not None
        assert (page["graph"], page["timeline"]) == (full["graph"], full["timeline"])
        with pytest.raises(UsageError, match="unknown report figure 'gantt'; use some of timeline"):
            report_context(data, m, figures=("gantt",))
    finally:
        store.close()
