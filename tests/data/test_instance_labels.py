"""--task instance in the data layer: instance label images read as int32 labels with their
ids, the reading's one line, each refusal naming the file and the flag, and augmentation,
resizing and caching that keep ids exactly."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from tests.data import mask_corpus as corpus
from unetzoo.data.cache import SampleCache
from unetzoo.data.dataset import SegmentationDataset, scan_dataset, spread_sample
from unetzoo.data.inspect import inspect_dataset
from unetzoo.data.layouts import Pair, find_pairs
from unetzoo.data.masks import (
    MaskOptions,
    MaskReading,
    PairSurvey,
    decide,
    encode_labels,
    load_target,
    mask_facts,
    object_facts,
)
from unetzoo.data.transforms import Preprocessing, resize_transform, train_transform
from unetzoo.errors import ConfigError, DataError, MaskValueError
from unetzoo.task import IGNORE_LABEL, check_task


def labels_image(seed: int, size: int = 48, count: int = 9, ids: list[int] | None = None
                 ) -> np.ndarray:
    """Discs on a grid (4 per row, 11 px apart), labelled with `ids` (default 1..count)."""
    ids = ids or list(range(1, count + 1))
    out = np.zeros((size, size), np.int64)
    rng = np.random.default_rng(seed)
    for k, label in enumerate(ids):
        cy, cx = (k // 4) * 11 + 6, (k % 4) * 11 + 6
        out[corpus.disc(size, cy + rng.uniform(-1, 1), cx + rng.uniform(-1, 1), 4)] = label
    return out


def write(root: Path, masks: list[np.ndarray], ext: str = "png") -> Path:
    return corpus.write_masks(root, masks, ext)


def read(root: Path, **options):
    pairs = find_pairs(root)
    return scan_dataset(pairs, MaskOptions(**options)), pairs


def refusal(root: Path, error: type[Exception] = DataError, **options) -> str:
    with pytest.raises(error) as caught:
        read(root, **options)
    message = str(caught.value)
    assert "\n" not in message
    return message


# -- the task -------------------------------------------------------------------------------

def test_instance_task_accepts_any_channel_count_from_one() -> None:
    assert check_task("instance", 1) == "instance" and check_task("instance", 5) == "instance"
    with pytest.raises(ConfigError, match="an instance task needs num_classes >= 1"):
        check_task("instance", 0)


# -- the shared dsb2018 labels --------------------------------------------------------------

def test_dsb2018_labels_read_as_instance_labels(shared_dataset) -> None:
    dsb = shared_dataset("dsb2018")
    if not (dsb / "labels").is_dir():
        pytest.skip(f"{dsb} has no labels/")
    pairs = [Pair(p.image, dsb / "labels" / p.mask.name, p.split)
             for p in spread_sample(find_pairs(dsb, "split.csv"), 12)]
    info = scan_dataset(pairs, MaskOptions(task="instance"))
    assert (info.task, info.num_classes, info.class_names) == ("instance", 1, ("object",))
    assert re.fullmatch(r"instance labels: 12 label images, [\d,]+ objects, up to \d+ per "
                        r"image, ids 1\.\.\d+", info.reading.evidence), info.reading.evidence
    for pair in pairs[:3]:
        stored = np.asarray(Image.open(pair.mask))
        assert stored.dtype == np.uint16
        target = load_target(pair, info.reading)
        assert target.dtype == np.int32 and (target == stored).all()
        binary = np.asarray(Image.open(dsb / "masks" / pair.mask.name)) > 0
        assert ((target > 0) == binary).all()
    with pytest.raises(DataError) as error:
        scan_dataset(pairs, MaskOptions())
    message = str(error.value)
    assert "an instance label image, not class indices; pass --task instance to train on " \
           "the objects, --instances to train foreground = any label (binary)" in message


# -- label images of every type ---------------------------------------------------------------

@pytest.mark.parametrize("dtype, ext", [(np.uint8, "png"), (np.uint16, "png"),
                                        (np.int32, "tif"), (np.float32, "tif")])
def test_label_images_keep_their_ids(tmp_path: Path, dtype: type, ext: str) -> None:
    ids = [[3, 7, 8, 20, 21, 40, 41, 90], [5, 6, 9], [200, 2, 11, 12, 13, 14]]
    labels = [labels_image(i, ids=chosen).astype(dtype) for i, chosen in enumerate(ids)]
    info, pairs = read(write(tmp_path / "d", labels, ext), task="instance")
    assert info.reading.evidence == ("instance labels: 3 label images, 17 objects, up to 8 per "
                                     "image, ids 2..200")
    assert info.reading.rule == "labels"
    for pair, stored in zip(pairs, labels, strict=True):
        target = load_target(pair, info.reading, (48, 48))
        assert target.dtype == np.int32 and (target == stored).all()


def test_ids_beyond_int32_are_renumbered_in_order(tmp_path: Path) -> None:
    big = [labels_image(0, ids=[7, 2**31 + 5, 2**32 - 2]).astype(np.uint32)]
    info, pairs = read(write(tmp_path / "d", big, "tif"), task="instance")
    target = load_target(pairs[0], info.reading)
    assert target.dtype == np.int32
    assert (target == np.searchsorted([0, 7, 2**31 + 5, 2**32 - 2], big[0])).all()


def test_reading_round_trips_through_a_checkpoint(tmp_path: Path) -> None:
    info, pairs = read(write(tmp_path / "d", [labels_image(i).astype(np.uint16)
                                              for i in range(3)]),
                       task="instance", ignore_index=255)
    again = MaskReading.from_dict(info.reading.to_dict())
    assert again == info.reading and again.task == "instance"
    assert (load_target(pairs[1], again) == load_target(pairs[1], info.reading)).all()


def test_void_and_region_of_interest_are_ignore_label(tmp_path: Path) -> None:
    labels = [labels_image(i, count=6).astype(np.uint8) for i in range(3)]
    for m in labels:
        m[ndimage.binary_dilation(m > 0) & (m == 0)] = 255  # VOC-like void rings
    root = write(tmp_path / "d", labels)
    info, pairs = read(root, task="instance", ignore_index=255)
    assert info.reading.evidence.endswith("; 255 = void (ignored)")
    target = load_target(pairs[0], info.reading)
    assert (target[labels[0] == 255] == IGNORE_LABEL).all()
    assert (target[labels[0] != 255] == labels[0][labels[0] != 255]).all()
    roi = np.ones((48, 48), np.uint8) * 255
    roi[:, :10] = 0
    corpus.save(roi, root / "roi.png")
    with_roi = Pair(pairs[0].image, pairs[0].mask, roi=root / "roi.png")
    assert (load_target(with_roi, info.reading)[:, :10] == IGNORE_LABEL).all()


def test_inspect_prints_the_instance_reading(tmp_path: Path) -> None:
    root = write(tmp_path / "d", [labels_image(i).astype(np.uint16) for i in range(4)])
    found = inspect_dataset(root, task="instance", progress=False)
    text = found.format()
    assert "read as: instance labels: 4 label images, 36 objects, up to 9 per image, ids 1..9" \
        in text, text
    assert "task: instance, classes: object" in text and "problems: none found" in text
    assert found.frequency_names == ("background", "object")
    assert found.pixels is not None and found.pixels[1] == sum(
        (labels_image(i) > 0).sum() for i in range(4))


# -- refusals -------------------------------------------------------------------------------

def wrapped_uint8() -> np.ndarray:
    """300 small objects in a uint8 image: ids 256..299 wrap to 0..43."""
    labels = np.zeros((160, 160), np.int64)
    for k in range(300):
        y, x = (k // 20) * 8 + 4, (k % 20) * 8 + 4
        labels[y - 1:y + 2, x - 1:x + 2] = k + 1
    return (labels % 256).astype(np.uint8)


def test_a_label_image_with_more_objects_than_its_type_holds(tmp_path: Path) -> None:
    stored = wrapped_uint8()
    message = refusal(write(tmp_path / "d", [stored]), task="instance")
    assert re.search(r"masks/s00\.png: holds 255 ids in an 8-bit image, \d+ of them in distant "
                     r"pieces \(id \d+: 2 pieces\): more objects than an 8-bit label image "
                     r"holds, so the ids wrapped past 255 and objects share ids; save the "
                     r"labels as 16-bit PNG or TIFF$", message), message
    with pytest.raises(MaskValueError, match="ids wrapped past 255"):  # a file not surveyed
        encode_labels(stored, Path("late.png"))
    assert encode_labels(stored.astype(np.uint16), Path("ok.png")).max() == 255  # not full


def test_a_binary_mask_given_with_task_instance(tmp_path: Path) -> None:
    masks = [(labels_image(i) > 0).astype(np.uint8) * 255 for i in range(3)]
    root = write(tmp_path / "d", masks)
    message = refusal(root, MaskValueError, task="instance")
    assert message.endswith("masks/s00.png: holds 0/255 in 9 separate pieces: a binary mask, "
                            "not an instance label image (one id per object) as an instance "
                            "task needs; pass --instances-from-components to read its "
                            "connected components as objects (touching objects then merge "
                            "into one), or, training, drop --task instance to train a binary "
                            "model"), message
    info, pairs = read(root, task="instance", components=True)
    assert info.reading.rule == "components"
    assert info.reading.evidence == ("instance labels: 3 binary masks read as connected "
                                     "components (touching objects merge), 27 objects, up to "
                                     "9 per image")
    target = load_target(pairs[0], info.reading)
    assert target.dtype == np.int32 and target.max() == 9
    assert ((target > 0) == (masks[0] > 0)).all()
    with pytest.raises(MaskValueError, match="a binary mask, not an instance label image"):
        encode_labels(masks[0], Path("late.png"))  # a file the survey did not read


def test_a_soft_edged_binary_mask_given_with_task_instance(tmp_path: Path) -> None:
    root = corpus.shared_case_04(tmp_path / "d", "png")  # 0/255 discs, anti-aliased
    message = refusal(root, MaskValueError, task="instance")
    assert re.search(r"masks/p00\.png: holds 0/255 with in-between values on its edges "
                     r"\(0, .*\): a binary mask, not an instance label image", message), message
    info, pairs = read(root, task="instance", components=True)
    target = load_target(pairs[0], info.reading)
    assert target.max() == 1 and info.reading.evidence.startswith(
        "instance labels: 12 binary masks read as connected components")


def test_a_probability_map_given_with_task_instance(tmp_path: Path) -> None:
    yy, xx = np.mgrid[:32, :32]
    smooth = [(255 / (1 + np.exp(-(7 - np.hypot(yy - 12 - i, xx - 14))))).round().astype(
        np.uint8) for i in range(3)]
    message = refusal(write(tmp_path / "d", smooth), task="instance")
    assert re.search(r"masks/s00\.png: holds \d+ distinct values \(.*\) that change from "
                     r"pixel to pixel \(\d+ of them never fill a pixel's four neighbours\): an "
                     r"image or a probability map, not an instance label image \(one region per "
                     r"object\); check that the mask folder holds label images$", message), message


def test_label_images_where_a_binary_mask_is_expected(tmp_path: Path) -> None:
    labels = [labels_image(i, count=count).astype(np.uint16)
              for i, count in enumerate((3, 5, 7, 9))]
    message = refusal(write(tmp_path / "d", labels), task="binary")
    assert message.endswith("masks/s00.png: holds 3 labels (1, 2, 3), one object each: an "
                            "instance label image, not a binary mask (0 and one level) as "
                            "--task binary needs; pass --task instance to train on the objects, "
                            "or --instances to train foreground = any label (binary)"), message


def test_label_images_of_another_size_than_their_images(tmp_path: Path) -> None:
    root = write(tmp_path / "d", [labels_image(i).astype(np.uint16) for i in range(2)])
    corpus.save(np.zeros((40, 44, 3), np.uint8), root / "images" / "s01.png")
    message = refusal(root, task="instance")
    assert re.search(r"masks/s01\.png: mask is 48x48 \(W x H\) but its image .*s01\.png is "
                     r"44x40", message), message


def test_ids_in_distant_pieces_warn_then_refuse(tmp_path: Path) -> None:
    few = [labels_image(i, count=12) for i in range(3)]
    few[1][40:44, 40:44] = 2  # id 2 also far away: 1 id of 36
    info, _ = read(write(tmp_path / "a", [m.astype(np.uint16) for m in few]), task="instance")
    assert info.reading.evidence.endswith(
        "; 1 id in distant pieces, each read as one object (e.g. id 2 of s01.png: 2 pieces)")
    many = [labels_image(i, count=8) for i in range(3)]
    for m in many:
        m[40:44, 40:44], m[40:44, 20:24] = 1, 3  # ids 1 and 3 in distant pieces, 6 of 24
    message = refusal(write(tmp_path / "b", [m.astype(np.uint16) for m in many]),
                      task="instance")
    assert re.search(r"masks/s00\.png: id [13] lies in 2 distant pieces; 6 of the 24 ids in the "
                     r"3 label images read \(25 %\) lie in distant pieces: --task instance reads "
                     r"one id per "
                     r"object; if [13] marks void \(borders, unlabelled\), pass --ignore-index "
                     r"[13]; if the values are classes, use --task multiclass$", message), message


def test_void_rings_read_as_ids_are_refused_naming_ignore_index(tmp_path: Path) -> None:
    labels = [labels_image(i, count=6).astype(np.uint8) for i in range(3)]
    for m in labels:
        m[ndimage.binary_dilation(m > 0) & (m == 0)] = 255
    message = refusal(write(tmp_path / "d", labels), task="instance")
    assert re.search(r"masks/s00\.png: id 255 lies in \d distant pieces", message), message
    assert "pass --ignore-index 255" in message


@pytest.mark.parametrize("kind, expected", [
    ("colour", r"holds colours \{\(0, 0, 0\), \(200, 10, 10\)\}: --task instance reads gray "
               r"label images \(0 background, one integer id per object: 16-bit PNG or TIFF\); "
               r"save the objects as ids, not colours"),
    ("jpeg", r"JPEG mask with values \{.*\}: JPEG compression changes object ids; store label "
             r"images as PNG or TIFF \(16-bit for more than 255 objects\); a binary JPEG "
             r"mask's connected components are read as objects with "
             r"--instances-from-components"),
    ("fraction", r"holds \d+ fractional values between 0 and 9: not object ids \(whole "
                 r"numbers\) as --task instance needs; if it is a probability map, drop --task "
                 r"instance and pass --mask-threshold 0\.5 to read it as a binary mask"),
    ("negative", r"holds negative values \(-3, 0, 1, .*\): instance ids are >= 0, with 0 as "
                 r"background \(pass --ignore-index for a void value\)"),
])
def test_masks_that_are_not_label_images(tmp_path: Path, kind: str, expected: str) -> None:
    base = labels_image(0)
    if kind == "colour":
        masks, ext = [np.stack([(base > 0) * 200, (base > 0) * 10, (base > 0) * 10], -1)
                      .astype(np.uint8)], "png"
    elif kind == "jpeg":
        masks, ext = [(base * 25).astype(np.uint8)], "jpg"
    elif kind == "fraction":
        masks, ext = [base.astype(np.float32) + np.where(base == 8, 0.5, 0)], "tif"
    else:
        masks, ext = [np.where(base == 9, -3, base).astype(np.int32)], "tif"
    message = refusal(write(tmp_path / "d", masks, ext), task="instance")
    assert re.search(r"masks/s00\.\w+: " + expected + "$", message), message


@pytest.mark.parametrize("options, expected", [
    ({"instances": True}, "--instances trains a binary model on the foreground of label "
                          "images; --task instance trains on the objects: pass one of them"),
    ({"threshold": 0.5}, "--mask-threshold reads binary masks; --task instance reads label "
                         "images: pass one of them"),
    ({"task": None, "components": True}, "--instances-from-components reads binary masks as "
                                         "objects for --task instance; pass --task instance "
                                         "with it"),
])
def test_options_that_contradict_task_instance(tmp_path: Path, options: dict,
                                               expected: str) -> None:
    root = write(tmp_path / "d", [labels_image(0).astype(np.uint8)])
    assert refusal(root, ConfigError, **{"task": "instance", **options}) == expected


def test_class_folders_and_class_maps_are_not_label_images(tmp_path: Path) -> None:
    from unetzoo.data.classmap import class_map_from_dict

    facts = (mask_facts(labels_image(0), Path("a/m.png"), objects=True),)
    folders = [PairSurvey(Pair(Path("i.png"), class_masks=(Path("a/m.png"),),
                               class_names=("a",)), facts)]
    with pytest.raises(ConfigError, match="class folders hold a binary mask per class"):
        decide(folders, MaskOptions(task="instance"))
    cmap = class_map_from_dict({"classes": ["background", "cell"]})
    with pytest.raises(ConfigError, match="a class map names classes; --task instance reads"):
        decide([PairSurvey(Pair(Path("i.png"), Path("a/m.png")), facts)],
               MaskOptions(task="instance", class_map=cmap))


# -- objects ---------------------------------------------------------------------------------

def test_object_facts_tell_distant_pieces_from_near_ones() -> None:
    labels = labels_image(0, count=4, size=48)
    labels[40:44, 40:44] = 1  # id 1 again, far away
    labels[2:4, 16] = 0  # nothing changes for a gap inside an object
    near = labels.copy()
    near[5:8, 12] = 2  # a sliver of id 2 beside id 2 (2 px gap): near, one object
    facts = object_facts(near)
    assert (facts.ids, facts.low, facts.high, facts.split, facts.example) == (4, 1, 4, 1, (1, 2))
    touching = labels_image(0, count=2)
    touching[6, 6:17] = 1  # id 1 reaches id 2: still 2 ids, no piece far
    assert object_facts(touching).split == 0


# -- augmentation, resizing, caching ---------------------------------------------------------

def position_codes(shape: tuple[int, int]) -> np.ndarray:
    return np.arange(shape[0] * shape[1], dtype=np.int32).reshape(shape)


@pytest.mark.parametrize("augment, mode", [("light", "crop"), ("strong", "crop"),
                                           ("default", "resize")])
def test_augmentation_moves_ids_with_their_pixels(augment: str, mode: str) -> None:
    """Each output id is the id of the input pixel the transform took it from (flips,
    rotations, crops, nearest-neighbour affine and resize), so no id is made or blended."""
    labels = np.zeros((40, 52), np.int32)
    for k, (y, x) in enumerate([(5, 5), (20, 30), (30, 10), (12, 44)]):
        labels[corpus.disc(52, y, x, 5)[:40]] = [70001, 9, 123456, 255][k]
    image = np.random.default_rng(0).random((40, 52, 3)).astype(np.float32)
    codes = position_codes(labels.shape)
    transform = train_transform(48, mode, augment, ignore_index=IGNORE_LABEL)
    for seed in range(12):
        transform.set_random_seed(seed)
        out = transform(image=image, mask=labels)["mask"]
        transform.set_random_seed(seed)
        where = transform(image=image, mask=codes)["mask"]
        assert out.dtype == np.int32 and out.shape == (48, 48)
        padded = out == IGNORE_LABEL
        assert (where[padded] == IGNORE_LABEL).all()
        source = np.clip(where, 0, None)
        expected = labels.ravel()[source]
        assert (out[~padded] == expected[~padded]).all()


def test_resize_keeps_uint16_and_int32_ids() -> None:
    labels = labels_image(0, ids=[1, 300, 65535, 7]).astype(np.uint16)
    for stored in (labels, labels.astype(np.int32) * 1000):
        out = resize_transform(32)(image=np.zeros((48, 48, 3), np.float32), mask=stored)["mask"]
        assert out.dtype == stored.dtype
        assert set(np.unique(out).tolist()) <= set(np.unique(stored).tolist())


def encode_foreground(labels: np.ndarray) -> dict[str, np.ndarray]:
    """A stand-in target encoder: foreground and a count of objects."""
    return {"mask": (labels > 0).astype(np.float32), "count": np.array(len(np.unique(labels)))}


@pytest.mark.parametrize("mode", ["memory", "disk"])
def test_dataset_gives_labels_and_encoded_targets(tmp_path: Path, mode: str) -> None:
    labels = [labels_image(i, ids=[5, 900, 70000]).astype(np.int32) for i in range(3)]
    info, pairs = read(write(tmp_path / "d", labels, "tif"), task="instance")
    prep = Preprocessing(3, (0.5,) * 3, (0.2,) * 3, 32)
    transform = train_transform(32, "crop", "light", ignore_index=IGNORE_LABEL)
    plain = SegmentationDataset(pairs, prep, info.reading, transform, seed=1)
    data = SegmentationDataset(pairs, prep, info.reading, transform, seed=1,
                               target_encoder=encode_foreground)
    data.cache = SampleCache(pairs, data.read, mode, repr(info.reading),
                             folder=tmp_path / "cache")
    for index in range(3):
        for _ in range(2):  # the second read comes from the cache
            sample = data[index]
            assert sample["labels"].dtype.is_floating_point is False
            assert set(sample["labels"].unique().tolist()) <= {0, 5, 900, 70000}
            assert (sample["mask"] == (sample["labels"] > 0).float()).all()
            assert (plain[index]["mask"] == sample["labels"].long()).all()
    assert data.cache.hits >= 3
