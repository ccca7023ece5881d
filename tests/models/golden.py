"""Golden outputs: each registered model's tiny preset must reproduce stored logits.

Weights are set from the parameter *names* (a generator seeded by the CRC-32 of each
state-dict key), not from the order modules are built in, so a refactor that keeps the
network (same keys, shapes and arithmetic) reproduces the stored logits, and one that changes
a key, a shape or the computation fails. Stored per model in `golden/<name>.npz`: the eval-mode
logits and the training-mode outputs (every deep-supervision output) for one fixed input.

A deliberate numerical change regenerates them in its own commit:

    python -m tests.models.golden            # rewrites tests/models/golden/*.npz
"""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import numpy as np
import torch

from unetzoo.models import create_model, list_models

GOLDEN_DIR = Path(__file__).with_name("golden")
INPUT_SHAPE = (2, 3, 17, 21)  # odd sides: the pad-and-crop path is part of what is checked
# float32 on the CPU; a refactor that reorders a sum may move the last bits only.
RTOL, ATOL = 1e-4, 1e-5


def _values(name: str, shape: torch.Size) -> torch.Tensor:
    generator = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    return torch.randn(shape, generator=generator)


@torch.no_grad()
def set_weights_by_name(model: torch.nn.Module) -> torch.nn.Module:
    """Fill every parameter and buffer from its state-dict key (see the module docstring).

    Scales keep activations of order 1: weights N(0, 1 / fan_in), norm scales 1 + N(0, 0.1),
    biases and running means N(0, 0.1), running variances in [0.5, 1.5].
    """
    for key, tensor in model.state_dict().items():
        if not tensor.is_floating_point():
            continue
        noise = _values(key, tensor.shape)
        if key.endswith("running_var"):
            value = 1.0 + 0.5 * torch.tanh(noise)
        elif tensor.dim() > 1:
            value = noise / (tensor[0].numel() ** 0.5)
        elif key.endswith("weight"):
            value = 1.0 + 0.1 * noise
        else:
            value = 0.1 * noise
        tensor.copy_(value)
    return model


def golden_input() -> torch.Tensor:
    return _values("input", torch.Size(INPUT_SHAPE))


@torch.no_grad()
def outputs(name: str) -> dict[str, np.ndarray]:
    """`eval`: eval-mode logits; `train_0`, `train_1`, ...: training-mode outputs in order."""
    torch.manual_seed(0)  # dropout and any other randomness in forward
    model = set_weights_by_name(create_model(name, 3, 1, preset="tiny"))
    x = golden_input()
    result = {"eval": model.eval()(x).numpy()}
    train = model.train()(x)
    for i, out in enumerate(train if isinstance(train, (list, tuple)) else [train]):
        result[f"train_{i}"] = out.numpy()
    return result


def path_of(name: str) -> Path:
    return GOLDEN_DIR / f"{name}.npz"


def write_all() -> list[Path]:
    torch.set_num_threads(1)
    GOLDEN_DIR.mkdir(exist_ok=True)
    written = []
    for name in list_models():
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **outputs(name))
        path_of(name).write_bytes(buffer.getvalue())
        written.append(path_of(name))
    return written


if __name__ == "__main__":
    for path in write_all():
        print(f"{path} ({path.stat().st_size:,} bytes)")
