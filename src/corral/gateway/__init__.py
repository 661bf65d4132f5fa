"""The gateway (issue 14): a multi-user REST service that runs jobs for its users, tracks them in a
database and charges core-hours to project budgets. :mod:`.store` is the only module here that
speaks SQL; :mod:`.app` is the FastAPI application; :mod:`.runner` runs queued jobs on the HPC
systems of :mod:`.systems` through Corral's executors.
See docs/gateway.md for what exists and what does not yet."""
