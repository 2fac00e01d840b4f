"""Recipes: YAML files naming a task, its models and stages, and how to deploy; validated with clear errors."""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compressor.core.errors import did_you_mean
from compressor.distill.config import REST, ConfigError, deep_merge, from_mapping
from compressor.distill.select import CAPABILITIES, SelectRule

if TYPE_CHECKING:
    from compressor.targets.options import TargetOptions

COMMON_KEYS = ("name", "task", "description", "seed", "deploy", "quick")


@dataclass(frozen=True)
class TargetChoice:
    """One engine to build: recipe entry ``{target, precision, quantizer, ...}``. Keys beyond these are the
    target's own build options (``options``, validated by its options class when the recipe loads).
    ``quantizer`` is the INT8 quantizer; "qdq" (the shared Q/DQ ONNX) is what targets without a choice use.
    ``when``: build this entry only on machines that report the capability (``bf16``; see
    :data:`compressor.distill.select.CAPABILITIES`), and skip it cleanly elsewhere."""

    target: str
    precision: str = "fp32"
    quantizer: str = "qdq"
    options: tuple[tuple[str, Any], ...] = field(default=(), metadata={"config": REST})
    when: str | None = None


# Deploy-level settings that are defaults of a target option (for the targets that take it):
# deploy key -> (option name, the precision it applies to, or None for every precision)
OPTION_DEFAULTS: dict[str, tuple[str, str | None]] = {"static_shapes": ("static_shapes", None),
                                                      "int8_float_layers": ("float_layers", "int8")}


@dataclass(frozen=True)
class DeployConfig:
    """What to build, check, profile and bundle. ``targets`` are built for the student; teacher and
    baseline get ``reference_target`` (for their metric and the latency ratio). ``select`` picks the student
    engine the bundle holds: ``fastest`` within ``select_budget`` (headline drop against FP32; default
    ``int8_budget``) or a named ``{target, precision, quantizer}`` (:mod:`compressor.distill.select`)."""

    targets: tuple[TargetChoice, ...] = (TargetChoice("onnxruntime"), TargetChoice("openvino"),
                                         TargetChoice("openvino", "fp16"))
    reference_target: TargetChoice = field(default_factory=lambda: TargetChoice("onnxruntime"))
    compare_batches: tuple[int, ...] = (1, 2)
    compare_count: int = 2
    profile_seconds: float = 2.0
    profile_iterations: int = 20
    profile_threads: int | None = None
    layer_profile_runs: int = 10  # per-layer profile of each student engine (0: none)
    bundle: bool = True
    int8_budget: float = 0.1  # headline-metric drop allowed for INT8 before layers are kept in float
    calibration_samples: int = 32
    calibration_method: str = "minmax"
    qat_iterations: int = 0   # > 0: quantization-aware fine-tuning (self-distillation) before INT8
    qat_lr: float = 1e-4
    qat_batch: int = 4
    qat_float_anchor: float = 1.0  # weight of keeping the un-quantized student at FP32 (0: QAT may drift)
    qat_scheme: str = "qdq"  # fake quantization mirrors "qdq" (ONNX Runtime's Q/DQ) or "openvino" (NNCF's)
    static_shapes: bool = False  # targets that compile per input shape do (fixed-size inputs run faster)
    int8_float_layers: str = "fp32"  # INT8 where the target offers it: precision of the layers left out of INT8
    select: Any = "fastest"  # "fastest" or {target, precision, quantizer}; read into a SelectRule
    select_budget: float | None = None  # headline drop allowed for select: fastest (None: int8_budget)

    def __post_init__(self) -> None:
        object.__setattr__(self, "select", SelectRule.parse(self.select))

    def target_options(self, choice: TargetChoice) -> TargetOptions:
        """The typed build options of ``choice``'s target (a ``TargetOptions``): the entry's own options and
        quantizer over the deploy-level defaults (:data:`OPTION_DEFAULTS`) that the target takes."""
        from compressor.targets.table import options_class

        cls = options_class(choice.target)
        options = {**self._inherited(choice, cls.keys()), **dict(choice.options)}
        if choice.quantizer != "qdq" or "quantizer" in cls.keys():
            options["quantizer"] = choice.quantizer
        typed = cls.from_mapping(options)
        typed.check_precision(choice.precision)
        return typed

    def _inherited(self, choice: TargetChoice, keys: tuple[str, ...]) -> dict[str, Any]:
        return {option: getattr(self, deploy_key) for deploy_key, (option, precision) in OPTION_DEFAULTS.items()
                if option in keys and precision in (None, choice.precision)}


@dataclass(frozen=True)
class Recipe:
    """A validated recipe: common keys plus the task's own ``settings``."""

    name: str
    task: str
    settings: Any
    description: str = ""
    seed: int = 0
    deploy: DeployConfig = field(default_factory=DeployConfig)
    source: str = ""


def builtin_recipes() -> dict[str, str]:
    """``{name: description}`` of the recipes that ship with the package."""
    import yaml

    found = {}
    for entry in sorted(resources.files("compressor.distill.recipes").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            data = yaml.safe_load(entry.read_text()) or {}
            found[entry.name[:-5]] = str(data.get("description", "")).strip().splitlines()[0:1]
    return {name: (desc[0] if desc else "") for name, desc in found.items()}


# A recipe is a page of settings: larger files or deeper nesting are a mistake (or an attack), refused in one
# line before PyYAML's recursive parser and our own walk over the mapping meet them.
MAX_RECIPE_BYTES = 1 << 20
MAX_RECIPE_DEPTH = 32
MAX_RECIPE_NODES = 100_000


def _read(name_or_path: str) -> tuple[dict, str]:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or "/" in name_or_path:
        if not path.is_file():
            raise ConfigError(f"recipe file not found: {path}")
        if path.stat().st_size > MAX_RECIPE_BYTES:
            raise ConfigError(f"recipe {path} is {path.stat().st_size} bytes; a recipe is at most "
                              f"{MAX_RECIPE_BYTES} bytes of YAML")
        raw, source = path.read_bytes(), str(path)
    else:
        names = builtin_recipes()
        if name_or_path not in names:
            raise ConfigError(f"unknown recipe '{name_or_path}'{did_you_mean(name_or_path, names)}; "
                              f"built-in: {', '.join(names)} (or pass a .yaml path)")
        raw = resources.files("compressor.distill.recipes").joinpath(f"{name_or_path}.yaml").read_bytes()
        source = f"builtin:{name_or_path}"
    return parse_recipe_text(raw, source), source


def parse_recipe_text(raw: bytes | str, source: str) -> dict:
    """The mapping a recipe's YAML text holds; one-line ConfigError for text that is not UTF-8, holds control
    characters, is not YAML, nests deeper than :data:`MAX_RECIPE_DEPTH`, or is not a mapping."""
    import yaml

    if isinstance(raw, bytes):
        if len(raw) > MAX_RECIPE_BYTES:
            raise ConfigError(f"recipe {source} is {len(raw)} bytes; a recipe is at most {MAX_RECIPE_BYTES} bytes")
        try:
            raw = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"recipe {source} is not UTF-8 text (byte {exc.start}): is it a YAML file?") from None
    bad = next((i for i, ch in enumerate(raw) if not ch.isprintable() and ch not in "\t\n\r"), None)
    if bad is not None:
        line = raw.count("\n", 0, bad) + 1
        raise ConfigError(f"recipe {source} holds a control character {raw[bad]!r} (line {line}): is it a YAML file?")
    _check_nesting_text(raw, source)
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or str(exc).splitlines()[0]
        raise ConfigError(f"recipe {source} is not valid YAML{where}: {problem}") from None
    except RecursionError:
        raise ConfigError(f"recipe {source} nests too deeply (at most {MAX_RECIPE_DEPTH} levels)") from None
    if not isinstance(data, dict):
        raise ConfigError(f"recipe {source} must be a mapping of keys, got {type(data).__name__}")
    check_nesting(data, source)
    return data


def _check_nesting_text(text: str, source: str) -> None:
    """Refuse flow-style nesting (``[[[[...`` / ``{{{{...``) deeper than the limit before PyYAML recurses."""
    depth = deepest = 0
    for ch in text:
        if ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth = max(0, depth - 1)
    if deepest > MAX_RECIPE_DEPTH * 4:  # brackets inside quoted text count too: only far past the limit refuse
        raise ConfigError(f"recipe {source} nests too deeply (at most {MAX_RECIPE_DEPTH} levels)")


def check_nesting(data: Any, source: str) -> None:
    """Refuse a recipe mapping nested deeper than :data:`MAX_RECIPE_DEPTH` or with more than
    :data:`MAX_RECIPE_NODES` values (YAML aliases can repeat one list exponentially). Iterative: no recursion."""
    stack, nodes = [(data, 1)], 0
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if depth > MAX_RECIPE_DEPTH:
            raise ConfigError(f"recipe {source} nests too deeply (at most {MAX_RECIPE_DEPTH} levels)")
        if nodes > MAX_RECIPE_NODES:
            raise ConfigError(f"recipe {source} holds more than {MAX_RECIPE_NODES} values; a recipe is a page of "
                              f"settings")
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
            stack.extend((k, depth + 1) for k in value if isinstance(k, tuple))
        elif isinstance(value, (list, tuple)):
            stack.extend((v, depth + 1) for v in value)


def load_recipe(name_or_path: str, *, quick: bool = False, models: dict[str, str] | None = None) -> Recipe:
    """Read, merge ``quick:`` overrides when asked, and validate a recipe (built-in name or YAML path): every
    setting, both forms (with and without ``quick:``), before anything is trained.
    ``models`` (``{"teacher": MODEL_SPEC, "student": ...}``) replaces those roles' models; see
    :func:`parse_recipe`."""
    data, source = _read(name_or_path)
    base = Path(source).parent if not source.startswith("builtin:") else None
    return parse_recipe(data, source, quick=quick, base=base, models=models)


def parse_recipe(data: dict, source: str, *, quick: bool = False, base: Path | None = None,
                 models: dict[str, str] | None = None) -> Recipe:
    """Validate a recipe mapping (``quick:`` overrides merged in when asked). A task with ``resolve_paths``
    resolves relative paths against ``base`` (the recipe file's folder). ``models`` replaces a role's model
    (its factory ``args`` and ``weights`` go with the old model; its training settings stay), for tasks that
    take any MODEL_SPEC.

    The whole recipe is validated, not only the form that runs: with ``quick`` the full-length recipe is
    checked too, and without it the ``quick:`` form, so a mistake in either is found before any training.
    Every number is checked against its range (:mod:`compressor.distill.recipe_bounds`)."""
    if not isinstance(data, dict):
        raise ConfigError(f"recipe {source} must be a mapping of keys, got {type(data).__name__}")
    check_nesting(data, source)
    quick_overrides = data.get("quick", None) or {}
    if not isinstance(quick_overrides, dict):
        raise ConfigError("quick: expected a mapping of overrides")
    recipe = _parse_form(data, source, quick=quick, base=base, models=models)
    if quick_overrides:
        try:
            _parse_form(data, source, quick=not quick, base=base, models=models)
        except ConfigError as exc:
            form = "without --quick" if quick else "in its quick: form (--quick)"
            raise ConfigError(f"recipe {source} {form}: {exc}") from None
    return recipe


def _parse_form(data: dict, source: str, *, quick: bool, base: Path | None,
                models: dict[str, str] | None) -> Recipe:
    """One form of the recipe (``quick`` overrides merged in or not), validated."""
    from compressor.core.errors import CompressError
    from compressor.distill.recipe_bounds import check_bounds
    from compressor.distill.tasks import TASKS

    data = dict(data)
    quick_overrides = data.pop("quick", None) or {}
    if quick:
        data = deep_merge(data, quick_overrides)
    for key in ("name", "task"):
        if key not in data:
            raise ConfigError(f"{key}: missing required key in recipe {source}")
    try:
        task_cls = TASKS.get(str(data["task"]))
    except CompressError as exc:
        raise ConfigError(f"task: {exc}") from None
    if models:
        data = _replace_models(data, models, task_cls, source)
    common = {k: data[k] for k in COMMON_KEYS if k in data and k != "quick"}
    rest = {k: v for k, v in data.items() if k not in COMMON_KEYS}
    recipe = from_mapping(Recipe, {**common, "settings": {}})  # types of the common keys
    settings = from_mapping(task_cls.settings_cls, rest)
    check_bounds(settings, "")
    check_bounds(recipe, "")
    if base is not None and hasattr(task_cls, "resolve_paths"):
        settings = task_cls.resolve_paths(settings, base)
    task_cls.check_settings(settings)
    _check_targets(recipe.deploy)
    return Recipe(recipe.name, recipe.task, settings, recipe.description, recipe.seed, recipe.deploy, source)


def _replace_models(data: dict, models: dict[str, str], task_cls, source: str) -> dict:
    """``data`` with each role in ``models`` given that MODEL_SPEC (without the old model's args and weights)."""
    if not getattr(task_cls, "user_models", False):
        raise ConfigError(f"recipe {source} (task {data['task']}) trains its own registered architectures; "
                          "--teacher/--student replace models in a classification or embedding recipe")
    data = dict(data)
    for role, spec in models.items():
        kept = data.get(role) if isinstance(data.get(role), dict) else {}
        data[role] = {**{k: v for k, v in kept.items() if k not in ("args", "weights")}, "model": spec}
    return data


def _check_targets(deploy: DeployConfig) -> None:
    from compressor.targets.options import TargetOptionError
    from compressor.targets.table import target_info

    _check_option_defaults(deploy)
    choices = [(f"deploy.targets[{i}]", choice) for i, choice in enumerate(deploy.targets)]
    for where, choice in choices:
        if choice.when is not None and choice.when not in CAPABILITIES:
            raise ConfigError(f"{where}.when: '{choice.when}' is not a condition this toolchain knows"
                              f"{did_you_mean(choice.when, CAPABILITIES)}; known: {', '.join(CAPABILITIES)}")
    if deploy.reference_target.when is not None:
        raise ConfigError("deploy.reference_target.when: the reference target is built on every machine; "
                          "remove 'when'")
    for where, choice in (*choices, ("deploy.reference_target", deploy.reference_target)):
        info = target_info(choice.target)
        if choice.precision not in info.precisions:
            raise ConfigError(f"{where}: target '{choice.target}' does not support precision "
                              f"'{choice.precision}'; it supports: {', '.join(info.precisions)}")
        try:
            deploy.target_options(choice)
        except TargetOptionError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    if not deploy.targets:
        raise ConfigError("deploy.targets: list at least one target")
    from compressor.targets.quantize import METHODS

    if deploy.calibration_method not in METHODS:
        raise ConfigError(f"deploy.calibration_method: '{deploy.calibration_method}' is not one of "
                          f"{', '.join(METHODS)}{did_you_mean(deploy.calibration_method, METHODS)}")
    from compressor.distill.int8.schemes import SCHEMES

    if deploy.qat_scheme not in SCHEMES:
        raise ConfigError(f"deploy.qat_scheme: '{deploy.qat_scheme}' is not one of {', '.join(SCHEMES)}"
                          f"{did_you_mean(deploy.qat_scheme, SCHEMES)}")
    if deploy.calibration_samples < 1:
        raise ConfigError("deploy.calibration_samples: must be at least 1")
    _check_select(deploy)


def _check_select(deploy: DeployConfig) -> None:
    """A named ``deploy.select`` is one of the student's target entries."""
    named = deploy.select.named
    if named is None:
        return
    quantizer = (lambda c: c.quantizer if c.precision == "int8" else None)
    if not any(named.matches(c.target, c.precision, quantizer(c)) for c in deploy.targets):
        from compressor.distill.select import engine_label

        listed = ", ".join(engine_label(c.target, c.precision, quantizer(c)) for c in deploy.targets)
        raise ConfigError(f"deploy.select: names {named.label}, which deploy.targets does not list (listed: "
                          f"{listed})")


def _check_option_defaults(deploy: DeployConfig) -> None:
    """Each deploy-level option default is validated by every target's options class that takes the option
    (whether or not the recipe lists that target)."""
    from compressor.targets.options import TargetOptionError
    from compressor.targets.table import TARGETS

    for deploy_key, (option, _) in OPTION_DEFAULTS.items():
        for info in TARGETS.values():
            if option in info.options_class.keys():
                try:
                    info.options_class.from_mapping({option: getattr(deploy, deploy_key)})
                except TargetOptionError as exc:
                    raise ConfigError(f"deploy.{deploy_key}: {exc.problem}") from None
