"""The U-Net family behind one registry. Importing this package registers every model."""

from . import dpsau2net, u2net, unet  # noqa: F401  (registers the models)
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
