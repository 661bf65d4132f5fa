"""The engine: plans a graph (validation, cache keys), then releases ready tasks to an executor,
records what happens in the state store, and obeys pause/resume/cancel requests."""
