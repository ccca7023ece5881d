"""A corpus of ambiguous masks and images, each read as the user meant or refused with one
line naming the file, the values found and what resolves it.

The first tests are the six field cases of ../shared/cases (their generators ported into
tests/data/mask_corpus.py; case 20, two predict inputs with one output name, belongs to
`predict`); the rest are more of the same kind: what masks look like after a converter, an
annotation tool's export, a resize, a JPEG save, ImageJ, a model's output.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from tests.data import mask_corpus as corpus
from unetzoo.data.dataset import DatasetInfo, SegmentationDataset, scan_dataset
from unetzoo.data.inspect import inspect_dataset
from unetzoo.data.io import read_header, read_image
from unetzoo.data.layouts import Pair, find_pairs
from unetzoo.data.masks import MaskOptions, load_target
from unetzoo.data.transforms import Preprocessing
from unetzoo.errors import DataError, MaskValueError


def read(root: Path, **options) -> tuple[DatasetInfo, list[Pair]]:
    """What training decides about the dataset at `root` (and its pairs)."""
    pairs = find_pairs(root)
    return scan_dataset(pairs, MaskOptions(**options)), pairs


def target(info: DatasetInfo, pair: Pair) -> np.ndarray:
    assert info.reading is not None
    return load_target(pair, info.reading)


def refusal(root: Path, **options) -> str:
    """The one-line error training gives on the dataset at `root`."""
    with pytest.raises(DataError) as error:
        read(root, **options)
    message = str(error.value)
    assert "\n" not in message
    return message


# -- the shared cases -------------------------------------------------------------------------

@pytest.mark.parametrize("ext, kind", [("png", "masks"), ("jpg", "JPEG masks")])
def test_case_04_antialiased_masks_are_binary_thresholded_at_the_middle(
        tmp_path: Path, ext: str, kind: str) -> None:
    root = corpus.shared_case_04(tmp_path / "d", ext)
    info, pairs = read(root)
    assert (info.task, info.num_classes, info.class_names) == ("binary", 1, ("foreground",))
    share = re.fullmatch(rf"binary: 12 {kind} 0/255 with (\d\.\d) % in-between pixels, "
                         r"threshold 50 %", info.reading.evidence)
    assert share is not None, info.reading.evidence
    stored = np.asarray(Image.open(pairs[0].mask))
    between = (stored > 0) & (stored < 255)
    if ext == "png":  # the share is of the pixels strictly between 0 and 255
        total = sum(int(((m := np.asarray(Image.open(p.mask))) > 0).sum() - (m == 255).sum())
                    for p in pairs)
        assert float(share.group(1)) == round(100 * total / (12 * 64 * 64), 1)
    assert between.any()
    truth = stored > 127.5
    assert (target(info, pairs[0]) == truth).all()
    assert inspect_dataset(root, progress=False).reading.evidence == info.reading.evidence


def test_case_05_masks_mixing_0_1_and_0_255_are_binary(tmp_path: Path) -> None:
    root = corpus.shared_case_05(tmp_path / "d")
    info, pairs = read(root)
    assert (info.task, info.num_classes) == ("binary", 1)
    assert info.reading.evidence == "binary: 6 masks 0/1, 6 masks 0/255 (1 and 255 both " \
                                    "foreground)"
    for i, pair in enumerate(pairs):
        _, truth = corpus.blob_pair(rng=np.random.default_rng(i))
        assert (target(info, pair) == truth).all()  # no pixel ignored, no class lost


@pytest.mark.parametrize("layout", ["contig", "planar", "imagej"])
def test_case_15_two_channel_tiffs_keep_both_channels(tmp_path: Path, layout: str) -> None:
    root = corpus.shared_case_15(tmp_path / "d", layout)
    info, pairs = read(root)
    assert info.in_channels == 2
    image = read_image(pairs[3].image)
    img, _ = corpus.blob_pair(rng=np.random.default_rng(3))
    assert image.shape == (64, 64, 2)
    assert np.allclose(image[..., 1], img.astype(np.float32) * 16 / 65535)
    assert read_header(pairs[3].image).channels == 2
    pre = Preprocessing(2, (0.0, 0.0), (1.0, 1.0), img_size=64)
    assert SegmentationDataset(pairs, pre, info.reading)[3]["image"].shape == (2, 64, 64)


@pytest.mark.parametrize("layout", ["gt", "voc"])
def test_case_19_index_masks_in_a_folder_of_another_name_are_multiclass(
        tmp_path: Path, layout: str) -> None:
    root = corpus.shared_case_19(tmp_path / "d", layout)
    info, pairs = read(root)
    assert (info.task, info.num_classes) == ("multiclass", 4)
    assert info.reading.evidence == ("multiclass: 4 classes, the stored values 0..3 are the "
                                     "class indices; 255 = void (ignored) in 12 masks")
    _, truth = corpus.multiclass_pair(values=(1, 2, 3), rng=np.random.default_rng(0))
    result = target(info, pairs[0])
    assert (result[0] == 255).all() and (result[1:] == truth[1:]).all()


def test_case_19_one_folder_per_class_under_masks(tmp_path: Path) -> None:
    root = corpus.shared_case_19(tmp_path / "d", "nested")
    info, pairs = read(root)
    assert (info.task, info.num_classes) == ("multiclass", 4)
    assert info.class_names == ("background", "0", "1", "2")
    assert info.reading.evidence == ("multiclass: 3 class folder(s) (0, 1, 2) of exclusive "
                                     "binary masks: 36 masks 0/255")
    _, truth = corpus.multiclass_pair(values=(1, 2, 3), rng=np.random.default_rng(5))
    truth[0, :] = 0  # the void row is in no class folder: background
    assert (target(info, pairs[5]) == truth).all()


def test_case_27_jpeg_masks_of_0_and_1_are_not_empty(tmp_path: Path) -> None:
    root, truths = corpus.shared_case_27(tmp_path / "d")
    info, pairs = read(root)
    assert info.reading.evidence == "binary: 12 JPEG masks 0/1 with 0.0 % in-between " \
                                    "pixels, threshold 50 %"
    for pair, truth in zip(pairs, truths, strict=True):
        stored = np.asarray(Image.open(pair.mask))
        result = target(info, pair)
        assert (result == (stored >= 1)).all()  # half of the level 1
        # JPEG moves edge pixels of the 16 x 16 square (up to 33 of its 256 here): the
        # foreground is the square's, not empty (the bug: Dice 1.0 on empty targets)
        dice = 2 * (result & truth).sum() / (result.sum() + truth.sum())
        assert dice > 0.85 and abs(int(result.sum()) - 256) <= 24


def test_tiny_objects_whose_resized_pixels_never_reach_the_level(tmp_path: Path) -> None:
    root = corpus.shared_case_04(tmp_path / "d", "png")
    for name, (y, x, side) in {"t1": (29, 29, 3), "t2": (30, 30, 4)}.items():
        big = np.zeros((64, 64), np.uint8)  # a 3 x 3 and a 4 x 4 object, shrunk 4 times
        big[y:y + side, x:x + side] = 255
        small = np.asarray(Image.fromarray(big).resize((16, 16), Image.BILINEAR))
        corpus.save(small, root / "masks" / f"{name}.png")
        corpus.save(np.zeros((16, 16, 3), np.uint8), root / "images" / f"{name}.png")
    info, pairs = read(root)
    assert info.reading.evidence.startswith("binary: 14 masks 0/255 with ")
    tiny = {p.name: target(info, p) for p in pairs if p.name.startswith("t")}
    # {0, 1, 4, 5, 19, 90} and {0, 64}: below half of 255 everywhere, as the objects'
    # share of each pixel is
    assert np.unique(np.asarray(Image.open(root / "masks" / "t2.png"))).tolist() == [0, 64]
    assert not tiny["t1"].any() and not tiny["t2"].any()


# -- binary masks as converters, tools and resizes leave them ---------------------------------

def test_16_bit_masks_0_65535_and_mixed_with_8_bit(tmp_path: Path) -> None:
    masks = corpus.binary_discs(3, value=65535, dtype=np.uint16) + corpus.binary_discs(3)
    root = corpus.write_masks(tmp_path / "d", masks, "tif")
    info, pairs = read(root)
    assert info.reading.evidence == "binary: 3 masks 0/65535, 3 masks 0/255"
    assert (target(info, pairs[0]) == corpus.disc(32, 10, 14, 6)).all()


def test_single_level_other_than_1_or_255_is_the_foreground(tmp_path: Path) -> None:
    root = corpus.write_masks(tmp_path / "d", corpus.binary_discs(value=100))
    info, pairs = read(root)
    assert info.reading.evidence == "binary: 6 masks 0/100"
    assert (target(info, pairs[2]) == corpus.disc(32, 12, 14, 6)).all()
    # the converters' rule is the same one (it used to threshold 0/100 at 127.5: empty)
    from unetzoo.data.convert.common import binary_mask
    from unetzoo.data.convert.source import Source

    with Source.open(root) as source:
        assert (binary_mask(source, "masks/s02.png", (32, 32)) ==
                corpus.disc(32, 12, 14, 6) * 255).all()


def test_float_masks_of_0_and_1_and_probability_maps(tmp_path: Path) -> None:
    exact = [m.astype(np.float32) / 255 for m in corpus.binary_discs()]
    info, pairs = read(corpus.write_masks(tmp_path / "exact", exact, "tif"))
    assert info.reading.evidence == "binary: 6 masks 0/1"
    soft = corpus.probability_maps()
    info, pairs = read(corpus.write_masks(tmp_path / "soft", soft, "tif"))
    assert re.fullmatch(r"binary: 6 masks 0/1 with \d+\.\d % in-between pixels, threshold "
                        r"50 %", info.reading.evidence)
    assert (target(info, pairs[0]) == (soft[0] > 0.5)).all()


def test_uncertain_probability_maps_are_refused_naming_the_threshold_flag(
        tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    maps = [rng.uniform(0, 1, (32, 32)).astype(np.float32) for _ in range(4)]
    root = corpus.write_masks(tmp_path / "d", maps, "tif")
    message = refusal(root)
    assert re.fullmatch(r".*/masks/s00\.tif: holds 1024 fractional values between 0\.\d+ and "
                        r"1 \(a probability map\?\), not 0 and one foreground level with "
                        r"soft edges; pass --mask-threshold 0\.5 to read values above 0\.5 as "
                        r"foreground", message), message
    info, pairs = read(root, threshold=0.5)
    assert info.reading.rule == "threshold"
    assert (target(info, pairs[1]) == (maps[1] > 0.5)).all()


def test_gray_image_saved_as_a_mask_is_refused(tmp_path: Path) -> None:
    ramp = np.tile(np.arange(200, dtype=np.uint8), (32, 1))[:, :32] + \
        np.arange(32, dtype=np.uint8)[:, None] * 5
    root = corpus.write_masks(tmp_path / "d", [ramp, ramp.T.copy()])
    message = refusal(root)
    assert message.endswith(
        "masks/s00.png: holds 187 distinct values (0, 1, 2, 3, 4, 5, 6, 7, ..., 186 (187 "
        "distinct)) that change from pixel to pixel (0 % of pixels inside flat regions): an "
        "image or a probability map, not class indices; pass --mask-threshold T to read "
        "values above T as foreground, or check that the mask folder holds masks"), message


def test_rgba_masks_with_the_mask_in_the_alpha_channel(tmp_path: Path) -> None:
    masks = []
    for fg in corpus.binary_discs(4):
        rgba = np.zeros((32, 32, 4), np.uint8)
        rgba[..., 3] = fg  # black everywhere, the annotation in the alpha
        masks.append(rgba)
    info, pairs = read(corpus.write_masks(tmp_path / "d", masks))
    assert info.reading.evidence == "binary: 4 masks 0/255"
    assert (target(info, pairs[1]) == corpus.disc(32, 11, 14, 6)).all()


def test_gray_masks_saved_as_rgb_jpeg_are_gray(tmp_path: Path) -> None:
    masks = [np.repeat(m[..., None], 3, axis=2) for m in corpus.binary_discs(4)]
    info, pairs = read(corpus.write_masks(tmp_path / "d", masks, "jpg", quality=75))
    assert info.reading.evidence.startswith("binary: 4 JPEG masks 0/255 with ")
    assert (target(info, pairs[0]) == corpus.disc(32, 10, 14, 6)).mean() > 0.99


def test_imagej_binary_mask_with_inverted_lut_keeps_its_stored_values(tmp_path: Path) -> None:
    masks = corpus.binary_discs(4)  # ImageJ "Convert to Mask": 255 = object, shown black
    root = corpus.write_masks(tmp_path / "d", masks, "tif", photometric="miniswhite",
                              imagej=True)
    info, pairs = read(root)
    assert info.reading.evidence == "binary: 4 masks 0/255"
    assert (target(info, pairs[3]) == corpus.disc(32, 13, 14, 6)).all()


def test_one_bit_png_masks(tmp_path: Path) -> None:
    root = tmp_path / "d"
    for i, m in enumerate(corpus.binary_discs(3)):
        (root / "masks").mkdir(parents=True, exist_ok=True)
        Image.fromarray(m > 0).convert("1").save(root / "masks" / f"s{i:02d}.png")
    corpus.images(root, 3)
    info, _ = read(root)
    assert info.reading.evidence == "binary: 3 masks 0/255"


def test_binary_masks_with_a_void_border(tmp_path: Path) -> None:
    masks = []
    for m in corpus.binary_discs(4, value=1):
        m = m.copy()
        m[:, :2] = 255  # Pascal VOC style: 255 beside the labels is void
        masks.append(m)
    info, pairs = read(corpus.write_masks(tmp_path / "d", masks))
    assert (info.task, info.reading.ignore) == ("binary", (255,))
    assert info.reading.evidence == "binary: 4 masks 0/1; 255 = void (ignored) in 4 masks"
    result = target(info, pairs[0])
    assert (result[:, :2] == 255).all() and result[10, 14] == 1 and result[30, 30] == 0


# -- index masks, label images, colours -------------------------------------------------------

def test_a_class_per_image_stays_multiclass(tmp_path: Path) -> None:
    masks = [m // 255 * (1 + i % 2) for i, m in enumerate(corpus.binary_discs())]
    info, pairs = read(corpus.write_masks(tmp_path / "d", masks))
    assert (info.task, info.num_classes) == ("multiclass", 3)
    assert target(info, pairs[1])[11, 14] == 2


def test_evenly_spaced_values_are_classes_in_order(tmp_path: Path) -> None:
    masks = []
    for i in range(4):
        m = np.zeros((32, 32), np.uint8)
        m[2:10, 2:10], m[12:20, 2 + i:10 + i], m[22:30, 22:30] = 85, 170, 255
        masks.append(m)
    info, pairs = read(corpus.write_masks(tmp_path / "d", masks))
    assert (info.task, info.num_classes) == ("multiclass", 4)
    assert info.reading.evidence == ("multiclass: 4 classes, stored 0, 85, 170, 255 -> classes "
                                     "0..3 (evenly spaced values)")
    result = target(info, pairs[0])
    assert [result[5, 5], result[15, 5], result[25, 25], result[0, 31]] == [1, 2, 3, 0]


def test_label_ids_with_gaps_are_refused_with_a_class_map(tmp_path: Path) -> None:
    masks = []
    for i in range(3):  # Cityscapes label ids, not training ids
        m = np.zeros((32, 32), np.uint8)
        m[:8], m[8:16], m[16:24, i:], m[24:] = 7, 8, 11, 26
        masks.append(m)
    root = corpus.write_masks(tmp_path / "d", masks)
    message = refusal(root)
    assert message.endswith(
        "masks/s00.png: mask values {0, 7, 8, 11, 26} in the dataset are not class indices "
        "0..4 (gaps); give a class map (classes.yaml: classes: [{name: class0, index: 0}, "
        "{name: class1, index: 7}, {name: class2, index: 8}, {name: class3, index: 11}, "
        "{name: class4, index: 26}]), or --task multiclass to read the values as class "
        "indices with unseen classes"), message
    info, pairs = read(root, task="multiclass")
    assert info.num_classes == 27 and target(info, pairs[0])[30, 30] == 26


def test_trimaps_without_a_background_0_are_refused(tmp_path: Path) -> None:
    masks = []
    for i in range(3):  # Oxford-IIIT Pet trimaps: 1 pet, 2 background, 3 border
        m = np.full((32, 32), 2, np.uint8)
        m[corpus.disc(32, 16, 16 + i, 9)] = 3
        m[corpus.disc(32, 16, 16 + i, 7)] = 1
        masks.append(m)
    message = refusal(corpus.write_masks(tmp_path / "d", masks))
    assert "masks/s00.png: mask values {1, 2, 3} in the dataset hold no background 0; give a " \
           "class map (classes.yaml: classes: [{name: class0, index: 1}" in message, message


def test_instance_label_images_are_refused_naming_instances(tmp_path: Path) -> None:
    labels = [corpus.nuclei_labels(i).astype(np.uint16) for i in range(5)]
    root = corpus.write_masks(tmp_path / "d", labels)
    message = refusal(root)
    count = int(labels[0].max())
    assert re.search(rf"masks/s00\.png: holds {count} labels \(1, 2, .*\), one object each: an "
                     r"instance label image, not class indices; pass --task instance to train "
                     r"on the objects, --instances to train foreground = any label \(binary\)",
                     message), message
    info, pairs = read(root, instances=True)
    assert (info.task, info.reading.rule) == ("binary", "instances")
    assert (target(info, pairs[2]) == (labels[2] > 0)).all()


def test_instance_ids_above_255_name_the_file(tmp_path: Path) -> None:
    labels = [corpus.nuclei_labels(i, count=4, first=300 + 10 * i).astype(np.uint16)
              for i in range(3)]
    message = refusal(corpus.write_masks(tmp_path / "d", labels))
    assert re.search(r"masks/s00\.png: holds 4 labels \(300, 301, 302, 303\), one object each",
                     message), message


def test_voc_instance_masks_with_void_boundaries(tmp_path: Path) -> None:
    from scipy import ndimage

    masks = []
    for i in range(4):  # SegmentationObject: one index per object, 255 around objects
        labels = corpus.nuclei_labels(i, count=3 + 2 * i).astype(np.uint8)
        ring = ndimage.binary_dilation(labels > 0) & (labels == 0)
        masks.append(np.where(ring, 255, labels).astype(np.uint8))
    root = corpus.write_masks(tmp_path / "d", masks)
    message = refusal(root)
    assert message.endswith("masks/s00.png: holds 3 labels (1, 2, 3) besides 255, one object "
                            "each: an "
                            "instance label image, not class indices; pass --task instance to "
                            "train on the objects, --instances to "
                            "train foreground = any label (binary), or --task multiclass if "
                            "the values are classes"), message
    info, pairs = read(root, instances=True, ignore_index=255)
    result = target(info, pairs[3])
    assert (result == np.where(masks[3] == 255, 255, masks[3] > 0)).all()


def test_two_colour_masks_are_binary_with_the_colour_named(tmp_path: Path) -> None:
    masks = [np.stack([m, m * 0, m * 0], -1) for m in corpus.binary_discs(3)]
    info, pairs = read(corpus.write_masks(tmp_path / "d", masks))
    assert info.reading.evidence == ("binary: colour (255, 0, 0) = foreground, black = "
                                     "background in 3 RGB masks")
    assert (target(info, pairs[0]) == corpus.disc(32, 10, 14, 6)).all()


def test_colour_masks_of_several_classes_print_a_class_map(tmp_path: Path) -> None:
    root = corpus.write_masks(tmp_path / "d", corpus.voc_colour_masks())
    message = refusal(root)
    assert message.endswith(
        "colour masks with 4 colours: give a class map naming them (classes.yaml: classes: "
        "[{name: background, color: [0, 0, 0]}, {name: class1, color: [0, 128, 0]}, "
        "{name: class2, color: [128, 0, 0]}, {name: class3, color: [128, 128, 0]}])"), message
    (root / "classes.yaml").write_text(
        "classes:\n- {name: background, color: [0, 0, 0]}\n- {name: aeroplane, color: "
        "[128, 0, 0]}\n- {name: bicycle, color: [0, 128, 0]}\n- {name: bird, color: "
        "[128, 128, 0]}\n")
    from unetzoo.data.classmap import find_class_map

    info, pairs = read(root, class_map=find_class_map(root, None))
    assert info.class_names == ("background", "aeroplane", "bicycle", "bird")
    assert target(info, pairs[0])[5, 5] == 1


def test_jpeg_index_masks_are_refused(tmp_path: Path) -> None:
    masks = [np.kron(np.array([[0, 1], [2, 3]], np.uint8), np.ones((16, 16), np.uint8))
             for _ in range(3)]
    message = refusal(corpus.write_masks(tmp_path / "d", masks, "jpg", quality=90),
                      task="multiclass")
    assert message.endswith("JPEG compression changes class indices; store index masks as "
                            "PNG or TIFF (binary JPEG masks are read: 0 and one level plus "
                            "noise)"), message


def test_negative_labels_are_refused(tmp_path: Path) -> None:
    masks = [np.where(m > 0, 1, -1).astype(np.int32) for m in corpus.binary_discs(2)]
    message = refusal(corpus.write_masks(tmp_path / "d", masks, "tif"))
    assert "masks/s00.tif: mask values {-1, 1} include negative values" in message, message


# -- layouts ------------------------------------------------------------------------------

def test_a_single_mask_folder_of_any_name_holding_index_masks(tmp_path: Path) -> None:
    masks = [np.kron(np.array([[0, 1], [2, 0]], np.uint8), np.ones((16, 16), np.uint8))
             for _ in range(3)]
    root = corpus.write_masks(tmp_path / "d", masks, folder="segs")
    info, pairs = read(root)
    assert (info.task, info.num_classes) == ("multiclass", 3)
    assert info.reading.evidence.endswith("(segs/ holds index masks: read as the mask folder)")
    assert target(info, pairs[0])[20, 5] == 2


def test_a_class_folder_holding_index_masks_is_refused(tmp_path: Path) -> None:
    root = corpus.write_masks(tmp_path / "d", corpus.binary_discs(3), folder="tumor")
    corpus.write_masks(root, [np.kron(np.array([[0, 1], [2, 0]], np.uint8),
                                      np.ones((16, 16), np.uint8))] * 3, folder="stroma")
    message = refusal(root)
    assert "stroma/s00.png: class folder stroma/ holds masks with values {0, 1, 2}, not " \
           "binary masks (0 and one level)" in message, message


def test_a_class_missing_from_the_sample_stops_training_naming_the_file(
        tmp_path: Path, monkeypatch) -> None:
    import unetzoo.data.dataset as dataset_module

    masks = [np.kron(np.array([[0, 1], [2, 0]], np.uint8), np.ones((16, 16), np.uint8))
             for _ in range(5)]
    masks[2] = masks[2].copy()
    masks[2][0, 0] = 3  # a rare class, only in the file the sample does not read
    root = corpus.write_masks(tmp_path / "d", masks)
    monkeypatch.setattr(dataset_module, "SAMPLE_SIZE", 2)
    info, pairs = read(root)
    assert info.num_classes == 3 and info.pixels_checked == 2
    pre = Preprocessing(3, (0.5,) * 3, (0.25,) * 3, img_size=32)
    training = SegmentationDataset(pairs, pre, info.reading, skip_bad=True)
    with pytest.raises(MaskValueError, match=re.escape(
            "masks/s02.png: holds value(s) {3} that the classes read from the masks (classes "
            "0..2) cannot hold; if the survey of 2 masks missed a class, pass --num-classes "
            "(class indices) or --full-check, or give a class map")):
        training[2]


def test_unicode_nfc_and_nfd_names_match(tmp_path: Path) -> None:
    root = tmp_path / "d"
    corpus.save(np.zeros((8, 8, 3), np.uint8), root / "images" / "caf\u00e9.png")
    corpus.save(np.zeros((8, 8), np.uint8), root / "masks" / corpus.nfd("caf\u00e9.png"))
    [pair] = find_pairs(root)
    assert pair.mask is not None and pair.mask.name == corpus.nfd("caf\u00e9.png")
    name = "caf\u00e9.png"
    (root / "split.csv").write_text(f"image,mask,split\nimages/{corpus.nfd(name)},"
                                    f"masks/{name},train\n", encoding="utf-8")
    [row] = find_pairs(root, "split.csv")
    assert row.image.exists() and row.mask is not None and row.mask.exists()


# -- images: channels ---------------------------------------------------------------------

def test_declared_alpha_is_dropped_and_nothing_else(tmp_path: Path) -> None:
    gray_alpha = np.zeros((8, 8, 2), np.uint8)
    gray_alpha[..., 0], gray_alpha[..., 1] = 100, 7
    Image.fromarray(gray_alpha, mode="LA").save(tmp_path / "la.png")
    assert read_image(tmp_path / "la.png").shape == (8, 8, 1)
    assert read_header(tmp_path / "la.png").channels == 1
    tifffile.imwrite(tmp_path / "ga.tif", gray_alpha, photometric="minisblack",
                     extrasamples=["unassalpha"])
    assert read_image(tmp_path / "ga.tif").shape == (8, 8, 1)
    four = np.arange(8 * 8 * 4, dtype=np.uint16).reshape(8, 8, 4)
    tifffile.imwrite(tmp_path / "four.tif", four, photometric="minisblack",
                     planarconfig="contig")
    assert read_image(tmp_path / "four.tif").shape == (8, 8, 4)
    assert read_header(tmp_path / "four.tif").channels == 4


def test_z_stacks_and_unlabelled_pages_are_refused(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "z.tif", np.zeros((3, 8, 8), np.uint16), imagej=True,
                     metadata={"axes": "ZYX"})
    with pytest.raises(DataError, match=re.escape(
            "z.tif: is a multi-page TIFF (3 pages, axes ZYX): a z-stack or time series")):
        read_image(tmp_path / "z.tif")
    tifffile.imwrite(tmp_path / "p.tif", np.zeros((2, 8, 8), np.uint8), photometric="minisblack")
    with pytest.raises(DataError, match="pages that do not say whether they are channels"):
        read_header(tmp_path / "p.tif")
