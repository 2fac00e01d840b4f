"""MODEL_SPEC resolution: ``path/to/file.py:factory``, ``package.module:factory`` or a registered name."""
from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from compressor.core.errors import CompressError, InputSpecError, ModelSpecError
from compressor.core.user_code import is_user_spec, load_callable

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A resolved model with what it declares about its inputs (may be empty)."""

    model: Any  # torch.nn.Module
    example_inputs: dict[str, Any] | None = None
    input_specs: list[str] | None = None
    output_names: list[str] | None = None
    preprocessing: str = ""


def load_model_spec(spec: str, **kwargs: Any) -> LoadedModel:
    """Resolve a MODEL_SPEC to a model; the factory may return ``model`` or ``(model, example_inputs)``.

    >>> load_model_spec("tiny_convnet").model
    >>> load_model_spec("my_models.py:build")
    """
    factory = _resolve_factory(spec)
    try:
        result = factory(**kwargs)
    except CompressError:
        raise
    except Exception as exc:  # a user factory can raise anything
        raise ModelSpecError(f"factory of '{spec}' raised {type(exc).__name__}: {exc}") from None
    model, examples = (result if isinstance(result, tuple) and len(result) == 2 else (result, None))
    import torch

    if not isinstance(model, torch.nn.Module):
        raise ModelSpecError(f"'{spec}' returned {type(model).__name__}, not a torch.nn.Module")
    return LoadedModel(model=model, example_inputs=_name_examples(model, examples, spec),
                       input_specs=list(getattr(model, "input_specs", []) or []) or None,
                       output_names=list(getattr(model, "output_names", []) or []) or None,
                       preprocessing=str(getattr(model, "preprocessing", "") or ""))


def _resolve_factory(spec: str):
    if not is_user_spec(spec):
        from compressor.models import MODELS

        return MODELS.get(spec)
    return load_callable(spec, error=ModelSpecError, what="MODEL_SPEC")


def _name_examples(model, examples, spec: str) -> dict[str, Any] | None:
    """Turn example inputs (tensor, tuple or dict) into ``{forward_arg_name: tensor}``."""
    if examples is None:
        return None
    if isinstance(examples, Mapping):
        return dict(examples)
    examples = examples if isinstance(examples, (tuple, list)) else (examples,)
    params = [p.name for p in inspect.signature(model.forward).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(params) < len(examples):
        raise ModelSpecError(f"'{spec}' gave {len(examples)} example inputs but forward takes {len(params)}")
    return dict(zip(params, examples))


def resolve_input_specs(loaded: LoadedModel, declared: Sequence[str]):
    """Input specs: declared on the command line, else the model's own, else from example inputs.

    Symbolic dims without an example size take it from the example inputs when given.
    """
    from compressor.core.tensor_spec import TensorSpec, fill_value_ranges, parse_specs

    if declared:
        specs = parse_specs(list(declared))
    elif loaded.input_specs:
        specs = parse_specs(loaded.input_specs)
    elif loaded.example_inputs:
        specs = [TensorSpec(n, ("N", *t.shape[1:]), str(t.dtype).replace("torch.", ""))
                 for n, t in loaded.example_inputs.items()]
    else:
        raise InputSpecError("the model declares no inputs: pass --input NAME:SHAPE[:DTYPE] (e.g. image:Nx3x64x64)")
    specs = [_fill_examples(s, loaded.example_inputs or {}) for s in specs]
    # integer inputs need a value range (random test inputs are drawn from it): the spec's, the model's, or
    # its example values'; which one was used is logged
    return fill_value_ranges(specs, declared=loaded.input_specs or (), samples=loaded.example_inputs,
                             note=lambda text: log.warning("%s", text))


def _fill_examples(spec, examples: Mapping[str, Any]):
    from compressor.core.tensor_spec import TensorSpec

    tensor = examples.get(spec.name)
    if tensor is None or len(tensor.shape) != len(spec.shape):
        return spec
    filled = {d: int(n) for d, n in zip(spec.shape, tensor.shape) if isinstance(d, str)}
    return TensorSpec(spec.name, spec.shape, spec.dtype, spec.low, spec.high, {**filled, **spec.examples})
