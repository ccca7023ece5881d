"""unetzoo: the U-Net family of segmentation models behind one API.

    import unetzoo
    model = unetzoo.create_model("unet", in_channels=3, num_classes=1)
    result = unetzoo.train(dataset="data/", csvfile="split.csv", loss="dice", epoch=50)
    metrics = unetzoo.evaluate(result.best_checkpoint, "data/", "split.csv", split="test")
    unetzoo.predict(result.best_checkpoint, "new_images/", "masks_out/")
    unetzoo.export(result.best_checkpoint, "onnx", "model.onnx")

Attributes load on first use (PEP 562): `import unetzoo` costs almost nothing, and
`import unetzoo.models` the models alone; the trainer, distributed and export stacks load when
`unetzoo.train`, `unetzoo.export`, ... are first touched.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> (module, attribute): the one list of what `unetzoo.X` is
_EXPORTS: dict[str, tuple[str, str]] = {
    "Checkpoint": (".checkpoint", "Checkpoint"),
    "load_checkpoint": (".checkpoint", "load_checkpoint"),
    "save_checkpoint": (".checkpoint", "save_checkpoint"),
    "TrainConfig": (".config", "TrainConfig"),
    "convert_dataset": (".data.convert", "convert_dataset"),
    "inspect_dataset": (".data.inspect", "inspect_dataset"),
    "split_dataset": (".data.split", "split_dataset"),
    "evaluate": (".engine.evaluate", "evaluate_checkpoint"),
    "export": (".engine.export", "export_checkpoint"),
    "Predictor": (".engine.infer", "Predictor"),
    "predict": (".engine.predict", "predict_paths"),
    "train": (".engine.trainer", "train"),
    **{name: (".errors", name) for name in (
        "CheckpointError", "ConfigError", "DataError", "ExportError", "MetricError",
        "ModelError", "PeerError", "RunError", "TrainingError", "UnetzooError")},
    **{name: (".models", name) for name in (
        "count_parameters", "create_model", "list_models", "model_card", "register_model")},
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'unetzoo' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module, __name__), attribute)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:  # what static tools see; at run time __getattr__ loads these on demand
    from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
    from .config import TrainConfig
    from .data.convert import convert_dataset
    from .data.inspect import inspect_dataset
    from .data.split import split_dataset
    from .engine.evaluate import evaluate_checkpoint as evaluate
    from .engine.export import export_checkpoint as export
    from .engine.infer import Predictor
    from .engine.predict import predict_paths as predict
    from .engine.trainer import train
    from .errors import (
        CheckpointError,
        ConfigError,
        DataError,
        ExportError,
        MetricError,
        ModelError,
        PeerError,
        RunError,
        TrainingError,
        UnetzooError,
    )
    from .models import count_parameters, create_model, list_models, model_card, register_model
