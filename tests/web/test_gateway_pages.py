"""The gateway's pages against a real gateway (uvicorn on loopback, its local runner), driven in
real headless Chromium: log in with a token (a wrong one is refused next to the field), submit a
job through the form (a bad field is refused next to it; the HPC system's limit too), watch it run
to completion on its page (server-sent events), read its timeline and output, download its result
file, see the project's budget bars; a second user sees none of it; an admin sees it. Every page
is screenshotted and has no console error."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn

from corral.gateway.app import create_app
from corral.gateway.pages import mount
from corral.gateway.settings import Settings
from corral.gateway.store import TERMINAL_JOB_STATES, GatewayStore, default_url

from .conftest import Browser

JOB = "python3 -c \"import time; time.sleep(2); open('result.txt', 'w').write('42')\""


@dataclass
class Gateway:
    url: str
    store: GatewayStore
    alice: str
    bob: str
    admin: str


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    store = GatewayStore(default_url(tmp_path))
    store.create_project("lab", 100.0, members=["alice"], max_concurrent_jobs=3)
    store.create_project("elsewhere", 50.0, members=["bob"])
    tokens = store.create_token("alice"), store.create_token("bob"), store.create_token("root", admin=True)
    app = create_app(Settings(workdir=tmp_path, poll_seconds=0.05), store=store)
    mount(app)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield Gateway(f"http://127.0.0.1:{port}", store, *tokens)
    server.should_exit = True
    thread.join(timeout=20)
    store.close()


def _login(browser: Browser, url: str, token: str) -> None:
    page = browser.page
    page.goto(f"{url}/login")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{url}/jobs")


def _logout(browser: Browser) -> None:
    browser.page.get_by_role("button", name="Log out").click()


def test_submit_watch_download_and_isolation(gateway: Gateway, browser: Browser, tmp_path: Path) -> None:
    page, url = browser.page, gateway.url
    page.goto(url)  # not logged in: the login page
    assert page.url.startswith(f"{url}/login")
    page.get_by_label("API token").fill("crl_not-a-token")
    page.get_by_role("button", name="Log in").click()
    assert "unknown token" in page.locator("#token-error").inner_text()
    page.screenshot(path=str(tmp_path / "login.png"))
    _login(browser, url, gateway.alice)
    assert "No jobs" in page.locator("main").inner_text()

    page.get_by_role("link", name="Submit a job").first.click()
    page.get_by_label("Command").fill(JOB)
    page.get_by_label("Nodes").fill("0")
    page.get_by_role("button", name="Submit").click()
    assert "nodes must be between 1 and" in page.locator("#e-nodes").inner_text()
    assert page.get_by_label("Nodes").get_attribute("aria-invalid") == "true"
    assert page.get_by_label("Command").input_value() == JOB  # what was typed is kept
    page.screenshot(path=str(tmp_path / "submit-error.png"), full_page=True)
    page.get_by_label("Nodes").fill("1")
    page.get_by_label("Title").fill("answer")
    page.get_by_label("Walltime (hours)").fill("0.1")
    page.get_by_role("button", name="Submit").click()

    page.wait_for_url(f"{url}/jobs/*")
    job_id = page.url.rsplit("/", 1)[1]
    assert page.locator("[data-live-state]").get_attribute("data-live-state") not in TERMINAL_JOB_STATES
    page.screenshot(path=str(tmp_path / "job-running.png"), full_page=True)
    page.wait_for_selector("[data-live-state='completed']", timeout=30_000)  # followed, then reloaded
    assert "running" in page.locator("#timeline").inner_text()
    assert page.locator("#timeline .gantt span").count() == 2  # queued, then ran
    page.screenshot(path=str(tmp_path / "job-done.png"), full_page=True)
    with page.expect_download() as info:
        page.get_by_role("link", name="result.txt").click()
    assert Path(info.value.path()).read_text() == "42"

    page.get_by_role("link", name="My jobs").click()
    row = page.locator(f'tr[data-job="{job_id}"]')
    assert "completed" in row.inner_text() and "answer" in row.inner_text()
    page.screenshot(path=str(tmp_path / "jobs.png"))
    page.get_by_role("link", name="Projects").click()
    assert page.locator(".quota").count() == 1 and "lab" in page.locator("main").inner_text()
    assert "elsewhere" not in page.locator("main").inner_text()
    page.screenshot(path=str(tmp_path / "projects.png"))
    _logout(browser)

    _login(browser, url, gateway.bob)  # a second user sees none of it
    assert "No jobs" in page.locator("main").inner_text()
    assert page.request.get(f"{url}/jobs/{job_id}").status == 404
    assert page.request.get(f"{url}/jobs/{job_id}/files/result.txt").status == 404
    assert page.request.get(f"{url}/admin/jobs").status == 403
    page.get_by_role("link", name="Projects").click()
    assert "lab" not in page.locator("tbody").inner_text()
    _logout(browser)

    _login(browser, url, gateway.admin)  # an admin sees everyone's
    page.get_by_role("link", name="All jobs").click()
    assert "alice" in page.locator(f'tr[data-job="{job_id}"]').inner_text()
    page.screenshot(path=str(tmp_path / "admin-jobs.png"))
    page.get_by_role("link", name="Ledger").click()
    assert page.locator("tbody tr").count() >= 2  # the reservation and the charge
    page.screenshot(path=str(tmp_path / "ledger.png"))
    assert browser.errors == []


def test_over_limits_and_a_revoked_token(gateway: Gateway, browser: Browser) -> None:
    page, url = browser.page, gateway.url
    gateway.store.create_project("tiny", 1.0, members=["alice"])
    _login(browser, url, gateway.alice)
    page.goto(f"{url}/jobs/new")
    page.get_by_label("Command").fill("true")
    page.get_by_label("Walltime (hours)").fill("10000")  # more than a year
    page.get_by_role("button", name="Submit").click()
    assert "walltime (hours) must be between" in page.locator("#e-walltime_hours").inner_text()
    page.get_by_label("Project (HPC system)").select_option("tiny")
    page.get_by_label("Walltime (hours)").fill("2")  # 2 core-hours of a 1 core-hour budget
    page.get_by_role("button", name="Submit").click()
    assert "core-hour budget" in page.locator("#e-project").inner_text()
    assert gateway.store.list_jobs(None, limit=10, offset=0)[1] == 0  # nothing was submitted
    gateway.store.revoke_token(gateway.alice)
    page.goto(f"{url}/jobs")  # the session ends with its token
    assert page.url.startswith(f"{url}/login")
    assert browser.errors == []
