"""Model cards: the README.md written beside shared weights (model folders, BioImage Model Zoo
packages, the shipped pretrained models).

A card says what the model is (architecture, paper, parameters), what it takes and gives
(channels, normalisation, task, classes, threshold), how it was trained (the run's config)
and how well it did (the run's validation row and, when the run was evaluated, its test
metrics), plus the authors, licence and citations the person sharing it gives. An instance
model's card also says how its outputs become objects (its representation and the thresholds
chosen on validation), its object scores (AP@0.5, mean AP 0.5:0.95, PQ, AJI, per image and
pooled, with the matching convention in words) and how to get labels and object files. The layout
follows the Hugging Face model card sections people look for; the `## Validation` section
is the one bioimage.io asks for.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..instances.targets import Representation, get_representation
from ..losses import loss_name
from ..models import count_parameters, model_card
from .checkpoint import Checkpoint
from .runs import TEST, run_of

# training options shown on the card, in this order (the rest stays in config.json)
TRAINING_KEYS: tuple[str, ...] = (
    "dataset", "csvfile", "time_budget", "img_size", "resize_mode", "normalize", "augment",
    "representation", "loss", "optimizer", "lr", "weight_decay", "schedule", "warmup", "batch",
    "epoch", "steps_per_epoch", "precision", "seed",
)


@dataclass(frozen=True)
class CardInfo:
    """What a model card says beyond the checkpoint.

    Attributes:
        title: heading (default: "<model> for <classes>").
        description: one paragraph under the heading.
        authors: names, as given.
        license: an SPDX identifier such as `MIT` or `CC-BY-4.0` (None: not stated).
        citations: free-text references (a DOI or URL included as the user wrote it).
        training_notes: markdown added to the training section (e.g. the recipe and the
            command that reproduces the run).
        test_metrics: an evaluation's `metrics.json` content (`unetzoo eval`, or the test
            evaluation at the end of training); default: the checkpoint's `metrics["test"]`.
        usage: shell lines shown under "How to use".
        sections: further markdown sections (each starting with its `## ` heading).
    """

    title: str | None = None
    description: str | None = None
    authors: tuple[str, ...] = ()
    license: str | None = None
    citations: tuple[str, ...] = ()
    training_notes: str | None = None
    test_metrics: Mapping[str, Any] | None = None
    usage: tuple[str, ...] = field(default_factory=tuple)
    sections: tuple[str, ...] = field(default_factory=tuple)


def run_test_metrics(checkpoint_path: Path | str) -> dict[str, Any] | None:
    """The test metrics a training run wrote beside its checkpoint
    (`RUN/models/best.pt` or `RUN` itself -> `RUN/test/metrics.json`), or None for a model
    outside a run."""
    run = run_of(checkpoint_path)
    if run is None:
        return None
    path = run / TEST / "metrics.json"
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(metrics, dict):
        metrics.setdefault("split", "test")  # the run's own test evaluation: its test split
    return metrics


def with_run_metrics(checkpoint: Checkpoint, source: object) -> Checkpoint:
    """`checkpoint` with the test metrics of its training run in `metrics["test"]`, when
    `source` is a run's checkpoint file that was evaluated and the checkpoint has none yet."""
    if "test" in checkpoint.metrics or not isinstance(source, (str, Path)):
        return checkpoint
    test = run_test_metrics(source)
    return replace(checkpoint, metrics={**checkpoint.metrics, "test": test}) if test else \
        checkpoint


def default_title(checkpoint: Checkpoint) -> str:
    if checkpoint.task == "instance":
        return f"{checkpoint.model_spec['name']} (instance segmentation: one label per object)"
    classes = ", ".join(checkpoint.class_names)
    return f"{checkpoint.model_spec['name']} ({checkpoint.task} segmentation of {classes})"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _metrics_table(test: Mapping[str, Any]) -> list[str]:
    mean, glob = test.get("mean_over_images", {}), test.get("global", {})
    names = [n for n in ("dice", "iou", "precision", "recall", "mdice", "miou") if n in glob]
    lines = ["| metric | mean over images | dataset-global |", "|---|---|---|"]
    lines += [f"| {n} | {mean.get(n, float('nan')):.4f} | {glob[n]:.4f} |" for n in names]
    return lines


def _representation(checkpoint: Checkpoint) -> Representation | None:
    name = (checkpoint.instance or {}).get("representation")
    try:
        return get_representation(name) if name else None
    except ConfigError:
        return None


def _at(part: Mapping[str, Any], threshold: float) -> Any:
    for entry in part.get("per_threshold", []) or []:
        if abs(float(entry.get("threshold", -1)) - threshold) < 1e-9:
            return entry.get("ap")
    return None


def _score(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"


def object_table(objects: Mapping[str, Any]) -> list[str]:
    """Markdown lines of an evaluation's object scores (`metrics.json["instances"]`): AP at
    IoU 0.5, mean AP over IoU 0.5:0.95, PQ and AJI per image and pooled, the counts of
    objects, and the conventions in one line."""
    mean, pooled = objects.get("mean_over_images", {}), objects.get("pooled", {})
    rows = [("AP@0.5", _at(mean, 0.5), _at(pooled, 0.5)),
            ("mean AP 0.5:0.95", mean.get("mean_ap"), pooled.get("mean_ap")),
            ("PQ", mean.get("pq"), pooled.get("pq")),
            ("AJI", mean.get("aji"), pooled.get("aji"))]
    lines = ["| objects | mean over images | pooled |", "|---|---|---|"]
    lines += [f"| {name} | {_score(a)} | {_score(b)} |" for name, a, b in rows]
    rule = (objects.get("conventions") or {}).get("threshold_rule") or \
        (">" if objects.get("strict") else ">=")
    counts = ", ".join(f"{pooled[k]:,.0f} {w}" for k, w in
                       (("n_true", "true objects"), ("n_pred", "predicted"),
                        ("splits", "split"), ("merges", "merged"), ("missed", "missed"),
                        ("extra", "extra")) if isinstance(pooled.get(k), (int, float)))
    if counts:
        lines += ["", f"Objects: {counts}."]
    lines += ["", f"Conventions: a true and a predicted object match one-to-one when their IoU "
              f"{rule} t; AP = TP / (TP + FP + FN) at IoU t (the Data Science Bowl 2018 "
              "score), mean AP its mean over t = 0.5, 0.55, ..., 0.95; PQ = SQ x DQ "
              "(Kirillov et al. 2019, pairs of IoU > 0.5); AJI as Kumar et al. 2017; "
              "\"mean over images\" scores each image, then averages; \"pooled\" sums the "
              "counts over all images, then takes the ratios."]
    return lines


def instance_lines(checkpoint: Checkpoint) -> list[str]:
    """Markdown lines saying how an instance model's outputs become objects: its
    representation's channels, the post-processing and the thresholds chosen on
    validation (`Checkpoint.instance`)."""
    instance = checkpoint.instance or {}
    rep = _representation(checkpoint)
    lines = ["## Objects", ""]
    if rep is None:
        return [*lines, "- Instance model without a recorded representation: retrain or "
                        "export it again with this unetzoo.", ""]
    channels = ", ".join(f"`{c.name}` ({c.activation if c.activation != 'none' else 'regression'})"
                         for c in rep.channels)
    lines += [f"- Representation `{rep.name}` ({rep.source}): {rep.num_channels} output "
              f"channel(s): {channels}.",
              f"- Labels: foreground = {rep.foreground}; seeds = {rep.seeds}; a seeded "
              "watershed of the foreground gives one id per object (0 background, objects "
              "1..N), decoded from the whole image's blended outputs, so objects on tile "
              "seams are neither cut nor counted twice."]
    thresholds = instance.get("thresholds") or {}
    chosen = instance.get("chosen") or {}
    if thresholds:
        values = ", ".join(f"{k} {v:g}" for k, v in thresholds.items()
                           if isinstance(v, (int, float)))
        basis = ""
        if chosen.get("images"):
            scores = ", ".join(f"{name} {chosen[key]:.4f}" for key, name in
                               (("mean_ap", "mean AP"), ("ap50", "AP@0.5"))
                               if isinstance(chosen.get(key), (int, float)))
            objective = chosen.get("objective", "mean_ap")
            objective = {"mean_ap": "mean AP", "ap50": "AP@0.5"}.get(objective, objective)
            basis = (f", chosen on {chosen['images']} {chosen.get('split', 'validation')} "
                     f"image(s) by {objective}"
                     + (f" ({scores})" if scores else ""))
        lines.append(f"- Thresholds: {values}{basis}.")
    return [*lines, ""]


LABELS_USAGE: tuple[str, ...] = (
    "## Getting labels", "",
    "`unetzoo predict --model MODEL --input images/ --out labels/` writes one 16-bit label "
    "TIFF per image (`<name>.tif`: 0 background, one id per object; 32-bit past 65,535 "
    "objects; the input's pixel size kept). Add:", "",
    "- `--rois`: an ImageJ / Fiji ROI set per image (`<name>_rois.zip`; the ROI Manager "
    "opens it);",
    "- `--geojson`: QuPath objects (`<name>.geojson`; File > Import objects);",
    "- `--table`: one row of measurements per object (`<name>_objects.csv`: id, area, "
    "centroid, bounding box, shape, mean intensity per channel);",
    "- `--masks`: the objects' foreground as a 0/255 PNG instead of the label TIFF.", "",
    "In Python: `unetzoo.Predictor.open(MODEL).labels(image)` returns the int32 labels "
    "(`H x W`).", "",
)


def render_card(checkpoint: Checkpoint, info: CardInfo | None = None) -> str:
    """The model card of `checkpoint` as markdown.

    Args:
        checkpoint: the model (weights are used only to count parameters).
        info: authors, licence, citations, metrics and notes to add.

    Returns:
        The README.md text.
    """
    info = info or CardInfo()
    spec, pre = checkpoint.model_spec, checkpoint.preprocessing
    arch = model_card(spec["name"])
    params = count_parameters(checkpoint.build_model()) if checkpoint.state_dict else None
    kwargs = ", ".join(f"{k}={v!r}" for k, v in spec["kwargs"].items()) or "defaults"
    activation = "softmax over classes (argmax)" if checkpoint.task == "multiclass" else \
        "sigmoid per channel, threshold 0.5"
    instance = checkpoint.task == "instance"
    rep = _representation(checkpoint) if instance else None
    if instance:
        activation = (f"the {rep.name} representation's channels, decoded into object labels "
                      "(see Objects)" if rep else "decoded into object labels")
    lines = [f"# {info.title or default_title(checkpoint)}", ""]
    if info.description:
        lines += [info.description, ""]
    lines += [
        "## Model", "",
        f"- Architecture: `{spec['name']}` ({arch.paper}, {arch.year}): {arch.adds}.",
        f"- Arguments: {kwargs}.",
        f"- Parameters: {params:,}." if params is not None else "- Parameters: see config.json.",
        f"- Built and trained with unetzoo; the network returns logits, {activation}.",
        "",
        "## Input and output", "",
        f"- Input: {pre.in_channels} channel(s), any height and width; pixel values scaled to "
        f"[0, 1] (8-bit / 255, 16-bit / 65535), then {pre.describe_normalization()}.",
        (f"- Patch size {pre.img_size}: larger images are predicted in overlapping "
         f"{pre.img_size} x {pre.img_size} tiles with Gaussian-weighted blending, at native "
         "resolution." if pre.resize_mode == "crop" else
         f"- Images are resized to {pre.img_size} x {pre.img_size} and the prediction is "
         "resized back."),
        ("- Output: object labels, an int32 label image (0 background, one id per object)."
         if instance
         else f"- Output: {checkpoint.task}, {len(checkpoint.class_names)} class(es): "
         + ", ".join(f"`{c}`" for c in checkpoint.class_names) + "."),
        "",
    ]
    if instance:
        lines += instance_lines(checkpoint)
    lines += ["## Training", ""]
    config = checkpoint.config
    if config:
        shown = dict(config)
        if config.get("loss") and checkpoint.task != "instance":
            shown["loss"] = loss_name(config["loss"], checkpoint.task)
        elif instance and config.get("representation"):  # each channel's own terms
            shown["loss"] = get_representation(config["representation"]).loss_text()
        if config.get("time_budget"):  # the budget decided the steps; `epoch` is a cap
            shown["time_budget"] = f"{config['time_budget']:g} min"
            shown.pop("epoch", None)
        lines += [f"- {k}: {_fmt(shown[k])}" for k in TRAINING_KEYS
                  if shown.get(k) not in (None, "", [], {})]
        if config.get("model_args"):
            lines.append(f"- model_args: {config['model_args']}")
    else:
        lines.append("- Not trained with `unetzoo train` (no training config recorded).")
    if info.training_notes:
        lines += ["", info.training_notes.strip()]
    lines += ["", "## Validation", ""]
    best = {k: v for k, v in checkpoint.metrics.items()
            if k.startswith("val_") and isinstance(v, float)}
    if best:
        epoch = checkpoint.metrics.get("epoch")
        lines.append(f"Best validation epoch{f' ({epoch})' if epoch else ''}: " + ", ".join(
            f"{k[4:]} {v:.4f}" for k, v in best.items()) + ".")
    test = info.test_metrics or checkpoint.metrics.get("test")
    if test and test.get("global"):
        split = test.get("split")
        which = "all images" if split in (None, "all") else f"{split} split"
        runtime = f", {test['runtime']}" if test.get("runtime") else ""
        lines += ["", f"Test evaluation ({which}, {test.get('images', '?')} images, "
                      f"whole images at native resolution{runtime}):", ""]
        if isinstance(test.get("instances"), Mapping):
            lines += [*object_table(test["instances"]), "", "The objects' foreground as "
                      "pixels (objects against background):", ""]
        lines += _metrics_table(test)
    if not best and not (test and test.get("global")):
        lines.append("No validation or test metrics were recorded for these weights.")
    lines += ["", "Measure it on your own labelled data with `unetzoo eval --model MODEL "
                  "--dataset DIR`.", ""]
    if info.usage:
        lines += ["## How to use", "", "```bash", *info.usage, "```", ""]
    if instance:
        lines += list(LABELS_USAGE)
    for section in info.sections:
        lines += [section.strip(), ""]
    lines += ["## Licence and authors", "",
              f"- Licence: {info.license or 'not stated by the authors'}.",
              f"- Authors: {', '.join(info.authors) if info.authors else 'not stated'}."]
    citations: Sequence[str] = (*info.citations, f"{arch.paper} ({arch.year}): the "
                                f"{spec['name']} architecture.")
    lines += ["", "## Citation", "", *[f"- {c}" for c in citations], ""]
    return "\n".join(lines)
