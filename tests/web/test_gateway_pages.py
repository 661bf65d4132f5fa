"""The gateway's pages against a real gateway (uvicorn on loopback, its runner), driven in real
headless Chromium: log in with a token (a wrong one is refused next to the field), submit a job
through the form onto the rig's real SLURM (a bad field, and the HPC system's limit, refused next
to the field), watch it run to completion on its page (server-sent events), read its timeline,
state history and output, see the project's budget bars; a second user sees none of it; an admin
sees it. On the local system: a budget refusal, and a job's result file downloaded. Every page is
screenshotted and has no console error."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from corral.gateway.app import create_app
from corral.gateway.settings import Settings
from corral.gateway.store import TERMINAL_JOB_STATES, GatewayStore, default_url

from .conftest import CHAIN, Browser, require_slurm

SYSTEMS = """
[systems.local]
executor = "local"
max_nodes = 1
max_cores_per_node = 2
max_walltime_hours = 24

[systems.cluster]
executor = "slurm"
max_nodes = 1
max_cores_per_node = 2
max_walltime_hours = 1
queues = ["debug"]
[systems.cluster.options]
poll_interval = 0.2
max_poll_interval = 1.0
marker_interval = 0.1
"""

JOB = "python3 -c \"import time; time.sleep(2); print('answer', 6 * 7); open('result.txt', 'w').write('42')\""
LOCAL_JOB = "python3 -c \"open('result.txt', 'w').write('42')\""


@dataclass
class Gateway:
    url: str
    store: GatewayStore
    alice: str
    bob: str
    admin: str


@pytest.fixture
def gateway(tmp_path: Path, serve: Callable[[Any], AbstractContextManager[str]]) -> Iterator[Gateway]:
    (tmp_path / "gateway.toml").write_text(SYSTEMS)
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "chain.py").write_text(CHAIN)
    store = GatewayStore(default_url(tmp_path))
    store.create_project("lab", 100.0, members=["alice"], max_concurrent_jobs=3, system="cluster")
    store.create_project("elsewhere", 50.0, members=["bob"])
    tokens = store.create_token("alice"), store.create_token("bob"), store.create_token("root", admin=True)
    app = create_app(Settings(workdir=tmp_path, poll_seconds=0.05), store=store)  # pages at /
    with serve(app) as url:
        yield Gateway(url, store, *tokens)
    store.close()


def _login(browser: Browser, url: str, token: str) -> None:
    page = browser.page
    page.goto(f"{url}/login")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{url}/jobs")


def _logout(browser: Browser) -> None:
    browser.page.get_by_role("button", name="Log out").click()


def test_submit_on_slurm_watch_and_isolation(gateway: Gateway, browser: Browser, tmp_path: Path) -> None:
    require_slurm()
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
    assert "cluster: at most 1 node(s), 2 core(s) per node, 1 h; queues debug" in page.locator("main").inner_text()
    page.get_by_label("Nodes").fill("0")
    page.get_by_role("button", name="Submit").click()
    assert "nodes must be between 1 and" in page.locator("#e-nodes").inner_text()
    assert page.get_by_label("Nodes").get_attribute("aria-invalid") == "true"
    assert page.get_by_label("Command").input_value() == JOB  # what was typed is kept
    page.screenshot(path=str(tmp_path / "submit-error.png"), full_page=True)
    page.get_by_label("Nodes").fill("2")  # over the cluster's limit: refused before submission
    page.get_by_role("button", name="Submit").click()
    assert "allows at most 1 node(s) per job" in page.locator("#e-nodes").inner_text()
    page.get_by_label("Nodes").fill("1")
    page.get_by_label("Title").fill("answer")
    page.get_by_label("Walltime (hours)").fill("0.1")
    page.get_by_role("button", name="Submit").click()

    page.wait_for_url(f"{url}/jobs/*")
    job_id = page.url.rsplit("/", 1)[1]
    assert page.locator("[data-live-state]").get_attribute("data-live-state") not in TERMINAL_JOB_STATES
    page.screenshot(path=str(tmp_path / "job-running.png"), full_page=True)
    page.wait_for_selector("[data-live-state='completed']", timeout=60_000)  # followed, then reloaded
    job = gateway.store.get_job(None, job_id)
    assert job["system"] == "cluster" and job["queue"] == "debug" and (job["native_id"] or "").isdigit()
    assert job["native_id"] in page.locator("main").inner_text()  # the SLURM job id
    history = page.locator("#timeline tbody").inner_text()
    assert "queued" in history and "running" in history and "completed" in history
    assert page.locator("#timeline .gantt span").count() == 2  # queued, then ran
    assert "answer 42" in page.locator("#h-out + pre").inner_text()  # its output, from the SLURM job
    assert page.request.get(f"{url}/jobs/{job_id}/files/.corral/job.sh").status == 404  # not a result
    with page.expect_download() as info:  # written by the SLURM job into its own directory
        page.get_by_role("link", name="result.txt").click()
    assert Path(info.value.path()).read_text() == "42"
    page.screenshot(path=str(tmp_path / "job-done.png"), full_page=True)

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
    assert page.request.get(f"{url}/jobs/{job_id}/events").status == 404
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


def test_budget_refusal_a_result_download_and_a_revoked_token(gateway: Gateway, browser: Browser,
                                                             tmp_path: Path) -> None:
    """On the local system: a job over its project's budget is refused beside the project and
    submits nothing; a job that writes a file finishes and its file downloads."""
    page, url = browser.page, gateway.url
    gateway.store.create_project("tiny", 1.0, members=["alice"])  # on the local system
    _login(browser, url, gateway.alice)
    page.goto(f"{url}/jobs/new")
    page.get_by_label("Project (HPC system)").select_option("tiny")
    page.get_by_label("Command").fill(LOCAL_JOB)
    page.get_by_label("Walltime (hours)").fill("10000")  # more than a year
    page.get_by_role("button", name="Submit").click()
    assert "walltime (hours) must be between" in page.locator("#e-walltime_hours").inner_text()
    page.get_by_label("Walltime (hours)").fill("2")  # 2 core-hours of a 1 core-hour budget
    page.get_by_role("button", name="Submit").click()
    assert "core-hour budget" in page.locator("#e-project").inner_text()
    assert gateway.store.list_jobs(None, limit=10, offset=0)[1] == 0  # nothing was submitted
    page.get_by_label("Walltime (hours)").fill("0.01")
    page.get_by_role("button", name="Submit").click()
    page.wait_for_selector("[data-live-state='completed']", timeout=30_000)
    with page.expect_download() as info:
        page.get_by_role("link", name="result.txt").click()
    assert Path(info.value.path()).read_text() == "42"
    page.screenshot(path=str(tmp_path / "job-local.png"), full_page=True)
    gateway.store.revoke_token(gateway.alice)
    page.goto(f"{url}/jobs")  # the session ends with its token
    assert page.url.startswith(f"{url}/login")
    assert browser.errors == []


def test_admin_sets_a_quota_that_the_member_sees(gateway: Gateway, browser: Browser, tmp_path: Path) -> None:
    page, url = browser.page, gateway.url
    _login(browser, url, gateway.admin)
    page.get_by_role("link", name="Projects").click()
    assert page.locator(".quota").count() == 2  # every project for an admin
    page.get_by_label("Project", exact=True).select_option("lab")
    page.get_by_label("Member", exact=True).fill("bob")  # not a member of lab
    page.get_by_label("Quota (core-hours)").fill("5")
    page.get_by_role("button", name="Set quota").click()
    assert "is not a member of a project 'lab'" in page.locator("#qe-member").inner_text()
    page.get_by_label("Member", exact=True).fill("alice")
    page.get_by_label("Quota (core-hours)").fill("-1")
    page.get_by_role("button", name="Set quota").click()
    assert "core-hours >= 0" in page.locator("#qe-budget").inner_text()
    page.get_by_label("Quota (core-hours)").fill("5")
    page.get_by_role("button", name="Set quota").click()
    assert "Quota set for alice in lab" in page.locator("[role=status]").inner_text()
    assert "alice" in page.locator("#quotas").inner_text()
    page.screenshot(path=str(tmp_path / "projects-admin.png"), full_page=True)
    page.get_by_role("link", name="Audit log").click()
    assert "quota.set" in page.locator("tbody").inner_text() and "lab/alice" in page.locator("tbody").inner_text()
    page.screenshot(path=str(tmp_path / "audit.png"))
    _logout(browser)
    _login(browser, url, gateway.alice)  # alice sees her own quota, and no quota form
    page.get_by_role("link", name="Projects").click()
    assert "5 of 5" in page.locator("#quotas").inner_text().replace(".00", "")
    assert page.get_by_role("button", name="Set quota").count() == 0
    assert page.request.get(f"{url}/admin/audit").status == 403
    assert browser.errors == []


@pytest.mark.parametrize("system", ["local", "cluster"])
def test_a_pipeline_job_from_the_form_watched_to_its_graph(gateway: Gateway, browser: Browser,
                                                          tmp_path: Path, system: str) -> None:
    """A pipeline of the gateway's pipelines directory submitted through the form (its parameters
    checked beside the field) on the local system and on the rig's SLURM, followed to completion
    on the job's page, its run's graph and timeline drawn by corral.web's run page; a second user
    gets 404 for all of it, a member of the job's project reads it but cannot cancel it."""
    if system == "cluster":
        require_slurm()  # the pipeline's tasks as SLURM jobs
    page, url = browser.page, gateway.url
    gateway.store.create_project("bench", 10.0, members=["alice", "carol"], system=system)
    carol = gateway.store.create_token("carol")
    _login(browser, url, gateway.alice)
    page.goto(f"{url}/jobs/new")
    page.get_by_label("Project (HPC system)").select_option("bench")
    page.get_by_label("Pipeline", exact=True).select_option("chain.py")
    page.get_by_label("Parameters (JSON)").fill("{n: 3}")
    page.get_by_role("button", name="Submit").click()
    assert "parameters must be a JSON object" in page.locator("#e-params").inner_text()
    assert page.get_by_label("Pipeline", exact=True).input_value() == "chain.py"  # kept
    page.screenshot(path=str(tmp_path / "pipeline-error.png"), full_page=True)
    page.get_by_label("Parameters (JSON)").fill('{"n": 4, "seconds": 0.7}')
    page.get_by_label("Title").fill("a chain")
    page.get_by_role("button", name="Submit").click()

    page.wait_for_url(f"{url}/jobs/*")
    job_id = page.url.rsplit("/", 1)[1]
    assert page.locator("[data-live-state]").get_attribute("data-live-state") not in TERMINAL_JOB_STATES
    assert "chain.py" in page.locator("main").inner_text()
    page.wait_for_function("() => document.querySelector('[data-progress]') !== null && "
                           "/^[1-3] \\/ 4$/.test(document.querySelector('[data-progress]').textContent)",
                           timeout=60_000)  # tasks ending, followed by server-sent events
    page.screenshot(path=str(tmp_path / "pipeline-running.png"), full_page=True)
    page.wait_for_selector("[data-live-state='completed']", timeout=60_000)
    assert page.locator("[data-progress]").inner_text() == "4 / 4"
    tasks = page.locator("#run tbody").inner_text()
    assert all(f"step{i}" in tasks for i in range(4)) and "succeeded" in tasks
    run_id = (gateway.store.get_job(None, job_id)["native_id"] or "").removeprefix("run:")
    page.screenshot(path=str(tmp_path / "pipeline-done.png"), full_page=True)

    page.get_by_role("link", name="Graph and timeline of the run").click()
    page.wait_for_url(f"{url}/jobs/{job_id}/runs/{run_id}")
    page.wait_for_selector("#graph .main-svg")  # drawn by Plotly from the report's figure
    page.wait_for_selector("#timeline .main-svg")
    assert page.locator("#run-state").inner_text() == "succeeded"
    executor = "slurm" if system == "cluster" else "local"  # the project's HPC system ran its tasks
    assert executor in page.locator("dl.facts").inner_text()
    assert page.get_by_role("link", name="Cancel run").count() == 0  # cancelled through its job
    assert page.get_by_role("button", name="Log out").count() == 1  # the gateway's layout
    report = page.request.get(f"{url}/jobs/{job_id}/runs/{run_id}/report.html")
    assert report.status == 200 and run_id in report.text()
    page.screenshot(path=str(tmp_path / "pipeline-run.png"), full_page=True)
    _logout(browser)

    _login(browser, url, gateway.bob)  # a second user sees none of it
    assert "No jobs" in page.locator("main").inner_text()
    for path in (f"/jobs/{job_id}", f"/jobs/{job_id}/runs/{run_id}", f"/jobs/{job_id}/runs/{run_id}/events",
                 f"/jobs/{job_id}/runs/{run_id}/report.html", f"/jobs/{job_id}/runs/{run_id}/ro-crate.zip"):
        assert page.request.get(url + path).status == 404, path
    _logout(browser)

    _login(browser, url, carol)  # a member of the job's project reads it, and cannot cancel it
    assert "alice" in page.locator(f'tr[data-job="{job_id}"]').inner_text()
    assert page.request.get(f"{url}/jobs/{job_id}/runs/{run_id}").status == 200
    assert page.request.get(f"{url}/jobs/{job_id}/cancel").status == 403
    assert browser.errors == []


def test_admin_creates_and_edits_a_project(gateway: Gateway, browser: Browser, tmp_path: Path) -> None:
    """An admin creates a project (a bad budget and an unknown member list refused beside their
    fields first), then edits its budget, limit, system and members; both are in the audit log and
    the new member sees the project; a non-admin's post is refused."""
    page, url = browser.page, gateway.url
    _login(browser, url, gateway.admin)
    page.get_by_role("link", name="Projects").click()
    page.get_by_label("Project name").fill("new lab")  # a space: not a project name
    page.get_by_label("Budget (core-hours)").fill("-3")
    page.get_by_label("Concurrent-job limit").fill("0")
    page.get_by_role("button", name="Save project").click()
    assert "letters, digits" in page.locator("#pe-name").inner_text()
    assert "between 0 and" in page.locator("#pe-budget_core_hours").inner_text()
    assert "from 1 to" in page.locator("#pe-max_concurrent_jobs").inner_text()
    assert page.get_by_label("Project name").get_attribute("aria-invalid") == "true"
    page.screenshot(path=str(tmp_path / "project-errors.png"), full_page=True)
    page.get_by_label("Project name").fill("newlab")
    page.get_by_label("HPC system").select_option("local")
    page.get_by_label("Budget (core-hours)").fill("40")
    page.get_by_label("Concurrent-job limit").fill("2")
    page.get_by_label("Members").fill("alice")
    page.get_by_role("button", name="Save project").click()
    assert "Project newlab saved" in page.locator("[role=status]").inner_text()
    created = gateway.store.get_project(gateway.store.authenticate(gateway.admin), "newlab")
    assert (created["system"], created["budget_core_hours"], created["max_concurrent_jobs"],
            created["members"]) == ("local", 40.0, 2, ["alice"])

    page.get_by_role("link", name="Edit newlab").click()  # the form filled with the project
    assert page.get_by_label("Members").input_value() == "alice"
    page.get_by_label("HPC system").select_option("cluster")
    page.get_by_label("Budget (core-hours)").fill("60")
    page.get_by_label("Concurrent-job limit").fill("5")
    page.get_by_label("Members").fill("bob, carol")
    page.get_by_role("button", name="Save project").click()
    assert "Project newlab saved" in page.locator("[role=status]").inner_text()
    edited = gateway.store.get_project(gateway.store.authenticate(gateway.admin), "newlab")
    assert (edited["system"], edited["budget_core_hours"], edited["max_concurrent_jobs"],
            edited["members"]) == ("cluster", 60.0, 5, ["bob", "carol"])
    page.screenshot(path=str(tmp_path / "projects-edited.png"), full_page=True)
    page.get_by_role("link", name="Audit log").click()
    audit = page.locator("tbody").inner_text()
    assert "project.create" in audit and "project.update" in audit and "newlab" in audit
    _logout(browser)

    _login(browser, url, gateway.bob)  # now a member: sees it; cannot post the admin form
    page.get_by_role("link", name="Projects").click()
    assert "newlab" in page.locator("main").inner_text()
    assert page.get_by_role("button", name="Save project").count() == 0
    refused = page.request.post(f"{url}/admin/projects", form={"name": "x", "token": ""})
    assert refused.status == 403 and "x" not in [p["name"] for p in gateway.store.list_projects(
        gateway.store.authenticate(gateway.admin))]
    assert browser.errors == []
