"""OpenVINO never runs a graph on an input size the graph cannot take.

OpenVINO 2026.4's CPU plugin does not check input sizes when it runs on one thread
(`INFERENCE_NUM_THREADS` 1, or a process allowed one core): a dynamic graph fed a size its
shape inference rejects runs anyway, reading and writing past its buffers, and the corrupted
heap crashes the process later (a segfault in a later `infer`). unetzoo fed one such size
itself, probing whether a graph depends on the input size (`export._traced`); the runner
now refuses every size OpenVINO's own shape inference rejects (`backends.openvino_runner`).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.engine.processes import DEADLINE, child_env
from unetzoo.engine.inference.backends import openvino_runner
from unetzoo.errors import ModelError

ov = pytest.importorskip("openvino")
ops = pytest.importorskip("openvino.opset13")


@pytest.fixture
def one_thread():
    """Runners compile for torch's thread count: one thread, where OpenVINO checks nothing."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _reshape_graph() -> ov.Model:
    """`1 x H x W x 8 -> 1 x 11 x 3 x 11 x 3 x 8`, ReLU: dynamic H x W, but the reshape
    pattern is constant, so only 33 x 33 inputs fit (as in a size-dependent model traced
    with dynamic axes)."""
    x = ops.parameter([1, -1, -1, 8], np.float32, name="x")
    pattern = ops.constant(np.array([1, 11, 3, 11, 3, 8], np.int64))
    return ov.Model([ops.relu(ops.reshape(x, pattern, special_zero=False))], [x], "reshape")


def _fixed_graph() -> ov.Model:
    """`B x 3 x 32 x 32 -> B x 3 x 32 x 32` (x + 1): dynamic batch, fixed size."""
    x = ops.parameter([-1, 3, 32, 32], np.float32, name="x")
    return ov.Model([ops.add(x, ops.constant(np.ones((1, 3, 32, 32), np.float32)))], [x],
                    "fixed")


def test_a_size_the_graph_cannot_take_is_refused_not_run(one_thread) -> None:
    run = openvino_runner(_reshape_graph())
    x = np.random.default_rng(0).standard_normal((1, 33, 33, 8)).astype(np.float32)
    np.testing.assert_array_equal(run(x), np.maximum(x, 0).reshape(1, 11, 3, 11, 3, 8))
    with pytest.raises(ModelError, match="1 x 25 x 25 x 8"):
        run(np.ones((1, 25, 25, 8), np.float32))  # 5000 values for 8712 places
    assert run(x).shape == (1, 11, 3, 11, 3, 8)  # the request still works

    fixed = openvino_runner(_fixed_graph())
    batch = np.zeros((3, 3, 32, 32), np.float32)
    np.testing.assert_array_equal(fixed(batch), batch + 1)  # any batch: the axis is dynamic
    with pytest.raises(ModelError, match="1 x 3 x 40 x 40"):
        fixed(np.zeros((1, 3, 40, 40), np.float32))


ALTERNATE = textwrap.dedent("""
    import sys
    from pathlib import Path

    import torch

    import unetzoo
    from tests.helpers import write_pairs
    from unetzoo.engine.inference.predictor import Predictor

    torch.set_num_threads(1)
    root = Path(sys.argv[1])
    data = write_pairs(root / "data", count=6, size=40)
    for round_ in range(2):
        for name in ("sparse_unet", "unet"):
            run = root / f"{name}-{round_}"
            result = unetzoo.train(dataset=str(data), out=str(run), model=name, preset="tiny",
                                   img_size=32, batch=2, epoch=1, steps_per_epoch=2,
                                   workers=0, progress=False, test=False, device="cpu",
                                   precision="fp32", seed=round_)
            predictor = Predictor.open(result.best_checkpoint)  # the defaults: backend auto
            assert predictor.runtime.backend == "openvino", predictor.runtime
            written = unetzoo.predict(result.best_checkpoint, data / "images",
                                      run / "masks", progress=False)
            assert written.images == 6
    print("alternated", flush=True)
""")


def test_training_and_openvino_inference_alternate_in_one_process(tmp_path: Path) -> None:
    """The user's session: train, predict with the defaults (OpenVINO), train again, with
    a size-dependent model (sparse_unet, exported for one size) and a dynamic one, on one
    thread. Crashed (SIGSEGV) every time before the runner refused sizes; run in a child
    process so that a crash fails this test, not the test session."""
    env = child_env()
    env.pop("UNETZOO_BACKEND", None)
    env["UNETZOO_CACHE_DIR"] = str(tmp_path / "cache")
    done = subprocess.run([sys.executable, "-c", ALTERNATE, str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=DEADLINE * 3)
    assert done.returncode == 0 and "alternated" in done.stdout, \
        f"exit {done.returncode}\n{done.stderr[-3000:]}"
