"""The `textlstm` command: a click group whose errors are one line on stderr, never a traceback."""

from __future__ import annotations

import os
import sys
import warnings

import click

from textlstm import __version__
from textlstm.errors import ReportedElsewhere, TextlstmError
from textlstm.hardware.threads import prefer_passive_waiting

DEBUG_ENV = "TEXTLSTM_DEBUG"  # set to 1 to see tracebacks of unexpected errors

# OpenMP threads that spin while they wait collapse when other processes want the cores: the default
# run's step on 2 threads ran many times slower spinning than waiting passively on a shared 2-core
# machine (benchmarks/experiments/e2026_11_25_default_run). Read once, when
# torch loads its OpenMP runtime, so it is set here, before any command imports torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="textlstm")
def cli() -> None:
    """Train, sample from and evaluate LSTM language models."""


def _register_commands() -> None:
    from textlstm.cli.chat import chat
    from textlstm.cli.eval import eval_command
    from textlstm.cli.export import export_command
    from textlstm.cli.generate import generate
    from textlstm.cli.info import info
    from textlstm.cli.inspect import inspect_command
    from textlstm.cli.plot import plot
    from textlstm.cli.push import push
    from textlstm.cli.runs import runs
    from textlstm.cli.serve import serve
    from textlstm.cli.train import train

    for command in (
        train,
        eval_command,
        generate,
        chat,
        serve,
        inspect_command,
        info,
        runs,
        plot,
        export_command,
        push,
    ):
        cli.add_command(command)


_register_commands()


def fail(message: str, code: int = 1) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    click.echo(f"warning: {message}", err=True)


def main(argv: list[str] | None = None) -> None:
    warnings.showwarning = _show_warning
    if not os.environ.get(DEBUG_ENV):
        # torch's C++ side logs the retries and failures of a process group (and their stack frames)
        # on its own; the error line says what matters. Read once, when torch is first imported.
        os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "FATAL")
    prefer_passive_waiting()
    try:
        args = list(sys.argv[1:] if argv is None else argv)
        cli.main(args=args, prog_name="textlstm", standalone_mode=False, obj={"argv": args})
    except click.exceptions.NoArgsIsHelpError as error:
        click.echo(error.ctx.get_help() if error.ctx else str(error))
        sys.exit(2)
    except click.UsageError as error:
        command = error.ctx.command_path if error.ctx else "textlstm"
        fail(f"{error.format_message()} (see '{command} --help')", 2)
    except click.ClickException as error:
        fail(error.format_message(), error.exit_code)
    except click.exceptions.Exit as error:
        sys.exit(error.exit_code)
    except (click.Abort, KeyboardInterrupt):
        click.echo("interrupted", err=True)
        sys.exit(130)
    except ReportedElsewhere:
        sys.exit(1)
    except TextlstmError as error:
        fail(str(error))
    except BrokenPipeError:
        sys.stderr.close()  # output piped into a program that stopped reading, e.g. `| head`
        sys.exit(141)
    except Exception as error:
        if os.environ.get(DEBUG_ENV):
            raise
        fail(f"unexpected {type(error).__name__}: {error} (set {DEBUG_ENV}=1 for the traceback)")
