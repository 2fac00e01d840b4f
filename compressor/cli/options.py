"""Options and small helpers shared by several commands (defined once)."""
from __future__ import annotations

import json
from typing import Any

import click

json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object (for scripts).")
threads_option = click.option("--threads", type=click.IntRange(min=1), default=None,
                              help="Intra-op threads for the runtime (default: the runtime's choice).")


def artifact_argument(name: str = "artifact"):
    """ARTIFACT: the artifact's file or its sidecar JSON."""
    return click.argument(name, type=click.Path(dir_okay=False, path_type=str))


def emit(data: Any, as_json: bool, text: str) -> None:
    """Print ``data`` as JSON, or ``text`` for people."""
    click.echo(json.dumps(data, indent=2, default=str) if as_json else text)
