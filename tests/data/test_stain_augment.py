"""Stain augmentation (`--augment stain`): H&E stain jitter, hue and saturation, grey."""

from __future__ import annotations

import pickle

import numpy as np

from unetzoo.data.transforms import _stain_jitter_class, train_transform


def test_stain_jitter_moves_rgb_in_hed_space_and_leaves_other_channels() -> None:
    jitter = _stain_jitter_class()(0.05, p=1.0)
    rgb = np.empty((16, 16, 3), np.float32)  # an H&E-like tile: pink stroma, purple nuclei
    rgb[:] = (0.92, 0.72, 0.82)
    rgb[4:10, 4:10] = (0.45, 0.30, 0.62)
    out = jitter.apply(rgb, scale=np.array([1.05, 0.95, 1.0]), shift=np.zeros(3))
    assert out.dtype == np.float32 and out.shape == rgb.shape
    assert 0.001 < np.abs(out - rgb).mean() < 0.1  # a small, real change of colour
    same = jitter.apply(rgb, scale=np.ones(3), shift=np.zeros(3))
    assert np.abs(same - rgb).max() < 1e-4  # the identity jitter gives the image back
    grey = rgb[..., :1]
    assert jitter.apply(grey, scale=np.array([2.0, 2, 2]), shift=np.zeros(3)) is grey


def test_the_stain_level_is_seeded_and_picklable() -> None:
    transform = pickle.loads(pickle.dumps(train_transform(32, "crop", "stain")))
    image = np.random.default_rng(1).uniform(0, 1, (40, 40, 3)).astype(np.float32)
    outs = []
    for _ in range(2):
        transform.set_random_seed(7)
        outs.append(transform(image=image)["image"])
    assert np.array_equal(outs[0], outs[1])
