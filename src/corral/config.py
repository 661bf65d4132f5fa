"""``corral.toml``: executor profiles and defaults.

::

    [defaults]
    executor = "mycluster"
    jobs = 100

    [executors.mycluster]
    kind = "slurm"
    partition = "short"
    account = "lab42"
    max_jobs = 500
    transport = "ssh://login.example.org"

A profile name or a bare executor kind (``local``, ``slurm``...) is accepted by ``--executor``.
The file is looked up in the working directory, then ``~/.config/corral/corral.toml``.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral.errors import ConfigError
from corral.executors import EXECUTORS


@dataclass
class Config:
    path: Path | None = None
    defaults: dict[str, Any] = field(default_factory=dict)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)

    def executor(self, name: str | None) -> tuple[str, dict[str, Any]]:
        """(kind, options) for a profile name or an executor kind."""
        name = name or self.defaults.get("executor") or "local"
        if name in self.profiles:
            options = dict(self.profiles[name])
            kind = options.pop("kind", None)
            if kind not in EXECUTORS:
                raise ConfigError(
                    f"profile [executors.{name}] in {self.path} needs kind = one of "
                    f"{', '.join(sorted(EXECUTORS))}"
                )
            return str(kind), options
        if name in EXECUTORS:
            return name, {}
        known = sorted(set(EXECUTORS) | set(self.profiles))
        raise ConfigError(f"unknown executor or profile {name!r}; choose one of {', '.join(known)}")


def load_config(workdir: Path, path: Path | None = None) -> Config:
    candidates = [path] if path else [workdir / "corral.toml",
                                      Path.home() / ".config" / "corral" / "corral.toml"]
    for p in candidates:
        if p is not None and p.is_file():
            try:
                data = tomllib.loads(p.read_text())
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{p} is not valid TOML: {exc}; fix the file") from None
            unknown = set(data) - {"defaults", "executors"}
            if unknown:
                raise ConfigError(
                    f"{p}: unknown section(s) {sorted(unknown)}; use [defaults] and [executors.NAME]"
                )
            profiles = data.get("executors", {})
            if not isinstance(profiles, dict) or not all(isinstance(v, dict) for v in profiles.values()):
                raise ConfigError(f"{p}: write profiles as [executors.NAME] tables")
            return Config(p, dict(data.get("defaults", {})), profiles)
    if path is not None:
        raise ConfigError(f"config file {path} does not exist")
    return Config()
