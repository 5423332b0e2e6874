"""``ferry serve``: the web service with its orchestrator and executor."""

from __future__ import annotations

import typer


def serve(
    host: str | None = typer.Option(None, help="Address to listen on (default 127.0.0.1)."),
    port: int | None = typer.Option(None, min=1, max=65535, help="Port (default 8000)."),
    log_level: str = typer.Option("info", help="uvicorn log level."),
) -> None:
    """Run the service: REST API, database migrations at start-up, embedded Dask cluster.

    With no configuration it uses SQLite and a local store under FERRY_HOME
    (~/.local/share/neuroferry) and an embedded Dask LocalCluster, on 127.0.0.1:8000.
    """
    import uvicorn

    from neuroferry.config import get_settings
    from neuroferry.db import redact
    from neuroferry.web import create_app

    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    settings = get_settings(**overrides)
    executor = settings.dask_scheduler or f"embedded LocalCluster, {settings.dask_workers} workers"
    typer.echo(
        f"neuroferry serving on http://{settings.host}:{settings.port}\n"
        f"  database  {redact(settings.database_url)}\n"
        f"  store     {settings.store_url}\n"
        f"  executor  {executor}\n"
        f"  health    http://{settings.host}:{settings.port}/api/v2/health"
    )
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=log_level)
