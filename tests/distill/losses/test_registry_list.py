"""The registry is complete: every module under zoo/ registers the loss of its name, and ``compress list losses``
(text and --json) shows every registered loss with its description, needs and settings."""
from __future__ import annotations

import importlib
import json
import pkgutil

import compressor.distill.losses.zoo as zoo
from compressor.distill.losses.zoo import LOSSES, KDLoss

SUPPORT_MODULES = {"base", "hooking"}  # the contract and the hook helper; "_"-prefixed modules are private


def loss_modules() -> list[str]:
    return [m.name for m in pkgutil.iter_modules(zoo.__path__)
            if not m.name.startswith("_") and m.name not in SUPPORT_MODULES]


def test_every_zoo_module_registers_the_loss_of_its_name():
    names = loss_modules()
    assert len(names) >= 12
    for name in names:
        module = importlib.import_module(f"compressor.distill.losses.zoo.{name}")
        assert module.NAME == name and name in LOSSES
    assert sorted(names) == LOSSES.names()


def test_every_registered_loss_is_a_kd_loss_with_a_description():
    for name in LOSSES.names():
        info = LOSSES.get(name)
        assert issubclass(info.factory, KDLoss) and info.description and info.needs and info.reference
        assert len(info.description) <= 100 and "\n" not in info.description


def test_list_losses_json_shows_every_loss_with_needs_and_settings(cli):
    result = cli("list", "losses", "--json")
    assert result.code == 0, result.err
    rows = {row["name"]: row for row in json.loads(result.out)["losses"]}
    assert set(rows) == set(LOSSES.names())
    assert rows["hinton"]["settings"] == {"temperature": 4.0} and rows["hinton"]["needs"] == ["logits"]
    assert rows["dkd"]["settings"] == {"alpha": 1.0, "beta": 8.0, "temperature": 4.0, "warmup_steps": 0}
    assert rows["fitnets"]["required"] == ["layers"] and rows["fitnets"]["settings"]["adapter"] == "learned"
    assert rows["margin_mse"]["settings"] == {}


def test_list_losses_text_has_one_line_per_loss_and_its_settings(cli):
    result = cli("list", "losses")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    for name in LOSSES.names():
        index = next(i for i, line in enumerate(lines) if line.split()[:2] == ["loss", name])
        assert LOSSES.get(name).description in lines[index] and lines[index + 1].strip().startswith("needs ")
    assert "layers=<required>" in result.out and "temperature=4.0" in result.out


def test_plain_list_includes_losses(cli):
    data = json.loads(cli("list", "--json").out)
    assert {row["name"] for row in data["losses"]} == set(LOSSES.names())
