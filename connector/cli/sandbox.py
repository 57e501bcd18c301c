"""``mentorsync sandbox``: run the loopback Salesforce and Moodle stand-ins until stopped."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import tomllib
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import click

if TYPE_CHECKING:
    from sandbox.moodle import MoodleSandbox
    from sandbox.salesforce import SalesforceSandbox

CONFIG_FILE = "mentorsync.toml"
AUTOSAVE_SECONDS = 60.0


@click.command("sandbox")
@click.option(
    "--data",
    "data_dir",
    default="var/sandbox",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory of the sandboxes' state (seeded on first start, resumed afterwards).",
)
@click.option(
    "--members",
    default=300,
    show_default=True,
    type=click.IntRange(min=30),
    help="Members to seed on first start.",
)
@click.option("--seed", "seed_value", default=42, show_default=True, help="Seed of the data.")
@click.option(
    "--latency",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds added to every call of both sandboxes.",
)
@click.option(
    "--outbound-url",
    default=None,
    help="Where Salesforce sends Outbound Messages (the webhook URL); none if not given.",
)
@click.option(
    "--moodle-port",
    default=0,
    type=click.IntRange(0, 65535),
    help="0 = the last run's port if free, else any free port.",
)
@click.option(
    "--salesforce-port",
    default=0,
    type=click.IntRange(0, 65535),
    help="0 = the last run's port if free, else any free port.",
)
def sandbox_command(
    data_dir: Path,
    members: int,
    seed_value: int,
    latency: float,
    outbound_url: str | None,
    moodle_port: int,
    salesforce_port: int,
) -> None:
    """Run a sandbox Salesforce org and Moodle site on 127.0.0.1 until Ctrl-C or SIGTERM.

    On first start both are seeded; the state is saved in --data when stopped, and a ready
    config file for mentorsync is written there.
    """
    # Imported here: the sandboxes are a development extra (trustme), not needed by other commands.
    from sandbox.moodle import MoodleSandbox
    from sandbox.salesforce import SalesforceSandbox
    from sandbox.seed import seed

    data_dir = data_dir.resolve()
    # Come back on the last run's Moodle port, so a mentorsync started with the written config
    # keeps working across a sandbox restart (the Salesforce sandbox does this by itself).
    moodle_port = moodle_port or _previous_moodle_port(data_dir / CONFIG_FILE)
    try:
        sf = SalesforceSandbox(
            data_dir / "salesforce",
            latency=latency,
            outbound_url=outbound_url,
            port=salesforce_port,
        )
        moodle = MoodleSandbox(data_dir / "moodle", latency=latency, port=moodle_port)
    except ValueError as exc:
        raise click.ClickException(f"sandbox state in {data_dir}: {exc}") from None
    moodle_has_state = moodle.state_file is not None and moodle.state_file.exists()
    if sf.has_state != moodle_has_state:
        raise click.ClickException(
            f"{data_dir} holds state for only one of the two sandboxes; remove the directory "
            "to start afresh"
        )
    # Before anything starts or is saved: werkzeug would print its own message and exit, and
    # stopping a half-started pair would save an empty state that the next start "resumes".
    for option, port in (("--moodle-port", moodle_port), ("--salesforce-port", salesforce_port)):
        if port and not port_free(port):
            raise click.ClickException(
                f"cannot listen on 127.0.0.1:{port}: the port is already in use; choose "
                f"another {option} (0 = any free port)"
            )

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            sf.start()
            moodle.start()
        except (OSError, SystemExit) as exc:  # werkzeug exits when a port is taken meanwhile
            _forget_state(sf, moodle)
            _stop_quietly(sf, moodle)
            raise click.ClickException(f"cannot start the sandboxes: {_why(exc)}") from None
        try:
            if sf.has_state:
                click.echo(f"Resumed the sandboxes' state from {data_dir}")
            else:
                report = seed(sf, moodle, members=members, seed=seed_value)
                # Save at once: a crash before the first stop must not lose the seed.
                sf.save()
                moodle.save()
                counts = report.summary()
                click.echo(
                    f"Seeded {counts['members']} members, {counts['active_matches']} active "
                    f"matches (seed {seed_value})"
                )
            config = write_config(data_dir, sf, moodle)
            click.echo(f"Salesforce sandbox: {sf.url}  (org {sf.org_id}, CA file {sf.ca_file})")
            click.echo(f"Moodle sandbox:     {moodle.url}")
            if outbound_url:
                click.echo(f"Outbound Messages:  {outbound_url}")
            click.echo(f"Config: {config}")
            click.echo(f"  try: mentorsync --config {config} doctor")
            click.echo("Press Ctrl-C to stop.")
            # Save now and then too, so even a killed sandbox loses little.
            while not stop.wait(AUTOSAVE_SECONDS):
                sf.save()
                moodle.save()
            click.echo("Stopping the sandboxes and saving their state...")
        finally:
            try:
                moodle.stop()
            finally:
                sf.stop()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when ``host:port`` can be listened on now (as werkzeug binds: SO_REUSEADDR)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _forget_state(sf: SalesforceSandbox, moodle: MoodleSandbox) -> None:
    # A pair that never listened must save nothing: stop() saves when a data dir is set.
    sf.data_dir = None
    moodle.data_dir = None


def _stop_quietly(sf: SalesforceSandbox, moodle: MoodleSandbox) -> None:
    for box in (moodle, sf):
        try:
            box.stop()
        except OSError as exc:  # already half-closed: nothing more to release
            click.echo(f"note: stopping a sandbox: {type(exc).__name__}", err=True)


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return "a port is already in use"


def _previous_moodle_port(config: Path) -> int:
    """The Moodle port of an earlier run's config if that port is free now, else 0."""
    try:
        with config.open("rb") as handle:
            port = urlparse(str(tomllib.load(handle)["moodle"]["url"])).port or 0
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError):
        return 0
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return 0
    return port


def write_config(data_dir: Path, sf: SalesforceSandbox, moodle: MoodleSandbox) -> Path:
    """Write ``mentorsync.toml`` for the running sandboxes into ``data_dir``; return its path.

    It holds the sandboxes' throwaway credentials, so it is readable by its owner only.
    """
    q = json.dumps  # a JSON string is a valid TOML basic string
    text = f"""# Written by `mentorsync sandbox` for the sandboxes in {data_dir}.
# The credentials are the sandboxes' own throwaway ones.

[moodle]
url = {q(moodle.url)}
token = {q(moodle.token)}

[salesforce]
auth = "password"
domain = {q(f"{sf.host}:{sf.port}")}
username = {q(sf.username)}
password = {q(sf.password)}
security_token = {q(sf.security_token)}
ca_bundle = {q(sf.ca_file)}
org_ids = [{q(sf.org_id)}]
# Other grants the sandbox accepts:
# auth = "jwt"                 consumer_key = {q(sf.consumer_key)}
#   with MENTORSYNC_SALESFORCE_PRIVATE_KEY_FILE={sf.jwt_key_file}
# auth = "client_credentials"  consumer_key as above, consumer_secret = {q(sf.consumer_secret)}

[service]
data_dir = {q(str(data_dir / "mentorsync"))}
"""
    path = data_dir / CONFIG_FILE
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path


COMMANDS: list[click.Command] = [sandbox_command]
