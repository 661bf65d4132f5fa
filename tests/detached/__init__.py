"""Tests of detached mode and ``corral export`` (corral.engine's detached runs), on real clusters."""
