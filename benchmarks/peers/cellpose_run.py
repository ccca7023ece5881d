"""Cellpose 3 trained from scratch under a wall-clock budget: a yardstick for unetzoo's
instance task (issue 21).

Cellpose 3.1.x (its residual U-Net trains on a CPU; Cellpose 4's SAM encoder does not
reasonably). The settings are those of its documented from-scratch training,
`python -m cellpose --train --dir DIR --pretrained_model None` (docs/train.rst), i.e. the
command line's defaults handed to `cellpose.train.train_seg`: a network with random weights,
2 input channels, objects rescaled to a mean diameter of 30 px during training (--diam_mean),
channels [0, 0] (grayscale: RGB averaged, second channel empty), per-image percentile
normalisation (1-99), SGD with momentum 0.9, learning rate 0.2, weight decay 1e-5, batch 8,
224 x 224 crops with train_seg's random rotation / flip / scale augmentation, images with
fewer than 5 objects left out. One change: the network runs without MKL-DNN (CellposeModel's
CPU default) unless --mkldnn, as that path trains slower here (README).

The budget. One pass over the 526 usable training images is 66 steps, and one step (batch 8,
224 x 224) takes ~15-20 s on 2 CPU threads: an epoch is ~16 minutes, so "measure one epoch,
then choose n_epochs" cannot work in 30 minutes, and train_seg's schedule (learning rate
linearly up from 0 over the first 10 epochs) would leave the whole first epoch at rate 0. So
the epoch is made short with train_seg's own `nimg_per_epoch` (the command line's
--nimg_per_epoch): `--steps-per-epoch` steps of 8 images drawn at random (default 1), and
n_epochs is chosen to fill the budget: the clock starts, the flow targets are computed
(dynamics.labels_to_flows, as train_seg would), a training step of a copy of the network is
timed (after one warm-up step), and n_epochs = the steps that fit in what is left. train_seg
then runs its own schedule over those epochs (warm-up over 10, then constant, halved 10 times
over the last 50 when n_epochs > 100, or the last 100 when > 300). A forward pre-hook on the
network (a torch hook, not a Cellpose option) still ends training before a step that would not
finish inside `--minutes`, should the estimate be short; the weights of the last completed step
are saved. The val split is not used by default: Cellpose selects no weights by validation (its
test loss is only logged) and the documented from-scratch command has no --test_dir;
`--val-loss` logs it on 8 val images at epochs 0, 5, 10, 20, ... (its time is budgeted).

Evaluation follows the docs for a user-trained model: the saved model is loaded with
`models.CellposeModel(pretrained_model=PATH)` and run with diameter=None, so every test image
is rescaled by diam_mean / diam_labels (the mean object diameter of the training labels,
saved with the weights); no size model is trained (`--train_size` is not part of the
documented from-scratch command). The test labels are never read.

    /work/peers/cellpose-venv/bin/python benchmarks/peers/cellpose_run.py \
        --data ../shared/data/dsb2018 --out /tmp/peers/cellpose --minutes 30 --threads 2
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

DOCS = "https://cellpose.readthedocs.io/en/v3.1.1.1/train.html"
# the command line's defaults (cellpose/cli.py) for `--train --pretrained_model None`
CLI_DEFAULTS: dict[str, Any] = {
    "learning_rate": 0.2, "weight_decay": 1e-5, "SGD": True, "batch_size": 8,
    "min_train_masks": 5, "channels": [0, 0], "normalize": True, "save_every": 100,
}
CHANNEL_AXIS = 2  # our images are H x W x 3


class BudgetSpent(Exception):
    """Raised from the network's forward pre-hook when the budget has no room for a step."""


class BudgetHook:
    """A forward pre-hook on the network: counts training steps (forward calls in training
    mode) and raises `BudgetSpent` before any forward call, training or validation, once
    less than one mean training step is left of `budget_s` seconds since `started`
    (time.monotonic)."""

    def __init__(self, budget_s: float, started: float) -> None:
        self.budget_s, self.started = budget_s, started
        self.steps = 0
        self.first_step_at: float | None = None
        self.last_step_at: float | None = None
        self.stopped_by_budget = False

    def mean_step_s(self) -> float:
        """Mean seconds between training steps (validation passes included), 0 before two."""
        if self.first_step_at is None or self.last_step_at is None or self.steps < 2:
            return 0.0
        return (self.last_step_at - self.first_step_at) / (self.steps - 1)

    def __call__(self, module: Any, inputs: Any) -> None:
        now = time.monotonic()
        if now - self.started + self.mean_step_s() >= self.budget_s:
            self.stopped_by_budget = True
            raise BudgetSpent
        if module.training:
            self.first_step_at = self.first_step_at or now
            self.last_step_at = now
            self.steps += 1


class TrainLog(logging.Handler):
    """Keeps train_seg's loss lines and the wall time (time.time) of its first line after
    its data preparation (">>> n_epochs=...")."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.epochs_begin: float | None = None
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if text.startswith(">>> n_epochs=") and self.epochs_begin is None:
            self.epochs_begin = record.created
        if "train_loss=" in text:
            self.lines.append(text)


def time_steps(net: Any, batch: int, bsize: int, steps: int = 2) -> float:
    """Seconds per training step of a copy of `net` (forward, a loss, backward, SGD step on
    a random batch x 2 x bsize x bsize input), the mean of all steps after the first (which
    warms up).

    Raises:
        ValueError: for fewer than 2 steps.
    """
    import copy

    import torch

    if steps < 2:
        raise ValueError(f"time_steps needs at least 2 steps, got {steps}")
    probe = copy.deepcopy(net)
    probe.train()
    optimizer = torch.optim.SGD(probe.parameters(), lr=0.0, momentum=0.9)
    x = torch.rand(batch, 2, bsize, bsize)
    seconds = []
    for _ in range(steps):
        began = time.perf_counter()
        loss = probe(x)[0].square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seconds.append(time.perf_counter() - began)
    return sum(seconds[1:]) / (steps - 1)


def count_objects(label: Any) -> int:
    """Number of distinct nonzero ids in a label image."""
    import numpy as np

    ids = np.unique(label)
    return int(len(ids) - (1 if ids[0] == 0 else 0))


def main(argv: list[str] | None = None) -> int:
    """Train for the budget, then predict the test split; write labels + run.json.

    Raises:
        FileExistsError: when `--out/labels` already holds PNG files.
        RuntimeError: when the flows and the step timing leave no room for one step.
    """
    args = common.parse_args(
        "Cellpose 3 from scratch under a wall-clock budget (issue 21 yardstick)", argv,
        extra=[(("--steps-per-epoch",), dict(type=int, default=1,
                                             help="steps of 8 random images per train_seg "
                                                  "epoch (nimg_per_epoch = 8 x this)")),
               (("--diam-mean",), dict(type=float, default=30.0,
                                       help="diameter objects are rescaled to in training "
                                            "(command-line default 30; the nuclei model used 17)")),
               (("--mkldnn",), dict(action="store_true",
                                    help="the MKL-DNN path CellposeModel takes by default on a "
                                         "CPU (slower to train here: see README)")),
               (("--val-loss",), dict(action="store_true",
                                      help="log the loss on 8 val images at epochs 0, 5, 10, "
                                           "20, ... (not used to select weights)"))])
    env = common.limit_threads(args.threads)
    labels_dir = args.out / "labels"
    if labels_dir.is_dir() and any(labels_dir.glob("*.png")):
        raise FileExistsError(f"{labels_dir} already holds label files: "
                              "give a new --out or remove that folder")

    import cv2
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    cv2.setNumThreads(args.threads)
    import cellpose
    from cellpose import dynamics, models, train

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    train_log = TrainLog()
    logging.getLogger("cellpose.train").addHandler(train_log)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)  # the network's initial weights
    clock = common.Clock()
    rows = common.read_split_rows(args.data)
    batch, bsize = CLI_DEFAULTS["batch_size"], 224

    with clock.section("load_train_val"):
        trainset = common.load_split(args.data, rows["train"], with_labels=True)
        valset = common.load_split(args.data, rows["val"], with_labels=True) \
            if args.val_loss else common.Split()
    kept = sum(count_objects(y) >= CLI_DEFAULTS["min_train_masks"] for y in trainset.labels)

    model = models.CellposeModel(gpu=False, pretrained_model=False, model_type=None,
                                 diam_mean=args.diam_mean, nchan=2, mkldnn=args.mkldnn)
    model_name = "cellpose_from_scratch"
    model_path = args.out / "models" / model_name
    model_path.parent.mkdir(parents=True, exist_ok=True)

    budget_s = args.minutes * 60.0
    started = time.monotonic()
    with clock.section("train"):
        with clock.section("flows"):  # what train_seg computes first, done here once
            train_flows = dynamics.labels_to_flows(trainset.labels, device=model.device)
            val_flows = dynamics.labels_to_flows(valset.labels, device=model.device) \
                if args.val_loss else None
        with clock.section("time_steps"):
            step_s = time_steps(model.net, batch, bsize)
        # train_seg's own preparation (diameters, normalising every image: ~5 s here) and
        # the augmentation and loss around each step (a few %): kept back
        left = budget_s - (time.monotonic() - started) - 10.0
        per_epoch_s = args.steps_per_epoch * step_s * 1.08
        n_epochs = int(left // per_epoch_s)
        if args.val_loss and n_epochs > 0:  # one forward batch at epochs 0, 5, 10, 20, ...
            logs = 2 + n_epochs // 10
            n_epochs = int((left - logs * step_s / 3) // per_epoch_s)
        if n_epochs < 1:
            raise RuntimeError(f"{args.minutes} min leave no room for a training step "
                               f"({step_s:.1f} s per step, {time.monotonic() - started:.0f} s "
                               "spent on flows and step timing)")
        hook = BudgetHook(budget_s, started)
        handle = model.net.register_forward_pre_hook(hook)
        finished = True
        seg_called = time.time()
        try:
            train.train_seg(model.net, train_data=trainset.images, train_labels=train_flows,
                            test_data=valset.images or None, test_labels=val_flows,
                            channel_axis=CHANNEL_AXIS, n_epochs=n_epochs,
                            nimg_per_epoch=args.steps_per_epoch * batch,
                            nimg_test_per_epoch=batch if args.val_loss else None,
                            save_path=str(args.out), model_name=model_name, **CLI_DEFAULTS)
        except BudgetSpent:
            finished = False
            model.net.save_model(str(model_path))  # the last completed step's weights
        handle.remove()
    train_s = time.monotonic() - started
    preparation_s = train_log.epochs_begin - seg_called if train_log.epochs_begin else None

    # evaluation as the docs give it for a user-trained model
    trained = models.CellposeModel(gpu=False, pretrained_model=str(model_path), nchan=2,
                                   mkldnn=args.mkldnn)
    with clock.section("load_test"):
        testset = common.load_split(args.data, rows["test"], with_labels=False)
    objects: dict[str, int] = {}
    with clock.section("predict"):
        for name, image in zip(testset.names, testset.images, strict=True):
            masks = trained.eval(image, channels=CLI_DEFAULTS["channels"],
                                 channel_axis=CHANNEL_AXIS, diameter=None)[0]
            common.write_label(labels_dir, name, masks)
            objects[name] = count_objects(masks)

    record = {
        "peer": "cellpose",
        "versions": {"cellpose": cellpose.version, "torch": torch.__version__,
                     "numpy": np.__version__, "opencv": cv2.__version__},
        "machine": common.machine(),
        "threads": {"requested": args.threads, "environment": env,
                    "torch_threads": torch.get_num_threads(),
                    "torch_interop_threads": torch.get_num_interop_threads(),
                    "opencv_threads": cv2.getNumThreads()},
        "seed": args.seed,
        "data": str(args.data),
        "images": {"train": len(trainset.names), "train_used": kept,
                   "val": len(valset.names), "test": len(testset.names)},
        "settings": {
            "source": DOCS + " (from scratch: --pretrained_model None; cellpose/cli.py "
                             "defaults)",
            "train_seg": {**CLI_DEFAULTS, "n_epochs": n_epochs,
                          "nimg_per_epoch": args.steps_per_epoch * batch,
                          "nimg_test_per_epoch": batch if args.val_loss else None,
                          "bsize": bsize, "rescale": True, "scale_range": 0.5,
                          "momentum": 0.9, "channel_axis": CHANNEL_AXIS},
            "network": {"nchan": 2, "nbase": [2, 32, 64, 128, 256], "diam_mean": args.diam_mean,
                        "mkldnn": bool(model.mkldnn), "pretrained": False},
            "input": "RGB averaged to grey (channels [0,0]), second channel zeros",
            "evaluation": {"diameter": None, "rescale": "diam_mean / diam_labels",
                           "diam_labels": float(trained.diam_labels),
                           "flow_threshold": 0.4, "cellprob_threshold": 0.0,
                           "min_size": 15},
        },
        "budget_minutes": args.minutes,
        "wall_seconds": {**clock.seconds, "train": round(train_s, 3),
                         "train_seg_preparation": (round(preparation_s, 3)
                                                   if preparation_s is not None else None)},
        "training": {
            "probe_seconds_per_step": round(step_s, 3),
            "planned_steps": n_epochs * args.steps_per_epoch,
            "steps": hook.steps,
            "steps_per_epoch": args.steps_per_epoch,
            "epochs_planned": n_epochs,
            "full_passes_equivalent": round(hook.steps * batch / max(kept, 1), 3),
            "seconds_per_step": round(hook.mean_step_s(), 3),
            "stopped_by_budget": hook.stopped_by_budget,
            "finished_all_epochs": finished,
            "over_budget_seconds": round(max(0.0, train_s - budget_s), 3),
            "log": train_log.lines,
        },
        "test_objects": {"total": sum(objects.values()), "per_image": objects},
    }
    common.write_run(args.out, record)
    print(f"cellpose: {hook.steps}/{n_epochs * args.steps_per_epoch} planned steps in "
          f"{train_s:.0f} s ({hook.mean_step_s():.1f} s/step, probe {step_s:.1f}), "
          f"flows {clock.seconds['flows']:.0f} s; {len(objects)} test images -> {labels_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
