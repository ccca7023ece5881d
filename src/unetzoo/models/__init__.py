"""The U-Net family behind one registry. Importing this package registers every model."""

from . import (
    attention_unet,  # noqa: F401
    r2unet,  # noqa: F401
    se_unet,  # noqa: F401
    unet,  # noqa: F401  (registers the model)
)
from .registry import (
    ModelCard,
    count_parameters,
    create_model,
    list_models,
    model_card,
    register_model,
)

__all__ = [
    "ModelCard",
    "count_parameters",
    "create_model",
    "list_models",
    "model_card",
    "register_model",
]
