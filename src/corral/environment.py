"""The software and hardware environment of a run, recorded in ``runs.environment``.

:func:`collect_environment` is called by the engine when a run starts; the report shows it and the
RO-Crate export turns it into ``SoftwareApplication`` entities.
"""

from __future__ import annotations

import os
import platform
import socket
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

_CONTAINER_VARS = (
    ("APPTAINER_NAME", "apptainer"),
    ("SINGULARITY_NAME", "singularity"),
    ("APPTAINER_CONTAINER", "apptainer"),
    ("SINGULARITY_CONTAINER", "singularity"),
)


def _total_memory() -> int | None:
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except Exception:  # psutil missing or unsupported on this platform
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def _cpu_count() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()


def _from_dir_name(dist: metadata.Distribution) -> tuple[str | None, str | None]:
    """Name and version from a ``name-version.dist-info`` directory, without parsing METADATA."""
    path = getattr(dist, "_path", None)
    base = getattr(path, "name", "")
    if not base.endswith(".dist-info"):
        return None, None
    stem = base[: -len(".dist-info")]
    if stem.count("-") != 1:
        return None, None
    name, version = stem.split("-")
    return name.replace("_", "-"), version


def _distributions() -> dict[str, str]:
    """Installed distributions, ``{name: version}``, sorted by lower-cased name."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name, version = _from_dir_name(dist)
        if name is None:  # no standard *.dist-info name: read the metadata file (slower)
            name = dist.metadata["Name"] if dist.metadata else None
            version = str(dist.version)
        if name and name not in found:
            found[str(name)] = str(version)
    return dict(sorted(found.items(), key=lambda kv: kv[0].lower()))


def _container(env: dict[str, str]) -> dict[str, str | None] | None:
    for var, runtime in _CONTAINER_VARS:
        if env.get(var):
            return {"runtime": runtime, "image": env[var]}
    if Path("/.dockerenv").exists():
        return {"runtime": "docker", "image": env.get("CONTAINER_IMAGE")}
    if Path("/run/.containerenv").exists():
        return {"runtime": "podman", "image": env.get("CONTAINER_IMAGE")}
    return None


def collect_environment(packages: bool = True) -> dict[str, Any]:
    """What the engine records about where a run happens (JSON-friendly).

    Keys: ``python`` (version), ``implementation``, ``executable``, ``platform``, ``system``,
    ``release``, ``machine``, ``host``, ``cpu_count``, ``memory`` (bytes), ``container``
    (``{"runtime", "image"}`` or ``None``), ``corral`` (version) and ``packages``
    (``{distribution: version}``; left out when ``packages`` is false).
    """
    uname = platform.uname()
    dists = _distributions() if packages else {}
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "system": uname.system,
        "release": uname.release,
        "machine": uname.machine,
        "host": socket.gethostname(),
        "cpu_count": _cpu_count(),
        "memory": _total_memory(),
        "container": _container(dict(os.environ)),
        "corral": dists.get("corral") or _version("corral"),
    }
    if packages:
        env["packages"] = dists
    return env


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
