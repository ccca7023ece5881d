"""The U-Net family behind one registry. Importing this package registers every model."""

from . import (  # noqa: F401  (importing a module registers its models)
    attention_unet,
    dpsau2net,
    r2unet,
    se_unet,
    sparse_unet,
    u2net,
    unet,
    unetpp,
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
