"""Teachers and students. Importing this package registers every built-in model."""
from compressor.models import can_ids, span, tiny, vit_tracker  # noqa: F401  (importing registers the built-in models)
from compressor.models._registry import MODELS, create_model, list_models, register_model

__all__ = ["MODELS", "create_model", "list_models", "register_model"]
