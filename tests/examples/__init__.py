"""Tests of the examples (examples/) and of the tutorial that walks through one (docs/tutorial.md)."""
