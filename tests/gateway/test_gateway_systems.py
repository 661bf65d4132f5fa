"""HPC systems of gateway.toml: each mistake is one line naming the file, the system and the fix,
found when the gateway starts (not at the first job)."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.errors import ConfigError
from corral.gateway.store import JobRequest
from corral.gateway.systems import load_systems


@pytest.mark.parametrize(("text", "words"), [
    ('[systems.x]\nexecutor = "nope"\n', "unknown executor or profile 'nope'"),
    ('[systems.x]\nexecutor = "slurm"\n[systems.x.options]\npartitio = "debug"\n', "unknown option(s) partitio"),
    ('[systems.x]\nexecutor = "slurm"\nmax_node = 2\n', "unknown key(s) max_node"),
    ('[systems.x]\nexecutor = "slurm"\nmax_nodes = "many"\n', "limits must be numbers"),
    ('[systems.x]\nexecutor = "slurm"\nmax_nodes = 0\n', "must be >= 1"),
    ('[system.x]\n', "write HPC systems as [systems.NAME] tables"),
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
