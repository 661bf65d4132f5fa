"""One conformance suite for every executor, and the executor registry (entry points)."""
