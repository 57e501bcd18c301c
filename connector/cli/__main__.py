"""``python -m connector.cli``: the same as the ``mentorsync`` command."""

from connector.cli import main

main(prog_name="mentorsync")
