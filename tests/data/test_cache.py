"""The sample cache: files decoded once, identical samples, disk entries keyed by content."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unetzoo.data import cache as cache_module
from unetzoo.data.cache import SampleCache, choose_mode, content_key, estimate_bytes
from unetzoo.data.layouts import find_pairs
from unetzoo.data.prepare import prepare_data
from unetzoo.data.transforms import train_transform
from unetzoo.errors import DataError


def _counting(data, calls: list[int]):
    def reader(index: int):
        calls.append(index)
        return data.read(index)

    return reader


def test_memory_cache_reads_each_file_once_and_gives_identical_samples(pairs_dir: Path):
    data = prepare_data(pairs_dir, img_size=32, resize_mode="resize")
    data.cache = "off"
    plain = data.dataset(data.train, train_transform(32, "resize"), seed=3)
    data.cache = "memory"
    cached = data.dataset(data.train, train_transform(32, "resize"), seed=3)
    assert plain.cache is None and cached.cache is not None and cached.cache.mode == "memory"
    for epoch in (1, 2):
        plain.set_epoch(epoch)
        cached.set_epoch(epoch)
        for i in range(len(plain)):
            a, b = plain[i], cached[i]
            assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
    assert cached.cache.hits == 2 * len(cached)
    # resize mode: the cache holds the resized sample, so the patch size is the stored size
    image, target = cached.cache.get(0)
    assert image.shape == (32, 32, 3) and target.shape == (32, 32)
    # a second dataset of the same pairs shares the cache instead of reading again
    assert data.dataset(data.train, train_transform(32, "resize"), seed=3).cache is cached.cache


def test_a_transform_cannot_change_the_cached_arrays(pairs_dir: Path):
    data = prepare_data(pairs_dir, img_size=48)
    data.cache = "memory"
    dataset = data.dataset(data.val)
    image, _ = dataset.cache.get(0)
    image[:] = 7.0
    again, _ = dataset.cache.get(0)
    assert again.max() <= 1.0


def test_disk_cache_is_written_once_and_keyed_by_content(pairs_dir: Path, tmp_path: Path):
    data = prepare_data(pairs_dir, img_size=48)
    probe = data.dataset(data.train)
    calls: list[int] = []
    folder = tmp_path / "cache"
    first = SampleCache(probe.pairs, _counting(probe, calls), "disk", "s", folder=folder)
    for i in range(len(probe)):
        first.get(i)
    assert calls == list(range(len(probe)))
    assert len(list(folder.rglob("*.npz"))) == len(probe)
    # a later run (a new cache object) reads nothing from the image files
    calls.clear()
    second = SampleCache(probe.pairs, _counting(probe, calls), "disk", "s", folder=folder)
    for i in range(len(probe)):
        image, target = second.get(i)
        expected_image, expected_target = probe.read(i)
        assert np.array_equal(image, expected_image) and np.array_equal(target, expected_target)
    assert calls == [] and second.hits == len(probe)
    # other settings or other file content give another key
    pair = probe.pairs[0]
    key = content_key(pair, "s")
    assert content_key(pair, "t") != key
    Image.fromarray(np.zeros((48, 48, 3), np.uint8)).save(pair.image)
    assert content_key(pair, "s") != key
    third = SampleCache(probe.pairs, _counting(probe, calls), "disk", "s", folder=folder)
    assert third.get(0)[0].max() == 0.0 and calls == [0]


def test_unreadable_samples_are_not_cached_and_still_raise(pairs_dir: Path):
    data = prepare_data(pairs_dir, img_size=48)
    bad = data.train[0].image
    bad.write_bytes(b"not a png")
    dataset = data.dataset(data.train[:3])
    dataset.cache = SampleCache(dataset.pairs, dataset.read, "memory", "s")
    with pytest.raises(DataError, match=bad.name):
        dataset.load(0)
    assert dataset.load(1)["image"].shape == (3, 48, 48)


def test_auto_mode_picks_disk_when_samples_do_not_fit(pairs_dir: Path, monkeypatch):
    pairs = find_pairs(pairs_dir)
    assert estimate_bytes(pairs, 3) == len(pairs) * 48 * 48 * 13
    assert estimate_bytes(pairs, 3, size=16) == len(pairs) * 16 * 16 * 13
    monkeypatch.setattr(cache_module, "available_memory", lambda: 10**12)
    assert choose_mode("auto", pairs, 3, None)[0] == "memory"
    monkeypatch.setattr(cache_module, "available_memory", lambda: 100_000)
    mode, why = choose_mode("auto", pairs, 3, None)
    assert mode == "disk" and "MiB available" in why
    assert choose_mode("memory", pairs, 3, None) == ("memory", "as asked")
