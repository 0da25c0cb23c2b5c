"""`d6-bridge serve`: the production service (HTTP API, scheduler, delivery workers) under uvicorn.

uvicorn turns SIGTERM and SIGINT into a graceful shutdown: it stops accepting requests and runs the app's
lifespan shutdown, which stops taking polls and lets deliveries in flight finish or hands them back
within a bounded time (see `Services.stop`).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Generator

import uvicorn

from bridge import collector
from bridge.app import SHUTDOWN_GRACE_SECONDS, create_app
from bridge.logs import configure_logging
from bridge.settings import Settings, secrets_of


class Server(uvicorn.Server):
    """uvicorn's server, except that a SIGTERM or SIGINT ends in a clean exit 0 after the shutdown.

    (uvicorn re-raises the signal once it has shut down, which makes the exit status "killed".)
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self.handle_exit, signum, None)
        try:
            yield
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)


def run_serve(settings: Settings) -> None:
    configure_logging(level=settings.log_level, fmt=settings.log_format, secrets=secrets_of(settings))
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(SHUTDOWN_GRACE_SECONDS) + 5,
        server_header=False,
    )
    # What is built by now (modules, the app, its clients) lives as long as the process: frozen, the
    # collector's full passes skip it. Left in, they cost a delivering process about 15% of its CPU
    # (bench/RESULTS.md, delivery).
    collector.settle()
    Server(config).run()
