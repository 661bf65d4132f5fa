"""Tests of the core: model, engine, store, local executor."""
