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

from compressor.core.errors import CompressError

COMMANDS = {
    "run": ("compressor.cli.run_cmd", "run", "Run a recipe: distil, export, build, verify, profile, report, bundle."),
    "list": ("compressor.cli.list_cmd", "list_cmd", "List models, targets and recipes."),
    "export": ("compressor.cli.export_cmd", "export", "Export a PyTorch model to a verified ONNX file."),
    "build": ("compressor.cli.build_cmd", "build", "Build an engine for a target from an ONNX file."),
    "compare": ("compressor.cli.compare_cmd", "compare", "Check an artifact's outputs against a reference."),
    "profile": ("compressor.cli.profile_cmd", "profile", "Measure an artifact's latency."),
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


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="edge-compress", prog_name="compress")
@click.option("-v", "--verbose", is_flag=True, help="Log progress details.")
def cli(verbose: bool) -> None:
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

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")


def main(argv: list[str] | None = None) -> int:
    """Entry point: typed errors become one line on stderr and exit code 2."""
    try:
        cli.main(args=argv, prog_name="compress", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        click.echo("aborted", err=True)
        return 130
    except CompressError as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    except PermissionError as exc:
        click.echo(f"error: permission denied: {exc.filename or exc}", err=True)
        return 2
    except OSError as exc:
        click.echo(f"error: {exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}", err=True)
        return 2
    return 0


def run() -> None:
    """Console-script wrapper around :func:`main`."""
    sys.exit(main())
