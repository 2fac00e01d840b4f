"""Teachers and students. Importing this package registers every built-in model."""
# importing registers the built-in models
from compressor.models import can_ids, span, text_encoder, tiny, vit_tracker  # noqa: F401
from compressor.models._registry import (
    MODELS,
    create_model,
    list_models,
    register_model,
)

__all__ = ["MODELS", "create_model", "list_models", "register_model"]
