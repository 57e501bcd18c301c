"""``mentorsync serve``, ``worker`` and ``run``: the long-running service.

- ``serve``: the webhook service under gunicorn (bind from ``service.bind``).
- ``worker``: the Huey consumer; runs the schedules only where ``service.scheduler`` is true
  (exactly one machine), or as ``--scheduler/--no-scheduler`` says.
- ``run``: both, on one machine: the embedded default. ``serve`` and ``worker`` run as child
  processes; SIGTERM or SIGINT stops both cleanly, and if one dies the other is stopped too.

``--workers`` means one thing everywhere: threads of the worker executing tasks (``worker``,
``run``). The web service's gunicorn processes are ``--processes`` (``serve``) and
``--web-processes`` (``run``).
"""

from __future__ import annotations

import ctypes
import errno
import functools
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import click

from connector.config import Settings
from connector.errors import ConfigError
from connector.state.database import StateDB

log = logging.getLogger(__name__)

# How long `run` waits for its children after passing on a stop signal, before killing them.
STOP_SECONDS = 45.0


def run_gunicorn(app_factory: Callable[[], Any], options: dict[str, Any]) -> None:
    """Run ``app_factory()``'s app under gunicorn's arbiter with ``options`` (blocks)."""
    from gunicorn.app.base import BaseApplication

    from webhooks import logs

    logs.install()  # gunicorn logs unparseable request lines, which may hold the secret path

    class Application(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in options.items():
                if key in self.cfg.settings and value is not None:
                    self.cfg.set(key, value)

        def load(self) -> Any:
            # Each gunicorn worker builds its own app after the fork: no database or queue
            # connection is shared between processes.
            return app_factory()

    Application().run()


def prepare_storage(settings: Settings) -> None:
    """Create the state database's tables and the queue's, once, before any child starts.

    Several processes starting on a fresh installation (gunicorn's workers, the worker) would
    otherwise all create the tables at once, and SQLite lets only one of them win.
    """
    from connector.service.queue import init_schema, make_huey

    StateDB(settings.database_url).dispose()
    try:
        huey = make_huey(settings.queue_url)
    except ConfigError as exc:
        raise click.ClickException(f"configuration: {exc}") from None
    init_schema(huey)
    close = getattr(huey.storage, "close", None)
    if close is not None:
        close()


def check_bind(bind: str | Sequence[str], hint: str = "use --bind or service.bind") -> None:
    """Refuse to start, with a clear message, when an address to listen on cannot be bound.

    Without this, gunicorn logs "Connection in use" five times over five seconds and exits,
    and ``run`` would start (then stop) the worker for nothing. Forms other than ``host:port``
    (``unix:``, ``fd://``) are left to gunicorn.
    """
    for address in [bind] if isinstance(bind, str) else bind or ():
        host, sep, port = address.rpartition(":")
        if not sep or not port.isdigit() or address.startswith(("unix:", "fd://")):
            continue
        host = host.strip("[]") or "0.0.0.0"  # noqa: S104  (":8080" means every interface)
        try:
            family, kind, proto, _, sockaddr = socket.getaddrinfo(
                host, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )[0]
            with socket.socket(family, kind, proto) as sock:
                # As gunicorn does: a port in TIME_WAIT is free, one with a listener is not.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(sockaddr)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                reason = "the port is already in use (is mentorsync already running?)"
            else:
                reason = exc.strerror or type(exc).__name__
            raise click.ClickException(f"cannot listen on {address}: {reason}; {hint}") from None


def gunicorn_options(
    settings: Settings, bind: str | None, workers: int, threads: int, config_file: str | None
) -> dict[str, Any]:
    """Gunicorn settings for ``serve``: ours, then the optional gunicorn config file's."""
    options: dict[str, Any] = {
        "bind": bind or settings.service.bind,
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread" if threads > 1 else "sync",
        "timeout": 30,
        "graceful_timeout": 20,
        "loglevel": settings.service.log_level.lower(),
        "errorlog": "-",
        # No access log: the Outbound Message URL may carry the secret path segment.
        "accesslog": None,
        "proc_name": "mentorsync-web",
        # The body limit is enforced by the app (413); this caps the request line and headers.
        "limit_request_line": 4094,
        # gunicorn's runtime control socket lives at one path per user: two instances on a
        # machine would fight over it, and mentorsync does not use it.
        "control_socket_disable": True,
    }
    if config_file:
        import runpy

        loaded = runpy.run_path(config_file)
        options.update({k: v for k, v in loaded.items() if not k.startswith("_")})
    return options


@click.command()
@click.option("--bind", help="host:port to listen on (default: service.bind).")
@click.option(
    "--processes",
    type=click.IntRange(1, 64),
    default=2,
    show_default=True,
    help="Web service processes (gunicorn workers).",
)
@click.option(
    "--threads",
    type=click.IntRange(1, 64),
    default=4,
    show_default=True,
    help="Threads per web service process.",
)
@click.option(
    "--gunicorn-config",
    type=click.Path(exists=True, dir_okay=False),
    help="A gunicorn config file (deploy/gunicorn.conf.py); its settings win.",
)
@click.pass_obj
def serve(
    state: Any, bind: str | None, processes: int, threads: int, gunicorn_config: str | None
) -> None:
    """Run the webhook service (Outbound Messages, signed events, health) under gunicorn."""
    settings: Settings = state.require(storage=True)
    from webhooks.app import create_app

    options = gunicorn_options(settings, bind, processes, threads, gunicorn_config)
    check_bind(options["bind"])
    prepare_storage(settings)
    run_gunicorn(lambda: create_app(settings), options)


@click.command()
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=2,
    show_default=True,
    help="Worker threads executing tasks.",
)
@click.option(
    "--scheduler/--no-scheduler",
    default=None,
    help="Run the periodic schedules here (default: service.scheduler). Exactly one "
    "machine should.",
)
@click.pass_obj
def worker(state: Any, workers: int, scheduler: bool | None) -> None:
    """Run the background worker: drains the inbox, runs schedules and retries."""
    from connector.service.worker import Worker

    settings: Settings = state.require("moodle", "salesforce")
    try:
        work = Worker(settings)
    except ConfigError as exc:
        raise click.ClickException(f"configuration: {exc}") from None
    work.run_consumer(workers=workers, periodic=scheduler)


def _child_command(state: Any, verbose: bool) -> list[str]:
    base = [sys.executable, "-c", "from connector.cli import main; main(prog_name='mentorsync')"]
    if state.config_path:
        base += ["--config", state.config_path]
    if verbose:
        base.append("-v")
    return base


def _die_with_parent(parent: int) -> None:
    """In a child of ``run``, before exec: have Linux send it SIGTERM when ``run`` dies.

    ``run`` stops its children on SIGTERM and SIGINT, but a SIGKILL (the OOM killer,
    ``kill -9``) gives it no chance; without this, gunicorn and the worker would live on,
    holding the port and the queue. Elsewhere than Linux, a no-op.
    """
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGTERM)
        if os.getppid() != parent:  # `run` died between the fork and the prctl
            os.kill(os.getpid(), signal.SIGTERM)


def _stop_children(children: Sequence[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    for child in children:
        try:
            child.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            log.warning("child %s did not stop in time; killing it", child.pid)
            child.kill()
            child.wait()


@click.command("run")
@click.option(
    "--web-processes",
    type=click.IntRange(1, 64),
    default=2,
    show_default=True,
    help="Web service processes (gunicorn workers).",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=2,
    show_default=True,
    help="Worker threads executing tasks.",
)
@click.pass_context
def run_all(ctx: click.Context, web_processes: int, workers: int) -> None:
    """Run web service, worker and scheduler together on this machine (the embedded default)."""
    state = ctx.obj
    settings: Settings = state.require("moodle", "salesforce")  # before starting anything
    check_bind(settings.service.bind, "choose another address in service.bind")
    prepare_storage(settings)
    verbose = bool(ctx.parent and ctx.parent.params.get("verbose"))
    base = _child_command(state, verbose)
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        received.append(signum)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    scheduler = "--scheduler" if settings.service.scheduler else "--no-scheduler"
    children: list[subprocess.Popen[bytes]] = []
    try:
        for args in (
            ["serve", "--processes", str(web_processes)],
            ["worker", "--workers", str(workers), scheduler],
        ):
            # preexec_fn is safe here: `run` has started no thread.
            die_with_run = functools.partial(_die_with_parent, os.getpid())
            children.append(subprocess.Popen([*base, *args], preexec_fn=die_with_run))
        log.info(
            "started web service (pid %s) and worker (pid %s)", children[0].pid, children[1].pid
        )
        while not stop.wait(0.2):
            if any(child.poll() is not None for child in children):
                break
    finally:
        _stop_children(children)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if received:
        log.info("stopped by %s", signal.Signals(received[0]).name)
        return
    failed = [c for c in children if c.returncode]
    code = failed[0].returncode if failed else 1
    raise click.ClickException(f"a child process exited (code {code}); stopped the other")


COMMANDS: list[click.Command] = [serve, worker, run_all]
