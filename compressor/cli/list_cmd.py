"""``compress list``: what models, targets and recipes exist."""
from __future__ import annotations

import click

from compressor.cli.options import emit, json_option

KINDS = ("models", "targets", "recipes")


@click.command("list")
@click.argument("kind", required=False, type=click.Choice(KINDS))
@json_option
def list_cmd(kind: str | None, as_json: bool) -> None:
    """List build targets (with their precisions and build options), built-in recipes and registered models."""
    data: dict[str, object] = {}
    if kind in (None, "targets"):
        from compressor.targets.table import TARGETS

        data["targets"] = [{"name": t.name, "precisions": list(t.precisions), "suffix": t.suffix,
                            "available": t.available, "description": t.description,
                            "options": t.options_class().to_dict()} for t in TARGETS.values()]
    if kind in (None, "recipes"):
        from compressor.distill.recipe import builtin_recipes

        data["recipes"] = builtin_recipes()
    if kind in (None, "models"):
        from compressor.models import list_models

        data["models"] = list_models()
    lines = []
    for t in data.get("targets", []):
        state = "" if t["available"] else "  (not installed)"
        lines.append(f"target  {t['name']:<12} {','.join(t['precisions']):<12} {t['description']}{state}")
        defaults = ", ".join(f"{key}={str(value).lower() if isinstance(value, bool) else value}"
                             for key, value in t["options"].items())
        lines.append(f"{'':<21} --option {defaults}")
    lines += [f"recipe  {name:<12} {desc}" for name, desc in data.get("recipes", {}).items()]
    lines += [f"model   {m}" for m in data.get("models", [])]
    emit(data, as_json, "\n".join(lines))
