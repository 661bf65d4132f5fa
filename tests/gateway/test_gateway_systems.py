"""HPC systems of gateway.toml: each mistake is one line naming the file, the system and the fix,
found when the gateway starts (not at the first job)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from corral.errors import ConfigError
from corral.gateway.app import create_app
from corral.gateway.settings import Settings
from corral.gateway.store import GatewayStore, JobRequest, default_url
from corral.gateway.systems import load_systems


@pytest.mark.parametrize(("text", "words"), [
    ('[systems.x]\nexecutor = "nope"\n', "unknown executor or profile 'nope'"),
    ('[systems.x]\nexecutor = "slurm"\n[systems.x.options]\npartitio = "debug"\n', "unknown option(s) partitio"),
    ('[systems.x]\nexecutor = "slurm"\nmax_node = 2\n', "unknown key(s) max_node"),
    ('[systems.x]\nexecutor = "slurm"\nmax_nodes = "many"\n', "limits must be numbers"),
    ('[systems.x]\nexecutor = "slurm"\nmax_nodes = 0\n', "must be >= 1"),
    ('[system.x]\n', "write HPC systems as [systems.NAME] tables"),
    ('[systems.x]\nexecutor = "local"\n[tools]\nsay = "echo"\n', "[tools] maps names to argument lists"),
    ('[systems.x\n', "is not valid TOML"),
])
def test_bad_systems_file_is_one_line_naming_the_problem(tmp_path: Path, text: str, words: str) -> None:
    (tmp_path / "gateway.toml").write_text(text)
    with pytest.raises(ConfigError) as err:
        load_systems(tmp_path)
    assert words in str(err.value) and str(tmp_path / "gateway.toml") in str(err.value)
    assert "\n" not in str(err.value)


def test_profile_of_corral_toml_and_default_queue(tmp_path: Path) -> None:
    (tmp_path / "corral.toml").write_text('[executors.short]\nkind = "slurm"\npartition = "debug"\n')
    (tmp_path / "gateway.toml").write_text('[systems.c]\nexecutor = "short"\nmax_cores_per_node = 8\n'
                                           'queues = ["debug", "long"]\n[systems.c.options]\nmax_jobs = 5\n')
    [system] = load_systems(tmp_path).values()
    assert (system.kind, dict(system.options)) == ("slurm", {"partition": "debug", "max_jobs": 5})
    assert system.check(JobRequest("true", cores_per_node=8)) == "debug"
    assert system.check(JobRequest("true", queue="long")) == "long"
    assert list(load_systems(tmp_path / "elsewhere")) == ["local"]  # no file: the local machine


def test_seed_tool_field_runs_a_named_application(tmp_path: Path) -> None:
    (tmp_path / "gateway.toml").write_text('[systems.local]\nexecutor = "local"\n'
                                           '[tools]\nsay = ["python3", "-c", "import sys; print(sys.argv)"]\n')
    store = GatewayStore(default_url(tmp_path))
    store.create_project("lab", 10.0, members=["alice"])
    auth = {"Authorization": f"Bearer {store.create_token('alice')}"}
    with TestClient(create_app(Settings(workdir=tmp_path, run_jobs=False), store=store)) as client:
        legacy = {"tool": "say", "command": "'a b' $HOME", "node_number": 1, "core_number": 1, "runtime": 0.1,
                  "title": "seed"}
        r = client.post("/api/v1/jobs", headers=auth, json=legacy)
        assert r.status_code == 201, r.text
        assert r.json()["command"] == "python3 -c 'import sys; print(sys.argv)' 'a b' '$HOME'"
        r = client.post("/api/v1/jobs", headers=auth, json={"tool": "nrniv", "command": "x"})
        assert r.status_code == 400 and r.json()["detail"] == "no tool 'nrniv' on this gateway; tools: say"
    store.close()
