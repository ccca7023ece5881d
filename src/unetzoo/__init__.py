"""unetzoo: the U-Net family of segmentation models behind one API.

    import unetzoo
    model = unetzoo.create_model("unet", in_channels=3, num_classes=1)
    result = unetzoo.train(dataset="data/", csvfile="split.csv", loss="dice", epoch=50)
    metrics = unetzoo.evaluate(result.best_checkpoint, "data/", "split.csv", split="test")
    unetzoo.predict(result.best_checkpoint, "new_images/", "masks_out/")
    unetzoo.export(result.best_checkpoint, "onnx", "model.onnx")
"""

from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .data.convert import convert_dataset
from .data.inspect import inspect_dataset
from .data.split import split_dataset
from .engine.evaluate import evaluate_checkpoint as evaluate
from .engine.export import export_checkpoint as export
from .engine.infer import Predictor
from .engine.predict import predict_paths as predict
from .engine.train_setup import train
from .errors import CheckpointError, ConfigError, DataError, ModelError, RunError, UnetzooError
from .models import count_parameters, create_model, list_models, model_card, register_model

__version__ = "0.1.0"

__all__ = [
    "Checkpoint", "CheckpointError", "ConfigError", "DataError", "ModelError", "Predictor",
    "RunError", "TrainConfig", "UnetzooError", "convert_dataset", "count_parameters",
    "create_model", "evaluate", "export", "inspect_dataset", "list_models", "load_checkpoint",
    "model_card", "predict", "register_model", "save_checkpoint", "split_dataset", "train",
]
