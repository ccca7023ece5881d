"""The planner's decisions on small synthetic fingerprints, and `unetzoo plan`."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from tests.helpers import write_pairs
from unetzoo.cli import main
from unetzoo.config import build_config
from unetzoo.data.fingerprint import DatasetFingerprint, MachineFingerprint
from unetzoo.data.prepare import prepare_data, scan_data
from unetzoo.engine.plan import make_plan, plan_config, plan_for

CPU = MachineFingerprint(cores=2, bf16="avx512_bf16", memory_gb=24)
GPU = MachineFingerprint(cores=8, bf16="none", gpu="A100", gpu_memory_gb=40, memory_gb=64)
NUCLEI = DatasetFingerprint(
    count=500, sampled=128, task="binary", num_classes=1, channels=3, bit_depth=8,
    median_height=96, median_width=96, min_side=96, max_side=96, mean=(0.2,) * 3,
    std=(0.2,) * 3, p01=(0.0,) * 3, p99=(0.9,) * 3, brightness_spread=0.4,
    foreground_brighter=1.0, foreground_fraction=0.15, sparse_images=0.0, object_area=20.0,
    objects_per_image=20.0, class_frequencies=(0.15,))


def test_tiny_images_of_one_size_train_whole():
    tiny = replace(NUCLEI, median_height=40, median_width=40, min_side=40, max_side=40)
    options = make_plan(tiny, CPU, 15).options
    assert options["img_size"] == 48 and options["resize_mode"] == "crop"  # 40 -> multiple of 16
    assert options["steps_per_epoch"] == 500 // 8 + 1  # one patch per image
    assert options["fg_oversample"] == 0.0  # the patch is the whole image
    assert options["normalize"] == "dataset"
    assert options["model_args"] == {"base_channels": 16, "norm": "instance"}
    assert options["loss"] == "bce+dice" and options["time_budget"] == 15


def test_huge_images_get_cpu_sized_patches_and_more_patches_per_epoch():
    huge = replace(NUCLEI, count=16, median_height=4000, median_width=6000, min_side=3000,
                   max_side=8000, object_area=200.0)
    options = make_plan(huge, CPU, 15).options
    assert options["img_size"] == 128
    assert options["steps_per_epoch"] == 16 * 16 // 8  # capped at 16 patches per image
    gpu = make_plan(huge, GPU, 60).options
    assert gpu["img_size"] == 512 and gpu["model_args"]["base_channels"] == 64
    assert gpu["batch"] >= 8


def test_large_objects_raise_the_patch_for_context():
    cells = replace(NUCLEI, median_height=1024, median_width=1024, min_side=1024,
                    max_side=1024, object_area=3.14159 * 30**2)  # diameter 60 px
    assert make_plan(cells, CPU, 15).options["img_size"] == 256  # 4 diameters, at most 2 x 128


# photographs with one large object each (skin lesions, polyps): 1024 x 768, objects 400 px
LESIONS = replace(NUCLEI, count=800, median_height=768, median_width=1024, min_side=600,
                  max_side=1280, object_area=3.14159 * 200**2, objects_per_image=1.0,
                  foreground_fraction=0.25, foreground_width=350.0, background_width=220.0)


def test_objects_wider_than_the_patch_are_trained_on_downscaled_whole_images():
    plan = make_plan(LESIONS, CPU, 15)
    options = plan.options
    # objects become about 128 px across, the whole image at most 2 x 128: 1024 / 256 = 4x
    assert options["resize_mode"] == "resize" and options["img_size"] == 256
    assert options["steps_per_epoch"] == 800 // 8  # one whole image per sample
    assert options["fg_oversample"] == 0.0
    assert any(r.startswith("images resized to 256x256, 4.0x smaller") for r in plan.reasons)
    gpu = make_plan(LESIONS, GPU, 15).options  # a 40 GB GPU's 512-px patch holds one object
    assert gpu["resize_mode"] == "crop" and gpu["img_size"] == 768  # raised for context


@pytest.mark.parametrize(("change", "why"), [
    # retinal vessels: one wide tree of 5-px vessels
    ({"foreground_width": 5.0}, "the narrowest structures (5 px wide) would be 1.2 px at "
                                "4.0x smaller, under 8"),
    # large cells apart by thin membranes (EM)
    ({"background_width": 6.0}, "the narrowest structures (6 px wide) would be 1.5 px"),
    # 1024 x 400 strips: a square resize would distort them
    ({"median_height": 400}, "images 1024x400 are more elongated than 1.5:1"),
    # widths are measured for one foreground
    ({"task": "multiclass", "num_classes": 3}, "a multiclass task is not downscaled"),
    ({"object_area": 3.14159 * 50**2}, None),  # objects of 100 px fit the patch's context
])
def test_thin_structures_elongated_images_and_small_objects_keep_full_resolution(change, why):
    plan = make_plan(replace(LESIONS, **change), CPU, 15)
    options = plan.options
    assert options["resize_mode"] == "crop" and options["img_size"] == 256
    assert options["steps_per_epoch"] > 800 // 8  # several patches per image
    kept = [r for r in plan.reasons if "full resolution kept" in r]
    if why is None:  # nothing to explain: the objects fit
        assert not kept
    else:
        assert len(kept) == 1 and f"; full resolution kept: {why}" in kept[0]


def test_structure_width_measures_discs_strips_and_gaps():
    import cv2
    import numpy as np

    from unetzoo.data.fingerprint import structure_width

    disc = np.zeros((300, 300), np.uint8)
    cv2.circle(disc, (150, 150), 60, 1, -1)
    assert structure_width(disc > 0) == pytest.approx(121, abs=4)  # its diameter
    strip = np.zeros((300, 300), bool)
    strip[:, 100:105] = True
    assert structure_width(strip) == pytest.approx(5, abs=0.5)
    gaps = np.ones((300, 300), bool)
    gaps[:, 100:103] = False  # a 3-px membrane between two wide regions
    assert structure_width(~gaps) == pytest.approx(3, abs=0.5)
    assert structure_width(np.zeros((5, 5), bool)) is None
    assert structure_width(np.ones((5, 5), bool)) is None


def test_sparse_objects_in_large_images_oversample_foreground():
    sparse = replace(NUCLEI, median_height=1000, median_width=1000, min_side=900,
                     max_side=1100, foreground_fraction=0.01, sparse_images=0.6)
    plan = make_plan(sparse, CPU, 15)
    assert plan.options["fg_oversample"] == pytest.approx(0.33)
    assert any("foreground" in r for r in plan.reasons)
    dense = replace(sparse, foreground_fraction=0.14, sparse_images=0.01)  # like dsb2018
    assert make_plan(dense, CPU, 15).options["fg_oversample"] == 0.0


def test_sixteen_bit_data_is_percentile_normalised_and_mixed_brightness_per_image():
    assert make_plan(replace(NUCLEI, bit_depth=16), CPU).options["normalize"] == "percentile"
    mixed = replace(NUCLEI, foreground_brighter=0.8)  # fluorescence and brightfield
    assert make_plan(mixed, CPU).options["normalize"] == "image"
    assert make_plan(replace(NUCLEI, brightness_spread=3.0), CPU).options["normalize"] == \
        "image"


def test_many_classes_use_cross_entropy_and_the_plan_is_a_valid_config():
    classes = replace(NUCLEI, task="multiclass", num_classes=12,
                      class_frequencies=(0.5, *([0.5 / 11] * 11)))
    plan = make_plan(classes, CPU, 5)
    assert plan.options["loss"] == "ce+dice" and plan.options["time_budget"] == 5
    config = build_config({**plan.options, "task": "multiclass", "plan": plan.record()})
    assert config.plan["options"]["loss"] == "ce+dice"
    assert make_plan(replace(NUCLEI, count=20_000), CPU).options["augment"] == "light"


@pytest.mark.parametrize(("coloured", "channels", "augment"), [
    (0.16, 3, "stain"),  # fluorescence (grey as RGB) beside brightfield and H&E: dsb2018
    (0.0, 3, "default"), (1.0, 3, "default"),  # all grey, all colour: no mix
    (0.5, 1, "default")])
def test_a_mix_of_greyscale_and_colour_images_trains_with_stain_augmentation(
        coloured: float, channels: int, augment: str) -> None:
    plan = make_plan(replace(NUCLEI, coloured_images=coloured, channels=channels), CPU, 15)
    assert plan.options["augment"] == augment
    if augment == "stain":
        assert any("16% of the sampled images in colour" in r for r in plan.reasons)


def test_reasons_whose_options_the_user_gave_say_they_are_overridden():
    plan = make_plan(NUCLEI, CPU, 15)
    assert plan.explained() == plan.reasons  # nothing given: every reason as planned
    lines = plan.explained({"model_args", "lr", "time_budget"})
    width = next(line for line in lines if line.startswith("unet base width"))
    assert width.endswith(" - overridden by your --model-args")
    optimiser = next(line for line in lines if line.startswith("adamw"))
    assert optimiser.endswith(" - overridden by your --lr")  # the rest of that line holds
    assert sum("overridden" in line for line in lines) == 2  # the budget is the user's own
    # an explicit model replaces the plan's width options, made for its own model
    assert next(line for line in plan.explained({"model"})
                if line.startswith("unet base width")).endswith(" - overridden by your --model")


def test_steps_per_epoch_follow_the_global_batch_of_all_processes():
    one = make_plan(NUCLEI, CPU, 15)
    four = make_plan(NUCLEI, CPU, 15, processes=4)  # torchrun: 4 batches of 8 per step
    assert one.options["batch"] == four.options["batch"] == 8  # per process
    assert one.options["steps_per_epoch"] == math.ceil(500 / 8) == 63
    assert four.options["steps_per_epoch"] == math.ceil(500 / 32) == 16
    assert "batch 8 per process x 4 processes; 16 steps per epoch" in "\n".join(four.reasons)
    assert "batch 8; 63 steps per epoch" in "\n".join(one.reasons)  # one process: as before


def test_an_explicit_batch_or_patch_keeps_each_image_once_per_epoch(tmp_path: Path):
    data_dir = write_pairs(tmp_path / "data", count=12, size=48)
    scanned = scan_data(data_dir)

    def planned_with(processes=1, **given):
        config = build_config({"dataset": str(data_dir), "time_budget": 2, **given})
        return plan_config(config, scanned, {"dataset", "time_budget", *given},
                           processes=processes, machine=CPU)

    planned, plan = planned_with(batch=4)
    assert plan.dataset.count == 10  # 12 less the validation images
    assert plan.options["batch"] == 8 and plan.options["steps_per_epoch"] == 2  # 10 in 8s
    assert planned.batch == 4 and planned.steps_per_epoch == 3  # still each image once
    assert planned_with(processes=2, batch=4)[0].steps_per_epoch == 2  # 10 in 2 x 4s
    planned, plan = planned_with(img_size=32)  # 48 x 48 images: 2.25 patches of 32 each
    assert planned.img_size == 32 and planned.steps_per_epoch == 3  # 22.5 patches in 8s
    steps = next(line for line in plan.explained({"img_size"}) if line.startswith("batch 8"))
    assert steps.endswith(" - steps per epoch recomputed for your --img-size")
    planned, _ = planned_with(img_size=32, resize_mode="resize")  # whole, resized
    assert planned.steps_per_epoch == 2
    planned, _ = planned_with(batch=4, steps_per_epoch=5)
    assert planned.steps_per_epoch == 5  # given, kept


def test_plan_from_a_dataset_and_the_command(tmp_path: Path, capsys):
    data_dir = write_pairs(tmp_path / "data", count=12, size=48)
    data = prepare_data(data_dir, cache="off")
    plan = plan_for(data, 2, machine=CPU)
    assert plan.dataset.count == len(data.train) and plan.dataset.channels == 3
    assert 0 < plan.dataset.foreground_fraction < 1 and plan.dataset.object_area > 0
    out = tmp_path / "plan.yaml"
    assert main(["plan", str(data_dir), "--time-budget", "2", "--out", str(out)]) == 0
    written = yaml.safe_load(out.read_text())
    assert written["time_budget"] == 2 and written["img_size"] == 48
    assert written["plan"]["dataset"]["count"] == len(data.train)
    assert "patch 48" in capsys.readouterr().out
    assert main(["plan", str(data_dir), "--out", str(out)]) == 2  # never replaced silently
    build_config({}, out)  # train --config takes it


def test_sixteen_bit_microscopy_is_fingerprinted_and_planned(tmp_path: Path):
    import numpy as np
    import tifffile
    from PIL import Image

    rng = np.random.default_rng(0)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for i in range(6):
        image = rng.integers(100, 400, (64, 64)).astype(np.uint16)
        mask = np.zeros((64, 64), np.uint8)
        mask[10 + i: 20 + i, 30:40] = 255  # a 10 x 10 object
        image[mask > 0] += 3000
        tifffile.imwrite(tmp_path / "images" / f"s{i}.tif", image)
        Image.fromarray(mask).save(tmp_path / "masks" / f"s{i}.png")
    data = prepare_data(tmp_path, cache="off")
    plan = plan_for(data, 5, machine=CPU)
    assert plan.dataset.bit_depth == 16 and plan.dataset.object_area == 100
    assert plan.dataset.foreground_width == 9  # the 10-px squares' ridge, less one pixel
    assert plan.dataset.foreground_brighter == 1.0
    assert plan.dataset.foreground_fraction == pytest.approx(100 / 64**2)
    assert plan.options["normalize"] == "percentile"


def test_multiclass_class_frequencies_are_measured(tmp_path: Path):
    data = prepare_data(write_pairs(tmp_path / "mc", count=8, size=40, multiclass=True),
                        cache="off")
    plan = plan_for(data, 3, machine=CPU)
    frequencies = plan.dataset.class_frequencies
    assert len(frequencies) == 3 and sum(frequencies) == pytest.approx(1.0)
    assert frequencies[0] > 0.5 and min(frequencies[1:]) > 0  # background, two classes
    assert plan.options["loss"] == "ce+dice"


def test_the_fingerprint_counts_colour_images_but_not_greyscale_stored_as_rgb(tmp_path):
    import numpy as np
    from PIL import Image

    data = write_pairs(tmp_path / "data", count=10, size=32)
    coloured = set()
    for k, path in enumerate(sorted((data / "images").iterdir())):
        grey = np.asarray(Image.open(path).convert("L"), np.float32)
        rgb = np.stack([grey] * 3, -1)
        if k < 3:  # an H&E-like tint: purple nuclei on pink
            rgb = rgb * np.array([0.8, 0.55, 0.9]) + np.array([40, 10, 30])
            coloured.add(path.name)
        Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(path)
    scanned = scan_data(data, record=False)
    plan = plan_for(scanned, 15)  # the training images are fingerprinted
    expected = np.mean([p.image.name in coloured for p in scanned.train])
    assert 0 < expected < 1 and plan.dataset.coloured_images == pytest.approx(expected)
    assert plan.options["augment"] == "stain"
