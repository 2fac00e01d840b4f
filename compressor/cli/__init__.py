"""The ``compress`` command line. Commands live in their own modules and are imported only when run,
so ``compress --help`` answers instantly."""
from __future__ import annotations

import importlib
import os
import sys

import click

# OpenMP threads that spin while waiting for work collapse when the cores are shared (20x slower training
# steps measured with two busy neighbours on 2 cores); sleeping waits cost little when the machine is idle.
# Read once when torch loads its OpenMP runtime, so it is set here, before any command imports torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from compressor.cli import failures

COMMANDS = {
    "run": ("compressor.cli.run_cmd", "run", "Run a recipe: distil, export, build, verify, profile, report, bundle."),
    "list": ("compressor.cli.list_cmd", "list_cmd", "List models, targets and recipes."),
    "export": ("compressor.cli.export_cmd", "export", "Export a PyTorch model to a verified ONNX file."),
    "build": ("compressor.cli.build_cmd", "build", "Build an engine for a target from an ONNX file."),
    "compare": ("compressor.cli.compare_cmd", "compare", "Check an artifact's outputs against a reference."),
    "profile": ("compressor.cli.profile_cmd", "profile", "Measure an artifact's latency."),
    "layers": ("compressor.cli.layers_cmd", "layers", "Per-layer time by PyTorch module, precision each ran in."),
    "bundle": ("compressor.cli.bundle_cmd", "bundle", "Write or verify a deployment bundle."),
    "report": ("compressor.cli.report_cmd", "report", "Show a run's report; merge latency measured on a device."),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, help_) for name, (_, _, help_) in COMMANDS.items()])

    def resolve_command(self, ctx, args):
        name = args[0] if args else ""
        if name and name not in COMMANDS and not name.startswith("-"):
            from compressor.core.errors import did_you_mean

            ctx.fail(f"no command '{name}'{did_you_mean(name, COMMANDS)}")
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: click.Context):
        """Run the command; Ctrl-C and a file that ends early are reported by :func:`main`, not by click."""
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise failures.Interrupted() from None
        except EOFError as exc:
            detail = failures.one_line(str(exc))
            raise failures.EndOfFile(f"a file ended before its data did{f' ({detail})' if detail else ''}") from exc


_state = {"debug": False}


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]},
             epilog="Exit status: 0 success; 1 a check failed (compare); 2 bad input or the machine refused (one line "
                    "on stderr: a bad value, a missing, unreadable or invalid file, a full disk, out of memory); "
                    "3 an internal error, i.e. a bug (one line; --debug or COMPRESS_DEBUG=1 shows the traceback); "
                    "130 interrupted.")
@click.version_option(package_name="edge-compress", prog_name="compress")
@click.option("-v", "--verbose", is_flag=True, help="Log progress details.")
@click.option("--debug", is_flag=True, help="Show the Python traceback of an internal error (also COMPRESS_DEBUG=1).")
def cli(verbose: bool, debug: bool) -> None:
    """edge-compress: export, build, verify, profile and bundle compact models for edge devices.

    \b
    compress export tiny_convnet --out build/
    compress build build/tiny_convnet.onnx --target openvino --precision fp32 --out build/
    compress compare tiny_convnet build/tiny_convnet_fp32.xml
    compress profile build/tiny_convnet_fp32.xml --json
    compress bundle build/tiny_convnet_fp32.xml --out dist/
    compress bundle verify dist/tiny_convnet_fp32-openvino.tar.gz
    """
    import logging

    _state["debug"] = _state["debug"] or debug
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")


def main(argv: list[str] | None = None) -> int:
    """Entry point: every failure becomes one line on stderr and an exit status (see ``compress --help``).

    Bad input, missing files, a full disk and out-of-memory exit 2; Ctrl-C exits 130; an internal error (a bug)
    exits 3, or raises with its traceback under ``--debug`` / ``COMPRESS_DEBUG=1``.
    """
    _state["debug"] = failures.debug_from_env()
    try:
        cli.main(args=argv, prog_name="compress", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.UsageError as exc:
        click.echo(failures.usage_line(exc), err=True)
        return failures.EXIT_BAD_INPUT
    except click.ClickException as exc:  # click's own file errors: bad input like the rest
        click.echo(f"error: {failures.one_line(exc.format_message())}", err=True)
        return failures.EXIT_BAD_INPUT
    except (click.Abort, KeyboardInterrupt):
        click.echo("interrupted", err=True)
        return failures.EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001  (the one place every failure is turned into one line)
        described = failures.describe(exc)
        if described is None and _state["debug"]:
            raise
        line, code = described or (failures.bug_line(exc), failures.EXIT_BUG)
        click.echo(line, err=True)
        return code
    return 0


def run() -> None:
    """Console-script wrapper around :func:`main`."""
    sys.exit(main())
