"""Command-line wiring: the only module besides :mod:`rmapcheck.commands` that imports click.

Every command turns bad input into one line on stderr and exit status 2, a
failed expectation, a difference or a finding into exit status 1.
"""

from __future__ import annotations

import sys

import click

from rmapcheck.commands import bench, check, conform, demo, designs, diff, live, replay, run, seed
from rmapcheck.commands.common import UserError

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """rmapcheck: the Linux kernel's anonymous reverse mapping, executable."""


for _mod in (run, live, diff, conform, check, replay, designs, seed, bench, demo):
    cli.add_command(_mod.command)


def main() -> None:
    """Entry point of the ``rmapcheck`` command."""
    try:
        cli.main(standalone_mode=False)
    except UserError as e:
        click.secho(f"rmapcheck: {e}", fg="red", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(2)
    except SystemExit:
        raise
    sys.exit(0)
