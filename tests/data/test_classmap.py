"""Class maps: stored indices or colours to classes, ignore values, and their errors."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from tests.data.builders import png
from unetzoo.data.classmap import class_map_from_dict, find_class_map, load_class_map
from unetzoo.data.io import read_mask
from unetzoo.data.prepare import prepare_data
from unetzoo.errors import ConfigError, DataError

COLOURS = {"classes": [{"name": "background", "color": [0, 0, 0]},
                       {"name": "road", "color": [128, 64, 128]},
                       {"name": "car", "color": [0, 0, 142]}],
           "ignore_color": [255, 255, 255]}


def test_index_map_with_several_values_and_ignore() -> None:
    cmap = class_map_from_dict({"classes": [{"name": "bg", "index": 0},
                                            {"name": "road", "index": [7, 9]}],
                                "ignore_index": [255, 3]})
    mask = np.array([[0, 7, 9, 255, 3]], np.uint8)
    assert cmap.encode(mask, Path("m.png")).tolist() == [[0, 1, 1, 255, 255]]
    with pytest.raises(DataError, match=re.escape("m.png: mask values {8} are not in the class")):
        cmap.encode(np.array([[0, 8]], np.uint8), Path("m.png"))


def test_plain_names_take_their_position() -> None:
    cmap = class_map_from_dict({"classes": ["bg", "a", "b"]})
    assert cmap.indices == ((0,), (1,), (2,)) and cmap.ignore_indices == (255,)


def test_colour_map_on_rgb_palette_and_jpeg_masks(tmp_path: Path) -> None:
    cmap = class_map_from_dict(COLOURS)
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[0] = (128, 64, 128)
    rgb[1] = (0, 0, 142)
    rgb[2] = (255, 255, 255)
    png(tmp_path / "rgb.png", rgb)
    expected = [[1] * 4, [2] * 4, [255] * 4, [0] * 4]
    assert cmap.encode(read_mask(tmp_path / "rgb.png", rgb=True), Path("rgb.png")).tolist() == \
        expected
    palette = Image.fromarray(np.array([[0, 1], [2, 1]], np.uint8), mode="P")
    palette.putpalette([0, 0, 0, 128, 64, 128, 0, 0, 142] + [0] * 759)
    palette.save(tmp_path / "pal.png")
    assert cmap.encode(read_mask(tmp_path / "pal.png", rgb=True), Path("pal.png")).tolist() == \
        [[0, 1], [2, 1]]
    Image.fromarray(np.kron(rgb, np.ones((4, 4, 1), np.uint8))).save(tmp_path / "j.jpg",
                                                                      quality=80)
    noisy = read_mask(tmp_path / "j.jpg", rgb=True)
    assert len(np.unique(noisy.reshape(-1, 3), axis=0)) > 4  # JPEG made new colours
    encoded = cmap.encode(noisy, tmp_path / "j.jpg")
    assert set(np.unique(encoded)) <= {0, 1, 2, 255} and encoded[1, 1] == 1


def test_unknown_colour_names_the_mask() -> None:
    cmap = class_map_from_dict(COLOURS)
    with pytest.raises(DataError, match=re.escape("x.png: mask colours {(1, 2, 3)}")):
        cmap.encode(np.full((2, 2, 3), [1, 2, 3], np.uint8), Path("x.png"))


@pytest.mark.parametrize("data, message", [
    ({"classes": "road"}, "`classes` list"),
    ({"classes": [{"name": "a", "index": 0}, {"name": "a", "index": 1}]}, "unique"),
    ({"classes": [{"name": "a", "index": 0}, {"name": "b", "index": 0}]}, "one class only"),
    ({"classes": [{"name": "a", "index": 0}, {"name": "b", "color": [1, 2, 3]}]},
     "every class an index"),
    ({"classes": [{"name": "a", "color": [1, 2]}]}, r"\[r, g, b\]"),
    ({"classes": ["a"], "ignore": 3}, "unknown class map keys"),
    ({"classes": [{"name": "a", "index": -1}]}, "0..65535"),
])
def test_bad_class_maps(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        class_map_from_dict(data)


def test_class_map_file_round_trip_and_default_location(tmp_path: Path) -> None:
    cmap = class_map_from_dict(COLOURS)
    (tmp_path / "classes.yaml").write_text(cmap.to_yaml())
    assert find_class_map(tmp_path, None) == class_map_from_dict(COLOURS, tmp_path /
                                                                 "classes.yaml")
    assert find_class_map(tmp_path / "nothing", None) is None
    (tmp_path / "bad.yaml").write_text("classes: [a\n")
    with pytest.raises(ConfigError, match=re.escape("bad.yaml: invalid YAML")):
        load_class_map(tmp_path / "bad.yaml")


def test_training_data_from_colour_masks(tmp_path: Path) -> None:
    for i in range(4):
        png(tmp_path / "d" / "images" / f"{i}.png", np.full((8, 8, 3), 60 * i, np.uint8))
        mask = np.zeros((8, 8, 3), np.uint8)
        mask[:4] = (128, 64, 128)
        mask[6:] = (0, 0, 142)
        png(tmp_path / "d" / "masks" / f"{i}.png", mask)
    (tmp_path / "d" / "classes.yaml").write_text(yaml.safe_dump(COLOURS))
    data = prepare_data(tmp_path / "d", img_size=8)
    assert (data.info.task, data.info.num_classes) == ("multiclass", 3)
    assert data.info.class_names == ("background", "road", "car")
    assert data.info.class_colors == ((0, 0, 0), (128, 64, 128), (0, 0, 142))
    target = data.dataset(data.train)[0]["mask"]
    assert target[0, 0] == 1 and target[5, 0] == 0 and target[7, 0] == 2
    bad = np.zeros((8, 8, 3), np.uint8)
    bad[0, 0] = (9, 9, 9)
    png(tmp_path / "d" / "masks" / "2.png", bad)
    with pytest.raises(DataError, match=re.escape("2.png: mask colours {(9, 9, 9)}")):
        prepare_data(tmp_path / "d", img_size=8)


def test_binary_class_map_and_stored_ignore_index(tmp_path: Path) -> None:
    for i in range(3):
        png(tmp_path / "d" / "images" / f"{i}.png", np.full((6, 6), 10 * i, np.uint8))
        png(tmp_path / "d" / "masks" / f"{i}.png", np.array([[0, 255, 128] * 2] * 6, np.uint8))
    data = prepare_data(tmp_path / "d", ignore_index=128, img_size=8)
    assert (data.info.task, data.info.class_names) == ("binary", ("foreground",))
    assert data.dataset(data.train)[0]["mask"][0].tolist() == [0, 1, 255] * 2
    (tmp_path / "d" / "classes.yaml").write_text(yaml.safe_dump(
        {"classes": [{"name": "background", "index": 0}, {"name": "vessel", "index": 255}],
         "ignore_index": 128}))
    data = prepare_data(tmp_path / "d", img_size=8)
    assert (data.info.task, data.info.class_names) == ("binary", ("vessel",))
    assert data.dataset(data.train)[0]["mask"][0].tolist() == [0, 1, 255] * 2
