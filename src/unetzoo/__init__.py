"""unetzoo: the U-Net family of segmentation models behind one API.

    import unetzoo
    model = unetzoo.create_model("unet", in_channels=3, num_classes=1)
    result = unetzoo.train(dataset="data/", csvfile="split.csv", loss="dice", epoch=50)
    metrics = unetzoo.evaluate(result.best_checkpoint, "data/", "split.csv", split="test")
    unetzoo.predict(result.best_checkpoint, "new_images/", "masks_out/")
    unetzoo.export(result.best_checkpoint, "onnx", "model.onnx")
    unetzoo.save_pretrained(result.best_checkpoint, "my_model/")   # config.json + safetensors
    checkpoint = unetzoo.from_pretrained("nuclei")                   # shipped, no download
    options = unetzoo.InferenceOptions(unetzoo.Runtime.resolve(backend="torch"), tta="flip",
                                       postprocess=unetzoo.PostProcessing(min_size=20))
    predictor = unetzoo.Predictor.open(result.best_checkpoint, options)
    labels = predictor.labels(numpy.asarray(PIL.Image.open("scan.png")))  # uint8 H x W

Attributes load on first use (PEP 562): `import unetzoo` costs almost nothing, and
`import unetzoo.models` the models alone; the trainer, distributed and export stacks load when
`unetzoo.train`, `unetzoo.export`, ... are first touched.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .version import __version__

# module -> public names (attribute name, or (public name, attribute name) for a rename):
# the one list of what `unetzoo.X` is
_MODULES: dict[str, tuple[str | tuple[str, str], ...]] = {
    ".artefacts.checkpoint": ("Checkpoint", "save_checkpoint"),
    ".artefacts.references": ("load_checkpoint", "from_pretrained", "save_pretrained"),
    ".artefacts.initialise": ("create_model",),
    ".config": ("TrainConfig",),
    ".data.convert": ("convert_dataset",),
    ".data.inspect": ("inspect_dataset",),
    ".data.split": ("split_dataset",),
    ".engine.evaluate": (("evaluate", "evaluate_checkpoint"),),
    ".engine.export.exporter": (("export", "export_checkpoint"),),
    ".engine.inference.predictor": ("Predictor", "InferenceOptions"),
    ".engine.inference.postprocess": ("PostProcessing",),
    ".engine.inference.predict": (("predict", "predict_paths"),),
    ".api": ("train",),
    ".artefacts.pretrained": ("list_pretrained",),
    ".errors": ("CheckpointError", "ConfigError", "DataError", "ExportError", "MaskValueError",
                "MetricError",
                "ModelError", "PeerError", "RunError", "TrainingError", "UnetzooError"),
    ".models": ("count_parameters", "list_models", "model_card",
                "register_model"),
    ".runtime": ("Runtime",),
}
# public name -> (module, attribute)
_EXPORTS: dict[str, tuple[str, str]] = {
    (item if isinstance(item, str) else item[0]):
        (module, item if isinstance(item, str) else item[1])
    for module, items in _MODULES.items() for item in items
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
    from .api import train
    from .artefacts.checkpoint import Checkpoint, save_checkpoint
    from .artefacts.initialise import create_model
    from .artefacts.pretrained import list_pretrained
    from .artefacts.references import from_pretrained, load_checkpoint, save_pretrained
    from .config import TrainConfig
    from .data.convert import convert_dataset
    from .data.inspect import inspect_dataset
    from .data.split import split_dataset
    from .engine.evaluate import evaluate_checkpoint as evaluate
    from .engine.export.exporter import export_checkpoint as export
    from .engine.inference.postprocess import PostProcessing
    from .engine.inference.predict import predict_paths as predict
    from .engine.inference.predictor import InferenceOptions, Predictor
    from .errors import (
        CheckpointError,
        ConfigError,
        DataError,
        ExportError,
        MaskValueError,
        MetricError,
        ModelError,
        PeerError,
        RunError,
        TrainingError,
        UnetzooError,
    )
    from .models import count_parameters, list_models, model_card, register_model
    from .runtime import Runtime
