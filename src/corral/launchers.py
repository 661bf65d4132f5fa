"""Launchers: how the ranks of a parallel (MPI) task are started.

A task asks for ranks through its resources (``tasks``, ``tasks_per_node``, ``nodes``,
``cores_per_task``) and for a launcher with ``launcher=`` (carried in
:attr:`corral.resources.Resources.launcher`). ``"mpi"`` means the executor's MPI launcher:
``srun`` on SLURM, ``mpirun`` elsewhere. A task that names none takes the executor's
``launcher`` option (default ``"none"``: the command runs once).

The executor turns the attempt's payload into a launched one (:func:`launched_payload`): a shell
command becomes ``<launcher argv> bash -c <command>``; a Python task's function is replaced by a
:class:`RankedCall`, which writes the call to the attempt directory, starts
``<launcher argv> python -m corral.launchers <dir>`` and returns the value of rank 0. Every rank
writes to the attempt's ``stdout.log`` and ``stderr.log``.

On SLURM the ranks are a job step, ``srun --ntasks=N --cpus-per-task=C`` inside the job's
allocation; the process manager interface is the cluster's ``MpiDefault`` (the rig sets
``pmix``: Debian's Open MPI speaks PMIx only). A cluster whose default is ``none`` needs
``launcher_args = ["--mpi=pmix"]`` (or ``pmi2`` for MPICH and Intel MPI) in the executor's
options; under one the MPI does not speak, every rank fails in ``MPI_Init`` (Open MPI: "OMPI was
not built with SLURM's PMI support"). On Grid Engine (and PBS, LSF) ``mpirun -np N`` runs
inside the job: an MPI built with support for the scheduler reads the granted slots and hosts
from it (on Grid Engine ``$PE_HOSTFILE`` of the ``mpi_pe`` parallel environment) and starts the
ranks on other hosts through it (``qrsh -inherit``).

Open MPI refuses to run as root without ``--allow-run-as-root`` and to start more ranks than
cores without ``--oversubscribe``; set ``OMPI_ALLOW_RUN_AS_ROOT=1``,
``OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1`` and ``OMPI_MCA_rmaps_base_oversubscribe=1`` (or pass the
flags through the executor's ``launcher_args``).
"""

from __future__ import annotations

import os
import pickle
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cloudpickle

from corral.errors import ConfigError, ResourceError
from corral.hashing import digest_bytes
from corral.resources import LAUNCHERS, Resources, ResourcesSpec
from corral.worker.execute import PythonPayload, ShellPayload, atomic_write, shell_argv

MPI_LAUNCHER = {"slurm": "srun"}
"""The launcher ``"mpi"`` means on each executor kind; ``mpirun`` on the others."""
RANK_VARIABLES = ("OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID")
"""Where a rank finds its number (Open MPI, PMIx, MPICH/PMI, srun)."""
CALL_FILE = "call.pkl"
RESULT_FILE = "rank0.pkl"


def with_launcher(spec: ResourcesSpec, launcher: str) -> ResourcesSpec:
    """``spec`` with ``launcher`` set in the resources it gives (fixed, per attempt or none)."""
    if launcher not in LAUNCHERS:
        raise ResourceError(
            f"launcher={launcher!r} is not one of {', '.join(LAUNCHERS)}; write e.g. launcher='mpi'"
        )
    if spec is None:
        return Resources(launcher=launcher)
    if isinstance(spec, Resources):
        return spec.replace(launcher=launcher)
    return _PerAttempt(spec, launcher)


@dataclass(frozen=True)
class _PerAttempt:
    """A resources function of the attempt number, with the task's launcher added."""

    func: Callable[[int], Resources]
    launcher: str

    def __call__(self, attempt: int) -> Resources:
        res = self.func(attempt)
        return res.replace(launcher=self.launcher) if isinstance(res, Resources) else res


def check_launcher(name: str, what: str = "launcher") -> str:
    """``name`` if it is a valid launcher, else ConfigError naming the valid ones."""
    if name not in LAUNCHERS:
        raise ConfigError(f"{what}={name!r} is not one of {', '.join(LAUNCHERS)}")
    return name


def effective_launcher(resources: Resources, kind: str, default: str = "none") -> str:
    """The launcher that starts this attempt on executor ``kind``: the task's, else the
    executor's ``default``; ``mpi`` resolved (``srun`` on SLURM, ``mpirun`` elsewhere)."""
    name = resources.launcher or default
    if name == "mpi":
        name = MPI_LAUNCHER.get(kind, "mpirun")
    return name


def launch_argv(resources: Resources, launcher: str, extra: Sequence[str] = ()) -> list[str]:
    """The argv prefix that starts ``resources.ranks`` ranks with ``launcher`` (empty: none)."""
    n = resources.ranks
    if launcher == "none":
        return []
    if launcher == "srun":
        argv = ["srun", f"--ntasks={n}", f"--cpus-per-task={resources.rank_cores}"]
        if resources.nodes > 1:
            argv.append(f"--nodes={resources.nodes}")
        if resources.tasks_per_node is not None:
            argv.append(f"--ntasks-per-node={resources.tasks_per_node}")
        return [*argv, *extra]
    if launcher in ("mpirun", "mpiexec"):
        argv = [launcher, "-np", str(n)]
        if resources.nodes > 1 and resources.tasks_per_node is not None:
            argv += ["--map-by", f"ppr:{resources.tasks_per_node}:node"]
        return [*argv, *extra]
    raise ResourceError(f"launcher={launcher!r} is not one of {', '.join(LAUNCHERS)}")


def launched_payload(kind_is_shell: bool, payload: bytes, argv: Sequence[str],
                     workdir: Path) -> bytes:
    """The payload that runs ``payload`` under the launcher prefix ``argv``."""
    data = pickle.loads(payload)
    if kind_is_shell:
        assert isinstance(data, ShellPayload)
        command = shlex.join([*argv, *shell_argv(data.command)])
        return pickle.dumps(replace(data, command=command), protocol=pickle.HIGHEST_PROTOCOL)
    assert isinstance(data, PythonPayload)
    func = cloudpickle.dumps(RankedCall(list(argv), data.func, str(workdir / "ranks")))
    return pickle.dumps(PythonPayload(digest_bytes(func), func, data.args),
                        protocol=pickle.HIGHEST_PROTOCOL)


@dataclass
class RankedCall:
    """Stands for a Python task function launched on every rank; returns rank 0's value."""

    argv: list[str]
    func: bytes
    """cloudpickle of the task function."""
    folder: str
    """Where the call and rank 0's result are written (inside the attempt directory)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        folder = Path(self.folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / RESULT_FILE).unlink(missing_ok=True)
        atomic_write(folder / CALL_FILE, cloudpickle.dumps((self.func, args, kwargs)))
        sys.stdout.flush()
        sys.stderr.flush()
        argv = [*self.argv, sys.executable, "-m", "corral.launchers", str(folder)]
        proc = subprocess.run(argv, check=False)  # noqa: S603 - argv list
        if proc.returncode != 0:
            raise RuntimeError(
                f"{shlex.join(self.argv)}: the ranks exited with status {proc.returncode}; "
                "see the task's stderr.log for each rank's error"
            )
        try:
            return cloudpickle.loads((folder / RESULT_FILE).read_bytes())
        except FileNotFoundError:
            raise RuntimeError(
                f"{shlex.join(self.argv)} exited 0 but no rank 0 wrote a result; "
                "check that the launcher starts the ranks (srun: the cluster's MpiDefault "
                "or launcher_args=['--mpi=pmix'])"
            ) from None


def rank_number() -> int:
    """This process's rank, from the variables the launchers set (0 without any)."""
    for name in RANK_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 0


def rank_main(folder: Path) -> int:
    """One rank: call the function; rank 0 writes its value. Exit status 1 on an error."""
    func_bytes, args, kwargs = cloudpickle.loads((folder / CALL_FILE).read_bytes())
    func = cloudpickle.loads(func_bytes)
    value = func(*args, **kwargs)
    if rank_number() == 0:
        atomic_write(folder / RESULT_FILE, cloudpickle.dumps(value))
    return 0


if __name__ == "__main__":  # pragma: no cover - run by the launcher on every rank
    sys.exit(rank_main(Path(sys.argv[1])))
