"""A training recipe chosen from the dataset's and the machine's fingerprints.

`make_plan` is a pure function of a `DatasetFingerprint`, a `MachineFingerprint` and a time
budget: every choice (model width, patch, batch, patches per epoch, sampling,
normalisation, augmentation, loss, schedule, validation, test-time augmentation) comes with
the reason for it, so the plan can be printed, written as a YAML that `unetzoo train
--config` takes, and tested on synthetic fingerprints. The rules follow nnU-Net's
(Isensee et al., Nature Methods 2021) where they apply to 2-D images, scaled to what a CPU
or a GPU does in the budget; docs/recipes.md lists them with the measurements behind them.

`plan_config` applies a plan to a run's config before its data are prepared (fingerprint,
plan, prepare, train: nnU-Net's order): options the user gave explicitly, and those an
`--init` source fixes (its architecture and normalisation), keep their values.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..config import TrainConfig, build_config
from ..data.fingerprint import (
    DatasetFingerprint,
    MachineFingerprint,
    fingerprint_dataset,
    fingerprint_machine,
)
from ..data.prepare import ScannedData, TrainData
from ..fileio import atomic_write_text

PLAN_VERSION = 1
DEFAULT_MINUTES = 15.0
MAX_PATCHES_PER_IMAGE = 16  # an epoch covers a large image with at most this many patches
SPARSE_FOREGROUND = 0.02  # foreground pixel fraction below which patches oversample it
MIXED_COLOUR = (0.05, 0.95)  # fractions of colour images that make a greyscale/colour mix
MIN_STRUCTURE_WIDTH = 8  # px the narrowest structures keep when images are downscaled
MIN_DOWNSCALE = 1.5  # a smaller resize is not worth the interpolation
MAX_ASPECT = 1.5  # images are resized to a square only when no more elongated than this
EPOCH_SHAPERS = frozenset({"batch", "img_size", "resize_mode"})  # options steps/epoch follow


@dataclass
class RecipePlan:
    """Training options (TrainConfig fields) and the reasons for them."""

    options: dict[str, Any]
    reasons: list[str]
    dataset: DatasetFingerprint
    machine: MachineFingerprint
    minutes: float
    # the options each reason decided (same order as `reasons`; empty for a fact)
    decides: list[tuple[str, ...]] = field(default_factory=list)

    def explained(self, explicit: set[str] = frozenset(),
                  kept: Mapping[str, str] | None = None) -> list[str]:
        """The reasons, each whose options the user gave marked as overridden, e.g.
        `unet base width 16 (...) - overridden by your --model-args` (the rest of such a
        line still holds: `--lr` leaves the plan's AdamW and schedule), and each whose
        options `kept` fixes otherwise marked with what replaces them (`kept`: option ->
        e.g. "--init cells's architecture")."""
        kept = {k: v for k, v in (kept or {}).items() if k not in explicit}
        replaced = _overriding(explicit)
        lines = []
        for reason, keys in zip(self.reasons, self.decides or [()] * len(self.reasons),
                                strict=True):
            flags = [f"--{k.replace('_', '-')}" for k in keys if k in explicit]
            sources = list(dict.fromkeys(kept[k] for k in keys if k in kept))
            if any(k in replaced for k in keys) and flags:
                reason += f" - overridden by your {', '.join(flags)}"
            elif sources:
                reason += f" - replaced by {', '.join(sources)}"
            elif "steps_per_epoch" in keys and "steps_per_epoch" not in explicit and \
                    (shaping := sorted(EPOCH_SHAPERS & explicit)):  # see plan_config
                given = ", ".join(f"--{k.replace('_', '-')}" for k in shaping)
                reason += f" - steps per epoch recomputed for your {given}"
            lines.append(reason)
        return lines

    def record(self) -> dict[str, Any]:
        """What a checkpoint keeps of the plan: fingerprints, reasons, the options chosen."""
        return {"version": PLAN_VERSION, "minutes": self.minutes,
                "options": copy.deepcopy(self.options),
                "reasons": self.reasons, "dataset": self.dataset.to_dict(),
                "machine": self.machine.to_dict()}

    def to_yaml(self, dataset: str | None = None, csvfile: str | None = None) -> str:
        """A YAML that `unetzoo train --config` takes (the plan recorded under `plan`)."""
        head = {k: v for k, v in (("dataset", dataset), ("csvfile", csvfile)) if v}
        reasons = "".join(f"# {line}\n" for line in self.reasons)
        body = yaml.safe_dump({**head, **self.options, "plan": self.record()},
                              sort_keys=False)
        return f"# unetzoo plan (version {PLAN_VERSION})\n{reasons}{body}"


def _multiple(value: float, step: int = 16) -> int:
    return max(step, math.ceil(value / step) * step)


@dataclass
class _Choices:
    options: dict[str, Any] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    decides: list[tuple[str, ...]] = field(default_factory=list)

    def note(self, reason: str) -> None:
        self.reasons.append(reason)
        self.decides.append(())

    def set(self, reason: str, **options: Any) -> None:
        self.options.update(options)
        self.reasons.append(reason)
        self.decides.append(tuple(options))


def _downscale(data: DatasetFingerprint, diameter: float, thin: float, cap: int
               ) -> tuple[int, float] | str | None:
    """The side the images are resized to, and by how much, when binary objects are wider
    than the machine's patch `cap` (lesions, polyps): a crop would show part of one object
    and tiles would segment it piecewise. The images shrink until the objects are about
    `cap` px across and a whole image fits in twice `cap`, as long as the narrowest
    structures (`thin` px: foreground or the gaps between objects) keep MIN_STRUCTURE_WIDTH px, the
    images are roughly square (resizing is to a square) and the shrink is worth it (1.5x).

    Returns:
        (side, scale); or, when the objects are wider than `cap` but the images keep their
        resolution, why (a phrase); None when the objects fit the patch."""
    if diameter <= cap:
        return None
    long, short = max(data.median_height, data.median_width), \
        min(data.median_height, data.median_width)
    if data.task != "binary":
        return f"a {data.task} task is not downscaled"
    if thin <= 0:
        return "the structures' widths were not measured"
    if long > MAX_ASPECT * short:
        return (f"images {long}x{short} are more elongated than {MAX_ASPECT:g}:1, a square "
                "resize would distort them")
    size = min(2 * cap, max(cap, _multiple(long * cap / diameter)))
    scale = long / size
    if scale < MIN_DOWNSCALE:
        return f"resizing to {size} px would shrink them only {scale:.1f}x"
    if thin / scale < MIN_STRUCTURE_WIDTH:
        return (f"the narrowest structures ({thin:.0f} px wide) would be {thin / scale:.1f} px "
                f"at {scale:.1f}x smaller, under {MIN_STRUCTURE_WIDTH}")
    return size, scale


def _steps_per_epoch(data: DatasetFingerprint, patch: int, resize_mode: str, batch: int
                     ) -> tuple[int, float]:
    """Optimizer steps of an epoch that covers each image's area about once, and the
    patches per image (image area / patch area, 1 to MAX_PATCHES_PER_IMAGE, when patches
    are smaller than the images; one when images are whole or resized). `batch` is the
    global batch: the batch of one process times the processes (torchrun)."""
    per_image = min(MAX_PATCHES_PER_IMAGE, data.median_area / patch**2) \
        if _tiled(data, patch, resize_mode) else 1.0
    return max(1, math.ceil(data.count * per_image / batch)), per_image


def _tiled(data: DatasetFingerprint, patch: int, resize_mode: str) -> bool:
    """Whether training takes patches smaller than the (median) image."""
    return resize_mode == "crop" and patch**2 < data.median_area


def make_plan(data: DatasetFingerprint, machine: MachineFingerprint,
              minutes: float | None = None, processes: int = 1) -> RecipePlan:
    """The recipe for `data` on `machine` in `minutes` of training (default 15).

    Args:
        data: the training set's fingerprint.
        machine: the machine's fingerprint (of one process's device).
        minutes: the time budget (wall clock, validation included).
        processes: processes training together (torchrun's world size): each takes a
            batch per step, so an epoch has that many times fewer steps.

    Returns:
        A RecipePlan whose options are TrainConfig fields.
    """
    minutes = float(minutes or DEFAULT_MINUTES)
    gpu = machine.gpu is not None
    c = _Choices()
    where = f"GPU {machine.gpu}" if gpu else (
        f"{machine.cores} CPU cores, bf16 {machine.bf16}")
    c.note(f"{data.count} training images, median {data.median_width}x"
           f"{data.median_height}, {data.channels} channel(s), {data.bit_depth}-bit; "
           f"{where}; {minutes:g} min")

    # patch: whole images when they are small and of one size, else a patch the machine can
    # take many steps with, large enough for 4 object diameters of context
    diameter = 2 * math.sqrt(data.object_area / math.pi) if data.object_area else 0.0
    side = min(data.median_height, data.median_width)
    cap = (512 if machine.gpu_memory_gb >= 24 else 256) if gpu else 128
    thin = min(data.foreground_width, data.background_width)  # what a downscale must keep
    downscale = _downscale(data, diameter, thin, cap)
    if data.max_side <= 256 and data.min_side == data.max_side:
        patch = _multiple(side)
        c.set(f"patch {patch}: whole images (all {data.max_side} px or less, one size)",
              img_size=patch, resize_mode="crop")
    elif isinstance(downscale, tuple):
        patch, scale = downscale
        c.set(f"images resized to {patch}x{patch}, {scale:.1f}x smaller (objects "
              f"{diameter:.0f} px across, wider than the {cap}-px {'GPU' if gpu else 'CPU'} "
              f"patch; their narrowest structures {thin:.0f} px, {thin / scale:.0f} after); "
              "predictions are resized back", img_size=patch, resize_mode="resize")
    else:
        context = _multiple(4 * diameter, 32)
        patch = min(max(cap, min(context, 2 * cap)), _multiple(side))
        why = f"{cap} on {'this GPU' if gpu else 'a CPU'}"
        if context > cap and patch > cap:
            why += f", raised to {patch} for 4 object diameters ({diameter:.0f} px)"
        if patch == _multiple(side) and patch < cap:
            why = "the median image side"
        kept = f"; full resolution kept: {downscale}" if downscale else ""
        c.set(f"patch {patch} ({why}); whole images are tiled at inference{kept}",
              img_size=patch, resize_mode="crop")

    # model width: a CPU gains more from steps than from width in minutes
    if gpu:
        width = 64 if minutes >= 60 and machine.gpu_memory_gb >= 16 else 32
    else:
        width = 32 if minutes >= 30 else 16
    c.set(f"unet base width {width}, instance norm ({'GPU' if gpu else 'CPU'}, {minutes:g} "
          f"min: more steps beat more width)", model="unet", preset=None,
          model_args={"base_channels": width, "norm": "instance"})

    # batch and patches per epoch (an epoch covers each image's area about once)
    batch = 8
    if gpu:
        batch = max(8, min(32, int(16 * (256 / patch) ** 2 * machine.gpu_memory_gb / 16)))
    steps, per_image = _steps_per_epoch(data, patch, c.options["resize_mode"],
                                        batch * processes)
    tiled = _tiled(data, patch, c.options["resize_mode"])
    each = f"{per_image:.1f} patches per image" if tiled else "each image once, whole"
    every = f" per process x {processes} processes" if processes > 1 else ""
    c.set(f"batch {batch}{every}; {steps} steps per epoch ({each})",
          batch=batch, steps_per_epoch=steps)

    # foreground oversampling only for really sparse objects in patches smaller than the
    # images: on the shared datasets (foreground 13-78%) it is not shown to help yet
    if tiled and (data.foreground_fraction < SPARSE_FOREGROUND or data.sparse_images > 0.5):
        c.set(f"a third of the patches on foreground (foreground "
              f"{data.foreground_fraction:.1%} of pixels, {data.sparse_images:.0%} of images "
              "almost empty, patches smaller than images)", fg_oversample=0.33)
    else:
        c.set("uniform patch sampling" if tiled else "whole images, no patch sampling",
              fg_oversample=0.0)

    # normalisation
    mixed = 0.1 < data.foreground_brighter < 0.9
    if data.bit_depth >= 16:
        c.set(f"percentile normalisation per image ({data.bit_depth}-bit data)",
              normalize="percentile")
    elif data.brightness_spread > 1.0 or mixed:
        c.set(f"per-image normalisation (image brightness differs between images: spread "
              f"{data.brightness_spread:.2f}; foreground brighter in "
              f"{data.foreground_brighter:.0%} of images)", normalize="image")
    else:
        c.set(f"dataset normalisation (brightness spread {data.brightness_spread:.2f})",
              normalize="dataset")

    # greyscale and colour images side by side (fluorescence beside brightfield and H&E): the
    # network must not learn one stain's colours; stain jitter also covers unseen stains
    if data.channels == 3 and MIXED_COLOUR[0] <= data.coloured_images <= MIXED_COLOUR[1]:
        c.set(f"stain and colour augmentation ({data.coloured_images:.0%} of the sampled "
              "images in colour, the rest greyscale)", augment="stain")
    else:
        augment = "light" if data.count >= 5000 else "default"
        c.set(f"{augment} augmentation ({data.count} images)", augment=augment)

    if data.task == "instance":
        c.set("loss: each channel's of the objects' representation (--representation; "
              "foreground bce+dice, maps mse)", loss="bce+dice")
    elif data.task == "multiclass":
        rare = min(data.class_frequencies[1:], default=1.0)
        c.set(f"loss ce+dice ({data.num_classes} classes, rarest {rare:.2%} of pixels)",
              loss="ce+dice")
    else:
        c.set("loss bce+dice", loss="bce+dice")

    c.set("adamw lr 1e-3, cosine decay over the budget, a short warm-up",
          optimizer="adamw", lr=1e-3, weight_decay=1e-4, schedule="cosine", warmup=1,
          ema=None)
    best = "by the validation loss (object thresholds are chosen after training)" \
        if data.task == "instance" else "by Dice"
    c.set("validation after each epoch while it stays under 15% of the time spent; best "
          f"{best}; flip TTA on the test split",
          val_every=1, monitor="auto", test_tta="flip", epoch=100_000)
    c.options["time_budget"] = minutes  # the user's own budget, not a choice of the plan
    return RecipePlan(c.options, c.reasons, data, machine, minutes, c.decides)


def plan_for(data: ScannedData | TrainData, minutes: float | None = None,
             machine: MachineFingerprint | None = None, processes: int = 1) -> RecipePlan:
    """Fingerprint the training split of `data` (and this machine) and plan (see
    `make_plan`).

    Raises:
        DataError: none of the sampled training images can be read.
    """
    fingerprint = fingerprint_dataset(data.train, data.reading, data.info.in_channels)
    return make_plan(fingerprint, machine or fingerprint_machine(), minutes, processes)


def _overriding(explicit: set[str]) -> set[str]:
    """The plan's options that the user's explicit ones replace: an explicit model also
    replaces the plan's width options (made for its own model)."""
    return set(explicit) | ({"preset", "model_args"} if "model" in explicit else set())


def plan_config(config: TrainConfig, data: ScannedData | TrainData, explicit: set[str],
                kept: Mapping[str, str] | None = None, processes: int = 1,
                machine: MachineFingerprint | None = None) -> tuple[TrainConfig, RecipePlan]:
    """`config` with the plan's options for every recipe option not in `explicit` nor in
    `kept`, and the plan (recorded in `config.plan`). When the model is explicit, the
    plan's width options (made for its own model) are not used. Called before the data
    are prepared (`data` is the scan: pairs, splits, mask reading), which then follow
    the planned patch, resize mode and normalisation; nothing is changed afterwards.

    Args:
        config: the run's config (the user's options, and what `--init` fixed).
        data: the scanned dataset: its training split is fingerprinted.
        explicit: the options the user gave.
        kept: options fixed otherwise (`--init`'s architecture and normalisation), with
            what fixed them, for the printed reasons (`RecipePlan.explained`).
        processes: processes training together (steps per epoch follow the global batch).
        machine: the machine's fingerprint (default: this machine).

    Raises:
        ConfigError: an explicit option does not fit the planned ones.
        DataError: none of the sampled training images can be read.
    """
    plan = plan_for(data, config.time_budget, machine, processes)
    fixed = _overriding(set(explicit) | set(kept or {}))
    values = {k: v for k, v in config.to_dict().items() if k in fixed or
              k not in plan.options}
    values.update({k: v for k, v in plan.options.items() if k not in fixed})
    if explicit & EPOCH_SHAPERS and "steps_per_epoch" not in explicit:
        # the epoch still covers each image's area once, in the user's batches and patches
        values["steps_per_epoch"], _ = _steps_per_epoch(
            plan.dataset, values["img_size"], values["resize_mode"],
            values["batch"] * processes)
    values["plan"] = plan.record()
    return build_config(values), plan


def write_plan(plan: RecipePlan, path: Path, dataset: str | None, csvfile: str | None) -> None:
    """Write `plan` atomically as a YAML for `unetzoo train --config` (see `to_yaml`)."""
    atomic_write_text(path, plan.to_yaml(dataset, csvfile))
