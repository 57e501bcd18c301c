"""Placeholder: replaced by the module that owns these commands."""

import click

COMMANDS: list[click.Command] = []
