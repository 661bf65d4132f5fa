"""GA4GH TES 1.1 at /ga4gh/tes/v1, driven with the real py-tes client against a real uvicorn on
loopback with the local runner (the ``server`` fixture): tasks run for real."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import httpx
import pytest
import requests
import tes

from corral.gateway.store import GatewayStore

PY = sys.executable
TERMINAL = {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"}


def _task(command: list[str], name: str = "", **tags: str) -> tes.Task:
    return tes.Task(name=name or None, executors=[tes.Executor(image="alpine", command=command)],
                    resources=tes.Resources(cpu_cores=2, ram_gb=1.0), tags=tags or None)


def _until(client: tes.HTTPClient, task_id: str, states: set[str]) -> tes.Task:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        task = client.get_task(task_id, "MINIMAL")
        if task.state in states:
            return task
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} never reached {states}: {client.get_task(task_id, 'FULL')}")


@pytest.fixture
def alice(server: str, store: GatewayStore) -> tes.HTTPClient:
    store.create_project("lab", 100.0, members=["alice", "bob"])
    return tes.HTTPClient(server, token=store.create_token("alice"), timeout=10)


def test_service_info(alice: tes.HTTPClient) -> None:
    info = alice.get_service_info()
    assert info.type["artifact"] == "tes" and info.type["version"].startswith("1.1")


def test_echo_hello_runs_and_full_view_has_its_logs(alice: tes.HTTPClient, store: GatewayStore) -> None:
    task_id = alice.create_task(_task(["echo", "hello"], name="greeting", project="lab", kind="demo"))
    assert _until(alice, task_id, TERMINAL).state == "COMPLETE"
    full = alice.get_task(task_id, "FULL")
    assert full.name == "greeting" and full.tags == {"project": "lab", "kind": "demo"}
    assert full.executors[0].command == ["echo", "hello"] and full.resources.cpu_cores == 2
    [log] = full.logs
    [exe] = log.logs
    assert exe.exit_code == 0 and exe.stdout == "hello\n" and exe.stderr == ""
    assert exe.start_time is not None and exe.end_time is not None and exe.end_time >= exe.start_time
    basic = alice.get_task(task_id, "BASIC")
    assert basic.name == "greeting" and basic.logs[0].logs[0].stdout is None  # BASIC: no log contents
    minimal = alice.get_task(task_id, "MINIMAL")
    assert minimal.state == "COMPLETE" and minimal.name is None and minimal.logs is None
    job = store.get_job(None, task_id)  # the same job on /api/v1's side
    assert job["state"] == "completed" and job["cores_per_node"] == 2 and job["title"] == "greeting"


def test_command_is_an_argv_list_never_a_shell(alice: tes.HTTPClient) -> None:
    argv = [PY, "-c", "import sys; print(sys.argv[1:])", "$HOME;", "a b", "'q'"]
    task_id = alice.create_task(_task(argv))
    _until(alice, task_id, TERMINAL)
    [exe] = alice.get_task(task_id, "FULL").logs[0].logs
    assert exe.stdout.strip() == str(["$HOME;", "a b", "'q'"]) and exe.exit_code == 0
    assert alice.get_task(task_id, "FULL").executors[0].command == argv


def test_failing_task_is_executor_error(alice: tes.HTTPClient) -> None:
    task_id = alice.create_task(_task([PY, "-c", "import sys; sys.stderr.write('bad'); raise SystemExit(3)"]))
    assert _until(alice, task_id, TERMINAL).state == "EXECUTOR_ERROR"
    [exe] = alice.get_task(task_id, "FULL").logs[0].logs
    assert exe.exit_code == 3 and exe.stderr == "bad"


def test_list_views_paging_and_filters(alice: tes.HTTPClient, server: str) -> None:
    ids = [alice.create_task(_task(["true"], name=f"batch-{i}", group="a" if i < 2 else "b")) for i in range(3)]
    other = alice.create_task(_task(["true"], name="other"))
    for task_id in [*ids, other]:
        _until(alice, task_id, TERMINAL)
    first = alice.list_tasks(view="MINIMAL", page_size=3)
    assert len(first.tasks) == 3 and first.next_page_token
    assert all(t.name is None and t.state == "COMPLETE" for t in first.tasks)
    second = alice.list_tasks(view="BASIC", page_size=3, page_token=first.next_page_token)
    assert len(second.tasks) == 1 and not second.next_page_token and second.tasks[0].name
    assert {t.id for t in first.tasks + second.tasks} == {*ids, other}  # newest first, each once
    assert [t.id for t in first.tasks + second.tasks][0] == other
    full = alice.list_tasks(view="FULL")
    assert len(full.tasks) == 4 and all(t.logs[0].logs[0].exit_code == 0 for t in full.tasks)
    with httpx.Client(base_url=f"{server}/ga4gh/tes/v1", headers={"Authorization": f"Bearer {alice.token}"}) as c:
        def names(**params: str) -> set[str]:
            r = c.get("/tasks", params={"view": "BASIC", **params})
            assert r.status_code == 200, r.text
            return {t["name"] for t in r.json()["tasks"]}

        assert names(name_prefix="batch-") == {"batch-0", "batch-1", "batch-2"}
        assert names(tag_key="group", tag_value="a") == {"batch-0", "batch-1"}
        assert names(tag_key="group") == {"batch-0", "batch-1", "batch-2"}
        assert names(tag_key="group", tag_value="c") == set()
        assert c.get("/tasks", params={"page_token": "x"}).status_code == 400


def test_cancel_a_running_task(alice: tes.HTTPClient, store: GatewayStore) -> None:
    task_id = alice.create_task(_task([PY, "-c", "import time; time.sleep(60)"]))
    _until(alice, task_id, {"RUNNING"})
    alice.cancel_task(task_id)
    assert alice.get_task(task_id).state in {"CANCELING", "CANCELED"}
    assert _until(alice, task_id, TERMINAL).state == "CANCELED"
    alice.cancel_task(task_id)  # an ended task: nothing to do, no error
    assert alice.get_task(task_id).state == "CANCELED"
    assert store.list_projects(store.authenticate(alice.token))[0]["active_jobs"] == 0


def test_another_user_gets_404(alice: tes.HTTPClient, server: str, store: GatewayStore) -> None:
    task_id = alice.create_task(_task(["echo", "mine"]))
    bob = tes.HTTPClient(server, token=store.create_token("bob"), timeout=10)
    calls: list[Callable[[], object]] = [lambda: bob.get_task(task_id, "FULL"),
                                         lambda: bob.cancel_task(task_id)]
    for call in calls:
        with pytest.raises(requests.HTTPError) as err:
            call()
        assert _response(err.value).status_code == 404
    assert bob.list_tasks().tasks == []
    assert alice.get_task(task_id).id == task_id
    anonymous = tes.HTTPClient(server, timeout=10)
    with pytest.raises(requests.HTTPError) as err:
        anonymous.list_tasks()
    assert _response(err.value).status_code == 401


def _response(error: requests.HTTPError) -> requests.Response:
    assert error.response is not None
    return error.response


def _refused(client: tes.HTTPClient, task: tes.Task, status: int = 400) -> str:
    with pytest.raises(requests.HTTPError) as err:
        client.create_task(task)
    assert _response(err.value).status_code == status, _response(err.value).text
    detail: str = _response(err.value).json()["detail"]
    return detail


def test_refusals(alice: tes.HTTPClient, store: GatewayStore) -> None:
    assert "no project 'nope' of yours" in _refused(alice, _task(["true"], project="nope"))
    store.create_project("other", 10.0, members=["carol"])
    assert "'other'" in _refused(alice, _task(["true"], project="other"))  # not a member
    two = tes.Task(executors=[tes.Executor(image="a", command=["true"]), tes.Executor(image="a", command=["true"])])
    assert "exactly one executor" in _refused(alice, two)
    inputs = tes.Task(executors=[tes.Executor(image="a", command=["true"])],
                      inputs=[tes.Input(url="s3://bucket/x", path="/data/x")])
    assert "inputs" in _refused(alice, inputs)
    env = tes.Task(executors=[tes.Executor(image="a", command=["true"], env={"A": "1"})])
    assert "env" in _refused(alice, env)
    assert alice.list_tasks().tasks == []  # nothing was queued


def test_several_projects_need_the_tag(alice: tes.HTTPClient, store: GatewayStore) -> None:
    store.create_project("second", 10.0, members=["alice"])
    with pytest.raises(requests.HTTPError) as err:
        alice.create_task(_task(["true"]))
    assert _response(err.value).status_code == 403 and "several projects" in _response(err.value).text
    task_id = alice.create_task(_task(["true"], project="second"))
    assert store.get_job(None, task_id)["project_name"] == "second"


def test_backend_parameters_nodes_and_walltime(alice: tes.HTTPClient, store: GatewayStore) -> None:
    def task(**params: str) -> tes.Task:
        return tes.Task(executors=[tes.Executor(image="a", command=["true"])],
                        resources=tes.Resources(cpu_cores=2, backend_parameters=params or None,
                                                backend_parameters_strict=True if "queue" in params else None))

    assert alice.get_service_info().tes_resources_backend_parameters == ["nodes", "walltime_hours"]
    task_id = alice.create_task(task(nodes="3", walltime_hours="0.5"))
    job = store.get_job(None, task_id)
    assert (job["nodes"], job["cores_per_node"], job["walltime_hours"]) == (3, 2, 0.5)
    assert job["core_hours_reserved"] == 3.0
    got = alice.get_task(task_id, "BASIC").resources
    assert got.cpu_cores == 2 and got.backend_parameters == {"nodes": "3", "walltime_hours": "0.5"}
    memory_id = alice.create_task(tes.Task(executors=[tes.Executor(image="a", command=["true"])],
                                           resources=tes.Resources(ram_gb=1.5)))
    assert store.get_job(None, memory_id)["memory_gb"] == 1.5
    assert alice.get_task(memory_id, "BASIC").resources.ram_gb == 1.5
    assert "walltime_hours" in _refused(alice, task(walltime_hours="soon"))
    assert "out of range" in _refused(alice, task(nodes="0"))
    refused = _refused(alice, task(queue="long"), 422)  # strict: an unsupported parameter is refused
    assert "no backend parameter queue; allowed: none" in refused, refused  # the local system takes none
    alice.create_task(tes.Task(executors=[tes.Executor(image="a", command=["true"])],
                               resources=tes.Resources(backend_parameters={"queue": "long"})))  # not strict: ignored
