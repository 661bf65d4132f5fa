"""Whole-code checks: ruff, mypy --strict, the import-linter contracts (layers), no import cycles."""
