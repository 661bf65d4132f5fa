"""The web dashboard (issue 15): server-rendered pages over a Corral state store.

:func:`corral.web.app.create_app` is the dashboard of one user's local state (``corral ui``);
:mod:`.render` (templates, units, static assets, server-sent events) and :mod:`.views` (what a
runs list and a run page show) are shared with the gateway's pages (``corral.gateway.pages``).
Needs the ``gateway`` extra (FastAPI, uvicorn). See docs/dashboard.md.
"""
