"""``compress list``: what models, targets, recipes and distillation losses exist."""
from __future__ import annotations

import inspect

import click

from compressor.cli.options import emit, json_option

KINDS = ("models", "targets", "recipes", "losses")


@click.command("list")
@click.argument("kind", required=False, type=click.Choice(KINDS))
@json_option
def list_cmd(kind: str | None, as_json: bool) -> None:
    """List build targets (with their precisions and build options), built-in recipes, registered models and
    distillation losses (with what they need and their settings)."""
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
    if kind in (None, "losses"):
        data["losses"] = list_losses()
    lines = []
    for t in data.get("targets", []):
        state = "" if t["available"] else "  (not installed)"
        lines.append(f"target  {t['name']:<12} {','.join(t['precisions']):<12} {t['description']}{state}")
        defaults = ", ".join(f"{key}={str(value).lower() if isinstance(value, bool) else value}"
                             for key, value in t["options"].items())
        lines.append(f"{'':<21} --option {defaults}")
    lines += [f"recipe  {name:<12} {desc}" for name, desc in data.get("recipes", {}).items()]
    lines += [f"model   {m}" for m in data.get("models", [])]
    for loss in data.get("losses", []):
        lines.append(f"loss    {loss['name']:<12} {loss['description']}")
        settings = [f"{key}=<required>" if key in loss["required"] else f"{key}={value}"
                    for key, value in loss["settings"].items()]
        lines.append(f"{'':<21} needs {', '.join(loss['needs'])}" + (f"; {', '.join(settings)}" if settings else ""))
    emit(data, as_json, "\n".join(lines))


def list_losses() -> list[dict[str, object]]:
    """Every registered distillation loss: name, description, needs, reference, settings (defaults) and required."""
    from compressor.distill.losses.zoo import LOSSES

    rows = []
    for name in LOSSES.names():
        info = LOSSES.get(name)
        params = [p for p in inspect.signature(info.factory).parameters.values()
                  if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
        rows.append({"name": name, "description": info.description, "needs": list(info.needs),
                     "reference": info.reference,
                     "settings": {p.name: None if p.default is p.empty else p.default for p in params},
                     "required": [p.name for p in params if p.default is p.empty]})
    return rows
