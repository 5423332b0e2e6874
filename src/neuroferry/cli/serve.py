"""``ferry serve``: the web service with its orchestrator and executor."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from collections.abc import Callable

    import uvicorn
    from sqlalchemy import Engine

    from neuroferry.config import Settings
    from neuroferry.services import Services


DEFAULT_URL = "http://127.0.0.1:8000"


def _describe_executor(services: Services) -> str:
    if services.executor is None:
        return "none here: jobs run in `ferry orchestrator` processes"
    status = services.executor.status()
    return (
        f"{status.get('kind')} Dask cluster at {status.get('address')}, "
        f"{status.get('workers')} workers"
    )


def _refuse_a_taken_port(host: str, port: int) -> None:
    """Exit with a clear line, before anything starts, if ``host:port`` is taken."""
    import errno
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                typer.echo(
                    f"error: port {port} on {host} is taken (another `ferry serve`?). "
                    f"Choose another with --port (or FERRY_PORT), then set FERRY_URL to "
                    f"http://{host}:PORT for ferry commands in other shells",
                    err=True,
                )
            else:
                typer.echo(f"error: cannot listen on {host}:{port}: {exc.strerror}", err=True)
            raise typer.Exit(3) from exc


def _refuse_a_lost_database(settings: Settings) -> None:
    """A FERRY_HOME whose first start wrote token.json had a database: if that database
    is a SQLite file that is now missing or empty, it was lost, and starting would make an
    empty one in its place."""
    from neuroferry.auth import lost_database_message
    from neuroferry.db import sqlite_file
    from neuroferry.errors import ConfigError

    token_file = settings.home / "token.json"
    path = sqlite_file(settings.database_url)
    if path is None or not token_file.exists():
        return
    if not path.exists() or path.stat().st_size == 0:
        raise ConfigError(lost_database_message(token_file))


def serve(
    host: str | None = typer.Option(None, help="Address to listen on (default 127.0.0.1)."),
    port: int | None = typer.Option(None, min=1, max=65535, help="Port (default 8000)."),
    log_level: str = typer.Option("info", help="uvicorn log level."),
    orchestrate: bool = typer.Option(
        True,
        "--orchestrator/--no-orchestrator",
        help="Also run jobs here (default), or serve the web only and leave the jobs to "
        "`ferry orchestrator` processes (PostgreSQL).",
    ),
    demo: bool = typer.Option(
        False,
        "--demo",
        help="Also create a sample session under FERRY_HOME/demo and a ready-to-submit "
        "upload job for it, and say how to run it.",
    ),
) -> None:
    """Run the service: REST API, database migrations at start-up, embedded Dask cluster.

    With no configuration it uses SQLite and a local store under FERRY_HOME
    (~/.local/share/neuroferry) and an embedded Dask LocalCluster, on 127.0.0.1:8000.
    """
    import uvicorn

    from neuroferry import __version__
    from neuroferry.auth import ensure_first_admin
    from neuroferry.client import remove_service_url, write_service_url
    from neuroferry.config import get_settings
    from neuroferry.db import interrupt_statements, redact
    from neuroferry.redaction import install_log_redaction
    from neuroferry.services import Services
    from neuroferry.web import create_app

    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    settings = get_settings(**overrides)
    _refuse_a_taken_port(settings.host, settings.port)
    if demo:
        from neuroferry.demo import add_demo_destinations

        add_demo_destinations(settings)
    install_log_redaction(settings)
    # errors here are one clear line, before listening
    _refuse_a_lost_database(settings)
    services = Services.start(settings, orchestrate=orchestrate)
    try:
        token_file = ensure_first_admin(services.engine, settings.home)
    except BaseException:
        services.close()
        raise
    if token_file:
        typer.echo(
            f"created the first user, 'admin'; its API token is in {token_file}, "
            "where ferry commands find it"
        )
    host = f"[{settings.host}]" if ":" in settings.host else settings.host  # IPv6
    base = f"http://{host}:{settings.port}"
    typer.echo(
        f"neuroferry {__version__} on {base}\n"
        f"  database  {redact(settings.database_url)}\n"
        f"  store     {services.store.url}\n"
        f"  executor  {_describe_executor(services)}\n"
        f"  web pages {base}/ (sign in with a password, set by `ferry users passwd NAME`,"
        " or an API token)\n"
        f"  health    {base}/api/v2/health, API docs {base}/docs"
    )
    if base != DEFAULT_URL:
        typer.echo(
            f"  ferry commands in other shells find this service while it runs; elsewhere, "
            f"set\n    export FERRY_URL={base}"
        )
    if demo:
        from neuroferry.demo import seed_demo

        try:
            info = seed_demo(services, settings)
        except BaseException:
            services.close()
            raise
        typer.echo(info.instructions(base))
    grace = settings.shutdown_timeout
    config = uvicorn.Config(
        create_app(settings, services),
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        timeout_graceful_shutdown=round(grace) + _ANSWER_SECONDS,
    )
    server = _server_class()(config, services.engine, grace)
    url_file = write_service_url(settings.home, base)
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn raises the signal it stopped on again, once done
        pass
    finally:
        remove_service_url(url_file, base)
        # requests that outlived the shutdown may still start statements: none may run
        interrupt_statements(services.engine, for_good=True)
    if not server.started:
        raise typer.Exit(3)  # as uvicorn.run: it could not listen


#: Seconds requests get to answer (503) once their statements were interrupted.
_ANSWER_SECONDS = 5


def _server_class() -> Callable[[uvicorn.Config, Engine, float], uvicorn.Server]:
    import asyncio
    import socket

    import uvicorn

    from neuroferry.db import interrupt_statements

    class Server(uvicorn.Server):
        """uvicorn's server; when stopping, it waits ``grace`` seconds for the requests in
        progress, then interrupts their database statements so that they answer (503)."""

        def __init__(self, config: uvicorn.Config, engine: Engine, grace: float) -> None:
            super().__init__(config)
            self.engine = engine
            self.grace = grace

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            loop = asyncio.get_running_loop()
            timer = loop.call_later(self.grace, interrupt_statements, self.engine)
            try:
                await super().shutdown(sockets)
            finally:
                timer.cancel()

    return Server


def orchestrator() -> None:
    """Run only the orchestrator: claim queued tasks and run them on the executor.

    For larger deployments on PostgreSQL: any number of `ferry serve` and `ferry
    orchestrator` processes share the work, and no task runs twice. Stops on Ctrl-C or
    SIGTERM, giving its running tasks back to the queue.
    """
    import signal
    import threading

    from neuroferry.config import get_settings
    from neuroferry.db import redact
    from neuroferry.redaction import install_log_redaction
    from neuroferry.services import Services

    settings = get_settings()
    install_log_redaction(settings)
    _refuse_a_lost_database(settings)
    services = Services.start(settings)
    assert services.orchestrator is not None
    typer.echo(
        f"orchestrator {services.orchestrator.id}\n"
        f"  database  {redact(settings.database_url)}\n"
        f"  executor  {_describe_executor(services)}"
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        typer.echo("stopping: running tasks go back to the queue")
        services.close()
