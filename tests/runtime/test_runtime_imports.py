"""What ships to a device imports only the standard library, numpy, the inference runtimes and its siblings,
and every bundle kind carries each sibling its files import."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

from compressor.runtime import BUNDLE_FILES, HERE

THIRD_PARTY = {"numpy", "onnxruntime", "openvino", "tensorrt", "cuda", "pycuda"}
SIBLINGS = {path.stem for path in HERE.glob("*.py")} - {"__init__"}
SELF_CONTAINED = {"engine", "jetson"}  # the other kinds are added to the engine files of a bundle


def _imports(path: Path) -> list[tuple[int, str, int]]:
    """(line, module, level) of every import in ``path``; ``from . import x`` counts as module ``x``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module] if node.module else [alias.name for alias in node.names]
            found += [(node.lineno, module, node.level) for module in modules]
    return found


def _sibling_imports(path: Path) -> set[str]:
    return {module.split(".")[0] for _, module, level in _imports(path) if level}


def test_runtime_imports_only_stdlib_numpy_runtimes_and_siblings():
    allowed = set(sys.stdlib_module_names) | THIRD_PARTY
    offenders = []
    for path in sorted(HERE.glob("*.py")):
        for line, module, level in _imports(path):
            top = module.split(".")[0]
            ok = (level == 1 and top in SIBLINGS) if level else top in allowed
            if not ok:
                offenders.append(f"{path.name}:{line}: {'.' * level}{module}")
    assert not offenders, "runtime modules import what a device may not have:\n" + "\n".join(offenders)


def test_every_bundle_kind_carries_the_siblings_its_files_import():
    missing = []
    for kind, files in BUNDLE_FILES.items():
        carried = set(files) | (set() if kind in SELF_CONTAINED else set(BUNDLE_FILES["engine"]))
        for name in files:
            missing += [f"{kind}: {name} imports {sibling}.py"
                        for sibling in sorted(_sibling_imports(HERE / name)) if f"{sibling}.py" not in carried]
    assert not missing, "\n".join(missing)


def test_every_runtime_module_ships_in_some_bundle():
    listed = {name for files in BUNDLE_FILES.values() for name in files}
    assert {f"{name}.py" for name in SIBLINGS} == listed
