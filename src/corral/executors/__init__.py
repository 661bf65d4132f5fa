"""Executors by name. Each lives in its own module and is imported only when used."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from corral.errors import ConfigError
from corral.executors.base import Executor, ExecutorContext
from corral.optional import require

EXECUTORS: dict[str, str] = {
    "local": "corral.executors.local:LocalExecutor",
    "slurm": "corral.executors.batch.slurm:SlurmExecutor",
    "sge": "corral.executors.batch.sge:SGEExecutor",
    "pbs": "corral.executors.batch.pbs:PBSExecutor",
    "lsf": "corral.executors.batch.lsf:LSFExecutor",
    "ssh": "corral.executors.ssh:SSHExecutor",
    "dask": "corral.executors.dask:DaskExecutor",
}


def executor_class(kind: str) -> type[Executor]:
    """The executor class registered under ``kind``."""
    try:
        target = EXECUTORS[kind]
    except KeyError:
        raise ConfigError(
            f"unknown executor {kind!r}; choose one of {', '.join(sorted(EXECUTORS))} "
            "or a profile defined in corral.toml"
        ) from None
    module_name, _, attr = target.partition(":")
    module = require(module_name, f"executor {kind!r}", kind)
    cls: type[Executor] = getattr(module, attr)
    return cls


def create_executor(kind: str, options: Mapping[str, Any], ctx: ExecutorContext) -> Executor:
    """Build an executor from its kind and profile options (unknown options are an error)."""
    cls = executor_class(kind)
    factory: Any = cls.from_options  # type: ignore[attr-defined]  # classmethod of every executor
    executor: Executor = factory(dict(options), ctx)
    return executor


__all__ = ["EXECUTORS", "Executor", "ExecutorContext", "create_executor", "executor_class"]
