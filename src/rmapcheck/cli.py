"""Command-line wiring: the only module besides :mod:`rmapcheck.commands` that imports click.

The exit status says what happened, the same for every command:

====  ===============================================================
0     clean: the run succeeded, the sides agree, the trace reproduced
1     a finding, a difference, or a step whose result is not the stated one
2     bad input: one line on stderr naming the file and line or the option
3     an internal error: one line on stderr with the path of a crash report
      holding the traceback (:func:`crash_dir`)
130   interrupted (Ctrl-C) outside ``check``, which reports what it found
====  ===============================================================
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

import click

from rmapcheck.commands import bench, check, conform, demo, designs, diff, history, live, replay, repro, run, seed
from rmapcheck.commands.common import UserError

__all__ = ["EXIT_BAD_INPUT", "EXIT_FINDING", "EXIT_INTERNAL", "crash_dir", "main", "run_cli"]

EXIT_FINDING = 1
EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3

#: longest error line printed (a message that repeats its input is cut here)
_LINE = 400


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """rmapcheck: the Linux kernel's anonymous reverse mapping, executable.

    Exit status: 0 clean, 1 a finding, a difference or an unmet expectation,
    2 bad input, 3 an internal error (with the path of a crash report).
    """


for _mod in (run, live, diff, conform, check, replay, repro, designs, seed, history, bench, demo):
    cli.add_command(_mod.command)


def crash_dir() -> Path:
    """Where crash reports go: ``$XDG_CACHE_HOME/rmapcheck/crashes`` (``~/.cache`` by default).

    If that cannot be created, ``rmapcheck-crashes`` in the temporary
    directory (``$TMPDIR``, else ``/tmp``).
    """
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    d = Path(cache) / "rmapcheck" / "crashes"
    try:
        d.mkdir(parents=True, exist_ok=True)
        return d
    except OSError:
        d = Path(tempfile.gettempdir()) / "rmapcheck-crashes"
        d.mkdir(parents=True, exist_ok=True)
        return d


def _crash_report(args: list[str], e: BaseException) -> str:
    # Write the traceback to a new file; its path, or why there is none.
    text = (f"rmapcheck crash report\ntime: {time.strftime('%Y-%m-%d %H:%M:%S %z')}\n"
            f"python: {platform.python_version()} on {platform.platform()}\n"
            f"command: rmapcheck {' '.join(args)}\n\n"
            + "".join(traceback.format_exception(type(e), e, e.__traceback__)))
    try:
        fd, path = tempfile.mkstemp(prefix=f"crash-{time.strftime('%Y%m%d-%H%M%S')}-", suffix=".txt",
                                    dir=crash_dir())
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        return path
    except OSError as err:
        return f"(none written: {err.strerror})"


def _say(msg: str) -> None:
    line = " ".join(msg.split())
    if len(line) > _LINE:
        line = line[:_LINE] + "..."
    click.secho(f"rmapcheck: {line}", fg="red", err=True)


def run_cli(args: list[str] | None = None) -> int:
    """Run the command line ``args`` (``sys.argv[1:]`` if ``None``); return its exit status.

    Never raises but for :class:`KeyboardInterrupt` outside click and
    :class:`BaseException` subclasses that are not :class:`Exception` (a
    caller's own time limit, say).
    """
    argv = list(sys.argv[1:] if args is None else args)
    try:
        rv = cli.main(args=argv, prog_name="rmapcheck", standalone_mode=False)
    except UserError as e:
        _say(str(e))
        return EXIT_BAD_INPUT
    except click.exceptions.Abort:
        return 130
    except click.ClickException as e:
        ctx = getattr(e, "ctx", None)
        where = f"{ctx.command_path}: " if ctx is not None else ""
        _say(f"{where}{e.format_message()}")
        return EXIT_BAD_INPUT
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else EXIT_BAD_INPUT)
    except BrokenPipeError:
        # The reader went away (| head): nothing more to say, to anyone.
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 141
    except Exception as e:
        path = _crash_report(argv, e)
        what = str(e).splitlines()[0] if str(e) else ""
        _say(f"internal error: {type(e).__name__}{': ' + what if what else ''}; crash report: {path}")
        return EXIT_INTERNAL
    return rv if isinstance(rv, int) else 0


def main() -> None:
    """Entry point of the ``rmapcheck`` command."""
    sys.exit(run_cli())
