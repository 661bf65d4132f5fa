"""``corral ui``: the web dashboard of this working directory's runs (docs/dashboard.md).

Serves :mod:`corral.web` on 127.0.0.1, on a free port unless ``--port`` is given, and prints the
URL. Needs the ``gateway`` extra (FastAPI and uvicorn): without it, one line says what to install.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated

import typer

from .common import DbOpt, WorkdirOpt, app, handled, open_store


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@app.command()
def ui(workdir: WorkdirOpt = Path("."), db: DbOpt = None,
       port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0: a free one).", min=0, max=65535)] = 0,
       ) -> None:
    """Serve the web dashboard of this directory's runs on 127.0.0.1 and print its URL.

    Example: corral ui -C ~/analysis"""
    from corral.optional import require

    with handled():
        require("fastapi", "corral ui", "gateway")
        uvicorn = require("uvicorn", "corral ui", "gateway")
        from corral.web.app import create_app

        application = create_app(workdir, db, open_store(workdir, db))
    chosen = port or free_port()
    typer.echo(f"Corral dashboard of {workdir.resolve()}: http://127.0.0.1:{chosen}/  (Ctrl-C stops it)")
    # live pages hold event streams open: Ctrl-C waits 2 s for them at most
    uvicorn.run(application, host="127.0.0.1", port=chosen, log_level="warning", timeout_graceful_shutdown=2)
