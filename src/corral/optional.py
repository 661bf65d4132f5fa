"""Importing optional dependencies with a one-line error that names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from corral.errors import MissingExtra


def require(module: str, feature: str, extra: str | None) -> ModuleType:
    """``import module``, or :class:`MissingExtra` saying that ``feature`` needs ``extra``
    (``None``: a dependency of every install, so the fix is to reinstall Corral)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if (exc.name or "").startswith("corral"):
            raise
        raise MissingExtra(feature, extra, exc) from exc
