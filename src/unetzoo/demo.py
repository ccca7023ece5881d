"""The demo: the embedded dataset, a small U-Net, about two minutes on a CPU."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .api import train
from .artefacts.runs import default_run_dir, prepare_run_dir
from .config import TrainConfig
from .data.synthetic import generate_dataset
from .engine.evaluate import EvaluationResult, evaluate_checkpoint, format_summary
from .engine.inference.predictor import InferenceOptions
from .report.page import write_page_safely, write_report
from .runtime import Runtime

log = logging.getLogger("unetzoo")

# The demo's recipe: whole 128 x 128 images, a 4-level U-Net of base width 16.
DEMO_SETTINGS: dict[str, Any] = {
    "img_size": 128, "resize_mode": "crop", "batch": 8, "lr": 3e-3, "epoch": 12,
    "loss": "bce+dice", "optimizer": "adamw", "schedule": "cosine", "warmup": 1,
    "model_args": {"base_channels": 16, "depth": 4}, "augment": "default", "workers": 0,
}
DICE_TARGET = 0.85


def run_demo(out: str | Path | None = None, epoch: int | None = None, model: str = "unet",
             overwrite: bool = False, runtime: Runtime | None = None,
             progress: bool = True) -> EvaluationResult:
    """Generate the dataset into `<run>/data`, train, evaluate the best checkpoint on the
    test split with overlays, and print the metrics and the run folder."""
    run_dir = Path(out) if out else default_run_dir("demo")
    runtime = runtime or Runtime.resolve()
    prepare_run_dir(run_dir, resume=False, overwrite=overwrite)
    log.info(f"unetzoo demo: generating the embedded nucleus dataset in {run_dir / 'data'}")
    csvfile = generate_dataset(run_dir / "data")
    settings = dict(DEMO_SETTINGS)
    if model != "unet":
        settings["model_args"] = {}
        settings["preset"] = "tiny"
    config = TrainConfig(
        dataset=str(run_dir / "data"), csvfile=str(csvfile), model=model, out=str(run_dir),
        overwrite=True, test=False, report=False, epoch=epoch or settings.pop("epoch"),
        device=str(runtime.device), precision=runtime.precision,
        channels_last=runtime.channels_last, progress=progress,
        **{k: v for k, v in settings.items() if k != "epoch"},
    ).validate()
    result = train(config)
    test = evaluate_checkpoint(result.best_checkpoint, config.dataset, csvfile, "test",
                               run_dir / "test", debug=True, options=InferenceOptions(runtime),
                               progress=progress)
    dice = test.summary["mean_over_images"]["dice"]
    log.info("")
    log.info(format_summary(test, "demo: held-out test split, best checkpoint"))
    verdict = "reached" if dice >= DICE_TARGET else "MISSED"
    log.info(f"demo: test Dice (mean over images) {dice:.4f}: {verdict} the target "
             f"{DICE_TARGET}")
    log.info(f"demo: checkpoint {result.best_checkpoint}")
    log.info(f"demo: metrics {run_dir / 'test' / 'metrics.json'}, curves "
             f"{run_dir / 'curves.png'}, overlays {run_dir / 'test' / 'overlays'}")
    page = write_page_safely("report.html", lambda: write_report(run_dir))
    if page is not None:
        log.info(f"demo: look at it all in {page}")
    log.info(f"demo: run folder {run_dir}")
    return test
