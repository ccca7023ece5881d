"""StarDist 2D trained from scratch under a wall-clock budget: a yardstick for unetzoo's
instance task (issue 21).

Settings are those of StarDist's own 2D training example (examples/2D/2_training.ipynb in
the stardist repository): 32 rays, grid (2,2), Config2D's defaults otherwise (256 x 256
patches, batch 4, Adam 3e-4, 100 steps per epoch, best weights on validation loss), per-image
percentile normalisation 1-99.8 with channels normalised independently, label holes filled,
and the example's augmenter (random axis permutation and flips, intensity scale U(0.6, 2) and
shift U(-0.2, 0.2), Gaussian noise with sigma U(0, 0.02)). As in the example, the
probability and NMS thresholds are optimised on the validation split after training
(timed on its own; --no-optimize-thresholds keeps StarDist's defaults 0.5 / 0.4).

RGB vs grey: the example's data (its DSB 2018 subset) is grey only, and it feeds a
multi-channel image with the channel axis last (n_channel_in = channels). Our dsb2018 mixes
557 grey-in-RGB fluorescence images with 107 brightfield / H&E ones, and one model takes one
channel count, so every image goes in as RGB (n_channel_in = 3); the grey ones then carry
three equal channels. This matches what unetzoo trains on (the RGB PNGs).

Training stops when `--minutes` of wall clock are spent (a Keras callback checked after every
step, keeping back the time of the validation that Keras runs after a stop); the clock
starts when training is set up (compiling, validation patches and StarDist's distance cache
count) and includes every validation. The test labels are never read.

    /work/peers/stardist-venv/bin/python benchmarks/peers/stardist_run.py \
        --data ../shared/data/dsb2018 --out /tmp/peers/stardist --minutes 30 --threads 2
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

EXAMPLE = "https://github.com/stardist/stardist/blob/HEAD/examples/2D/2_training.ipynb"
N_RAYS, GRID = 32, (2, 2)
PERCENTILES = (1.0, 99.8)


def augment(x: Any, y: Any) -> tuple[Any, Any]:
    """One training pair (x: H x W x C float image, y: H x W labels) augmented as in StarDist's
    2D training example: the two spatial axes randomly permuted and each flipped with
    probability 1/2 (the same for image and labels), then x scaled by U(0.6, 2), shifted by
    U(-0.2, 0.2) and given Gaussian noise of standard deviation U(0, 0.02).

    Uses numpy's global random state (seeded in `main`), as the example does.
    """
    import numpy as np

    if np.random.rand() < 0.5:
        x, y = np.swapaxes(x, 0, 1), np.swapaxes(y, 0, 1)
    for axis in (0, 1):
        if np.random.rand() < 0.5:
            x, y = np.flip(x, axis), np.flip(y, axis)
    x = x * np.random.uniform(0.6, 2.0) + np.random.uniform(-0.2, 0.2)
    x = x + np.random.uniform(0.0, 0.02) * np.random.normal(0.0, 1.0, x.shape)
    return x, y


def make_stop_callback(keras: Any, budget_s: float, started: float, val_batches: int) -> Any:
    """A Keras callback that stops training once `budget_s` seconds have passed since
    `started` (time.monotonic), checked after each training step. It keeps back the time of
    the validation pass that Keras runs after a stop, so that it still ends inside the
    budget: the last validation's duration, or before the first one, `val_batches` forward
    passes guessed at a third of the mean training step. Records steps, epochs, validations
    and per-epoch logs."""

    class WallClockStop(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.steps = 0
            self.epochs_started = 0
            self.validations = 0
            self.last_validation_s: float | None = None
            self.stopped_by_budget = False
            self.history: list[dict[str, float]] = []
            self._test_started = 0.0

        def _spent(self) -> float:
            return time.monotonic() - started

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.epochs_started += 1

        def _validation_guess(self) -> float:
            if self.last_validation_s is not None:
                return self.last_validation_s
            return val_batches * self._spent() / max(self.steps, 1) / 3

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            self.steps += 1
            if self._spent() + self._validation_guess() >= budget_s:
                self.stopped_by_budget = True
                self.model.stop_training = True

        def on_test_begin(self, logs: dict | None = None) -> None:
            self._test_started = time.monotonic()

        def on_test_end(self, logs: dict | None = None) -> None:
            self.validations += 1
            self.last_validation_s = time.monotonic() - self._test_started

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            row = {"epoch": epoch + 1, "steps": self.steps, "elapsed_s": round(self._spent(), 1)}
            for key in ("loss", "val_loss", "val_prob_kld", "val_dist_dist_iou_metric"):
                if logs and key in logs:
                    row[key] = round(float(logs[key]), 5)
            self.history.append(row)
            if self._spent() >= budget_s:  # a validation that ran past the budget
                self.stopped_by_budget = True
                self.model.stop_training = True

    return WallClockStop()


def main(argv: list[str] | None = None) -> int:
    """Train, optionally optimise thresholds, predict the test split; write labels + run.json.

    Raises:
        FileExistsError: when `--out/labels` already holds PNG files.
    """
    args = common.parse_args(
        "StarDist 2D from scratch under a wall-clock budget (issue 21 yardstick)", argv,
        extra=[(("--steps-per-epoch",), dict(type=int, default=100,
                                             help="Keras steps per epoch (Config2D default)")),
               (("--no-optimize-thresholds",), dict(action="store_true",
                                                    help="keep prob 0.5 / NMS 0.4"))])
    env = common.limit_threads(args.threads)
    labels_dir = args.out / "labels"
    if labels_dir.is_dir() and any(labels_dir.glob("*.png")):
        raise FileExistsError(f"{labels_dir} already holds label files: "
                              "give a new --out or remove that folder")

    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import csbdeep
    import keras
    import stardist
    from csbdeep.utils import normalize
    from stardist import calculate_extents, fill_label_holes
    from stardist.models import Config2D, StarDist2D

    keras.utils.set_random_seed(args.seed)  # Python, numpy and TensorFlow generators
    clock = common.Clock()
    rows = common.read_split_rows(args.data)

    def prepare(image: np.ndarray) -> np.ndarray:
        return normalize(image, *PERCENTILES, axis=(0, 1))  # channels independently

    with clock.section("load_train_val"):
        train = common.load_split(args.data, rows["train"], with_labels=True)
        val = common.load_split(args.data, rows["val"], with_labels=True)
        x_train = [prepare(x) for x in train.images]
        y_train = [fill_label_holes(y) for y in train.labels]
        x_val = [prepare(x) for x in val.images]
        y_val = [fill_label_holes(y) for y in val.labels]

    config = Config2D(n_rays=N_RAYS, grid=GRID, n_channel_in=3, use_gpu=False,
                      train_steps_per_epoch=args.steps_per_epoch,
                      train_tensorboard=False)  # logging only; tensorboard is not installed
    args.out.mkdir(parents=True, exist_ok=True)
    model = StarDist2D(config, name="stardist", basedir=str(args.out))
    median_size = calculate_extents(y_train, np.median)
    field_of_view = np.array(model._axes_tile_overlap("YX"))

    budget_s = args.minutes * 60.0
    started = time.monotonic()
    with clock.section("train"):
        model.prepare_for_training()
        val_batches = -(-len(x_val) // config.train_batch_size)
        stop = make_stop_callback(keras, budget_s, started, val_batches)
        model.callbacks.append(stop)
        model.train(x_train, y_train, validation_data=(x_val, y_val), augmenter=augment,
                    epochs=config.train_epochs, steps_per_epoch=args.steps_per_epoch)
    train_s = time.monotonic() - started

    if not args.no_optimize_thresholds:
        with clock.section("optimize_thresholds"):
            model.optimize_thresholds(x_val, y_val)

    # the test split: images only, its labels are never read here
    with clock.section("load_test"):
        test = common.load_split(args.data, rows["test"], with_labels=False)
    objects: dict[str, int] = {}
    with clock.section("predict"):
        for name, image in zip(test.names, test.images, strict=True):
            x = prepare(image)
            label, _ = model.predict_instances(x, n_tiles=model._guess_n_tiles(x),
                                               show_tile_progress=False)
            common.write_label(labels_dir, name, label)
            objects[name] = int(len(np.unique(label)) - (1 if (label == 0).any() else 0))

    record = {
        "peer": "stardist",
        "versions": {"stardist": stardist.__version__, "csbdeep": csbdeep.__version__,
                     "tensorflow": tf.__version__, "keras": keras.__version__,
                     "numpy": np.__version__},
        "machine": common.machine(),
        "threads": {"requested": args.threads, "environment": env,
                    "tf_intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                    "tf_inter_op": tf.config.threading.get_inter_op_parallelism_threads()},
        "seed": args.seed,
        "data": str(args.data),
        "images": {"train": len(train.names), "val": len(val.names), "test": len(test.names)},
        "settings": {
            "source": EXAMPLE,
            "config": {k: (list(v) if isinstance(v, tuple) else v)
                       for k, v in vars(config).items()},
            "input": "RGB, n_channel_in 3 (grey images as 3 equal channels)",
            "normalisation": f"csbdeep normalize {PERCENTILES[0]}-{PERCENTILES[1]} percentiles, "
                             "per image, channels independently (axis (0,1))",
            "labels": "stardist.fill_label_holes on train and val",
            "augmentation": "random YX permutation + flips, x*U(0.6,2)+U(-0.2,0.2), "
                            "+N(0, U(0,0.02))",
            "median_object_size_yx": [float(v) for v in median_size],
            "network_field_of_view_yx": [int(v) for v in field_of_view],
            "prediction": "predict_instances with n_tiles=model._guess_n_tiles(x)",
        },
        "budget_minutes": args.minutes,
        "wall_seconds": {**clock.seconds, "train": round(train_s, 3)},
        "training": {
            "steps": stop.steps,
            "steps_per_epoch": args.steps_per_epoch,
            "epochs_started": stop.epochs_started,
            "epochs_completed_equivalent": round(stop.steps / args.steps_per_epoch, 3),
            "seconds_per_step": round(train_s / max(stop.steps, 1), 3),
            "validations": stop.validations,
            "last_validation_seconds": stop.last_validation_s,
            "stopped_by_budget": stop.stopped_by_budget,
            "over_budget_seconds": round(max(0.0, train_s - budget_s), 3),
            "history": stop.history,
            "weights_used": "weights_best.h5 (lowest val_loss), loaded by StarDist at the end",
        },
        "thresholds": {"optimized": not args.no_optimize_thresholds,
                       "prob": float(model.thresholds.prob),
                       "nms": float(model.thresholds.nms)},
        "test_objects": {"total": sum(objects.values()), "per_image": objects},
    }
    common.write_run(args.out, record)
    print(f"stardist: {stop.steps} steps in {train_s:.0f} s "
          f"({train_s / max(stop.steps, 1):.2f} s/step), thresholds "
          f"prob {model.thresholds.prob:.3f} nms {model.thresholds.nms:.2f}, "
          f"{len(objects)} test images -> {labels_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
