"""Tests of the provenance and reporting layer (corral.report)."""
