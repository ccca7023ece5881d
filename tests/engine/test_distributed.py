"""Distributed training on the CPU (gloo) under torchrun: two processes match one process
with the same global batch, rank 0 alone writes, validation is exact, a crashed worker
group restarts and continues, and a data error stops every rank."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

import unetzoo
from tests.engine.processes import finish, free_port, torchrun
from tests.engine.test_fault_tolerance import flags, losses, weights
from tests.helpers import write_pairs
from unetzoo.engine.distributed import ShardSampler
from unetzoo.engine.inference.predictor import InferenceOptions
from unetzoo.runtime import Runtime

# BatchNorm statistics would differ per rank (SyncBatchNorm is CUDA-only): group norm is
# per-sample. BCE is a per-pixel mean, so the mean of the ranks' losses is the global
# batch's loss. SGD keeps float rounding differences as small as they are (Adam's first
# steps follow the sign of near-zero gradients and would amplify them), and a learning rate
# low enough not to: at lr 0.05 this tiny net is chaotic, and a 1e-8 change of its initial
# weights, like the all-reduce's rounding, grows to 6e-5 within 12 steps.
OPTIONS = {"model": "unet", "preset": "tiny", "model_args": "norm=group", "loss": "bce",
           "optimizer": "sgd", "lr": 0.01, "img_size": 32, "epoch": 2, "seed": 3,
           "precision": "fp32", "device": "cpu", "workers": 0, "progress": False}
PER_PROCESS_BATCH = 2
TOLERANCE = 1e-6  # on weights of magnitude ~1; measured: 3e-8 after 12 steps


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> tuple[Path, unetzoo.engine.training.setup.TrainResult]:
    """30 images (24 train, 3 val, 3 test) and one process trained with the global batch."""
    root = tmp_path_factory.mktemp("single")
    data = write_pairs(root / "data", count=30, size=40)
    options = {**OPTIONS, "model_args": {"norm": "group"}}
    result = unetzoo.train(dataset=str(data), out=str(root / "run"), threads=1,
                           batch=2 * PER_PROCESS_BATCH, **options)
    return data, result


def train_args(data: Path, run: Path, *extra: object) -> list[object]:
    return ["train", "--dataset", data, "--out", run, "--batch", PER_PROCESS_BATCH,
            *flags(OPTIONS), *extra]


def assert_close_to(run: Path, single_result, history) -> None:
    got, expected = weights(run / "models" / "epoch_last.pt"), weights(
        single_result.last_checkpoint)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=TOLERANCE)
    assert losses(history) == pytest.approx(losses(single_result.history), rel=1e-6)


def test_two_nodes_match_one_process_and_only_rank_0_writes(tmp_path, single):
    data, reference = single
    run, writes = tmp_path / "run", tmp_path / "writes.txt"
    launcher = ["--nnodes", 2, "--nproc-per-node", 1, "--rdzv-backend", "c10d",
                "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "--rdzv-id", "unetzoo-test"]
    nodes = [torchrun(launcher, train_args(data, run), writes=writes) for _ in range(2)]
    results = [finish(node) for node in nodes]
    for code, _, err in results:
        assert code == 0, err
    printed = "".join(out for _, out, _ in results)
    assert printed.count("epoch 2/2") == 1 and "batch 2 x 2 processes" in printed

    history = unetzoo.load_checkpoint(run / "models" / "epoch_last.pt").train_state["history"]
    assert_close_to(run, reference, history)

    written = [line.split(" ", 1) for line in writes.read_text().splitlines()]
    assert {rank for rank, _ in written} == {"0"}
    names = [Path(path).relative_to(run).as_posix() for _, path in written]
    assert names.count("models/epoch_last.pt") == 2  # once per epoch
    assert names.count("metrics.csv") == 2 and names.count("test/metrics.json") == 1

    # validation, sharded 2 + 1 images over the ranks, equals a single-process evaluation
    evaluation = unetzoo.evaluate(run / "models" / "epoch_last.pt", data, run / "split.csv",
                                  split="val", progress=False,
                                  options=InferenceOptions(Runtime.resolve("cpu", "fp32")))
    assert evaluation.summary["images"] == 3
    assert history[-1]["val_dice"] == evaluation.summary["global"]["dice"]
    assert history[-1]["val_dice_per_image"] == evaluation.summary["mean_over_images"]["dice"]


def test_crashed_worker_group_restarts_and_continues(tmp_path, single):
    data, reference = single
    run = tmp_path / "run"
    # 6 steps per epoch; rank 1 dies after step 5, the last checkpoint is step 4
    process = torchrun(["--standalone", "--nproc-per-node", 2, "--max-restarts", 1],
                       train_args(data, run, "--resume", "auto", "--checkpoint-every", 2),
                       crash="1:5")
    code, _, err = finish(process)
    assert code == 0, err
    log = (run / "train.log").read_text()
    assert "resuming in epoch 1 after step 4" in log
    history = unetzoo.load_checkpoint(run / "models" / "epoch_last.pt").train_state["history"]
    assert [row["epoch"] for row in history] == [1, 2]
    assert_close_to(run, reference, history)


def test_data_error_stops_every_rank(tmp_path):
    data = write_pairs(tmp_path / "data", count=6, size=32)
    (data / "masks" / "img_002.png").unlink()
    installed = shutil.which("unetzoo")
    program = ["--no-python", installed] if installed else ["-m", "unetzoo"]
    process = torchrun(["--standalone", "--nproc-per-node", 2],
                       train_args(data, tmp_path / "run"), program=program)
    code, _, err = finish(process, timeout=60)
    assert code != 0
    assert "img_002.png: image has no mask" in err
    assert "stopped because rank 0 failed" in err
    assert not (tmp_path / "run").exists()


def test_shards_of_all_ranks_make_the_global_batches() -> None:
    one = list(ShardSampler(10, batch=4, steps=3, seed=1, epoch=2))
    shards = [list(ShardSampler(10, batch=2, steps=3, seed=1, epoch=2, rank=r,
                                world_size=2)) for r in range(2)]
    merged = [i for step in range(3) for shard in shards for i in shard[2 * step: 2 * step + 2]]
    assert merged == one
    assert list(ShardSampler(10, batch=4, steps=3, seed=1, epoch=2, start=2)) == one[8:]
    assert one != list(ShardSampler(10, batch=4, steps=3, seed=1, epoch=3))


def test_ranks_agree_on_when_a_time_budget_ends(tmp_path, single):
    """Each rank measures its own step times; they must still stop after the same step
    and validate at the same epochs, or the collectives would hang."""
    data, _ = single
    run = tmp_path / "run"
    launcher = ["--nnodes", 1, "--nproc-per-node", 2, "--rdzv-backend", "c10d",
                "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "--rdzv-id", "unetzoo-budget"]
    options = {k: v for k, v in OPTIONS.items() if k != "epoch"}  # the budget decides
    node = torchrun(launcher, ["train", "--dataset", data, "--out", run, "--batch",
                               PER_PROCESS_BATCH, *flags(options), "--time-budget", 0.15,
                               "--threads", 1])
    code, out, err = finish(node)
    assert code == 0, err
    assert out.count("stopped by the budget") == 1 and "x 2 processes" in out
    state = unetzoo.load_checkpoint(run / "models" / "epoch_last.pt").train_state
    assert state["budget"]["steps"] == state["step"] > 0
