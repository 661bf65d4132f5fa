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


def usable_port(port: int) -> int:
    """``port`` on 127.0.0.1 if it can be bound now (0: a free one), else a one-line UsageError."""
    from corral.errors import UsageError

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise UsageError(f"port {port} on 127.0.0.1 cannot be used ({exc.strerror}); choose another "
                             "with --port, or leave --port out for a free one") from exc
        chosen: int = sock.getsockname()[1]
        return chosen


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
        chosen = usable_port(port)
    typer.echo(f"Corral dashboard of {workdir.resolve()}: http://127.0.0.1:{chosen}/  (Ctrl-C stops it)")
    # live pages hold event streams open: Ctrl-C waits 2 s for them at most
    uvicorn.run(application, host="127.0.0.1", port=chosen, log_level="warning", timeout_graceful_shutdown=2)
