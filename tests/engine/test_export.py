"""Export to ONNX, OpenVINO and TorchScript, parity checks, and the exported-file backends."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import write_pairs
from unetzoo.artefacts.checkpoint import Checkpoint, save_checkpoint
from unetzoo.data.layouts import find_pairs
from unetzoo.data.split import split_dataset
from unetzoo.data.transforms import Preprocessing
from unetzoo.engine.evaluate import evaluate_checkpoint
from unetzoo.engine.export import exporter, files
from unetzoo.engine.inference import graphs, ov_cache
from unetzoo.engine.inference import opening as models_io
from unetzoo.engine.inference.backends import open_exported
from unetzoo.engine.inference.predict import predict_paths
from unetzoo.engine.inference.predictor import InferenceOptions, Predictor
from unetzoo.errors import CheckpointError, ConfigError, ExportError, RunError
from unetzoo.models import create_model, list_models
from unetzoo.runtime import Runtime

pytest.importorskip("onnxruntime")
SIZE = 32


def tiny_checkpoint(name: str = "unet", num_classes: int = 2) -> tuple[torch.nn.Module,
                                                                       Checkpoint]:
    torch.manual_seed(0)
    model = create_model(name, 3, num_classes, preset="tiny").eval()
    task = "binary" if num_classes == 1 else "multiclass"
    names = ("foreground",) if num_classes == 1 else tuple(f"c{i}" for i in range(num_classes))
    info = Checkpoint(model.unetzoo_spec, task, names,  # type: ignore[arg-type]
                      Preprocessing(3, (0.5,) * 3, (0.25,) * 3, img_size=SIZE),
                      model.state_dict())
    return model, info


def eager(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize("name", list_models())
def test_every_model_exports_to_onnx_and_runs_in_onnxruntime(name: str, tmp_path: Path
                                                            ) -> None:
    model, info = tiny_checkpoint(name)
    result = files.export_model(model, info, "onnx", tmp_path / "m.onnx")
    assert result.max_abs_diff <= graphs.TOLERANCE
    opened = open_exported(result.path)
    assert opened.backend == "onnxruntime" and opened.checkpoint.task == "multiclass"
    # sparse attention fixes its region layout to the size: exported for SIZE only
    assert (result.input_size is not None) == (name == "sparse_unet")
    size = (SIZE, SIZE) if result.input_size else (27, 45)
    x = torch.randn(3, 3, *size)
    torch.testing.assert_close(opened.module(x), eager(model, x), atol=1e-4, rtol=0)


def test_openvino_and_torchscript_exports_carry_their_metadata(tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    model, info = tiny_checkpoint(num_classes=1)
    x = torch.randn(2, 3, 40, 23)
    for fmt, name in (("openvino", "m.xml"), ("torchscript", "m.torchscript")):
        result = files.export_model(model, info, fmt, tmp_path / name)
        opened = open_exported(result.path)
        assert opened.checkpoint.model_spec == info.model_spec
        assert opened.checkpoint.preprocessing == info.preprocessing
        torch.testing.assert_close(opened.module(x), eager(model, x), atol=1e-4, rtol=0)
    assert (tmp_path / "m.bin").is_file()
    bf16 = open_exported(tmp_path / "m.xml", precision="bf16").module(x)
    assert ((bf16 > 0) == (eager(model, x) > 0)).float().mean() > 0.95


def test_a_failed_parity_check_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    model, info = tiny_checkpoint()
    monkeypatch.setattr(graphs, "TOLERANCE", -1.0)
    with caplog.at_level(logging.INFO, logger="unetzoo"), \
            pytest.raises(ExportError, match="differs from eager PyTorch"):
        files.export_model(model, info, "onnx", tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())
    # a graph wrong at the export size is refused, not first taken for a size-dependent one
    assert "depends on the input size" not in caplog.text


def test_export_targets_are_checked(tmp_path: Path) -> None:
    model, info = tiny_checkpoint()
    with pytest.raises(ConfigError, match=r"named \*\.onnx"):
        files.export_model(model, info, "onnx", tmp_path / "m.xml")
    with pytest.raises(ConfigError, match="unknown export format"):
        files.export_model(model, info, "tflite", tmp_path / "m.tflite")
    (tmp_path / "m.onnx").write_bytes(b"keep")
    with pytest.raises(RunError, match="--overwrite"):
        files.export_model(model, info, "onnx", tmp_path / "m.onnx")
    assert (tmp_path / "m.onnx").read_bytes() == b"keep"
    with pytest.raises(CheckpointError, match="cannot read exported model"):
        open_exported(tmp_path / "m.onnx")
    files.export_model(model, info, "onnx", tmp_path / "m.onnx", overwrite=True)
    with pytest.raises(ConfigError, match="runs with --backend"):
        open_exported(tmp_path / "m.onnx", backend="torch")


def test_backends_runtime_choices() -> None:
    assert Runtime.resolve("cpu", "auto", backend="onnxruntime").precision == "fp32"
    with pytest.raises(ConfigError, match="float32"):
        Runtime.resolve("cpu", "bf16", backend="onnxruntime")
    with pytest.raises(ConfigError, match="torch options"):
        Runtime.resolve("cpu", "fp32", compile=True, backend="openvino")
    with pytest.raises(ConfigError, match="unknown backend"):
        Runtime.resolve("cpu", backend="tensorrt")
    with pytest.raises(ConfigError, match="threads"):
        Runtime.resolve("cpu", threads=0)


def test_a_predictor_on_onnxruntime_matches_eager() -> None:
    model, info = tiny_checkpoint()
    image = torch.randn(3, 50, 41)
    ort = Runtime.resolve("cpu", "auto", backend="onnxruntime")
    fp32 = Runtime.resolve("cpu", "fp32", channels_last=False)
    got = Predictor(model, info.preprocessing, "multiclass", InferenceOptions(ort)).logits(image)
    expected = Predictor(model, info.preprocessing, "multiclass",
                         InferenceOptions(fp32)).logits(image)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


def test_predict_from_an_exported_file_alone_gives_the_checkpoint_masks(tmp_path: Path
                                                                        ) -> None:
    _, info = tiny_checkpoint(num_classes=1)
    checkpoint = save_checkpoint(tmp_path / "best.pt", info)
    images = write_pairs(tmp_path / "data", count=2, size=70) / "images"
    exported = exporter.export_checkpoint(checkpoint, "onnx", tmp_path / "m.onnx").path
    fp32 = InferenceOptions(Runtime.resolve("cpu", "fp32", channels_last=False))
    ort = InferenceOptions(Runtime.resolve("cpu", "auto", backend="onnxruntime"))
    predict_paths(checkpoint, images, tmp_path / "torch", fp32, progress=False)
    predict_paths(exported, images, tmp_path / "onnx", ort, progress=False)
    predict_paths(checkpoint, images, tmp_path / "onnx_on_the_fly", ort, progress=False)
    outputs = ["onnx", "onnx_on_the_fly"]
    if importlib.util.find_spec("openvino"):
        ov = InferenceOptions(Runtime.resolve("cpu", "fp32", backend="openvino"))
        predict_paths(exported, images, tmp_path / "openvino", ov, progress=False)
        outputs.append("openvino")
    for mask in sorted((tmp_path / "torch").iterdir()):
        expected = np.asarray(Image.open(mask))
        for output in outputs:
            assert np.array_equal(np.asarray(Image.open(tmp_path / output / mask.name)),
                                  expected), output


# -- the fast path: backend auto and the OpenVINO cache -----------------------------------------
@pytest.fixture(autouse=True)
def _backend_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests test backend auto itself (conftest pins it to torch elsewhere)."""
    monkeypatch.delenv("UNETZOO_BACKEND", raising=False)


def _entries(folder: Path) -> list[Path]:
    return sorted(p for p in (folder / ".openvino").iterdir() if not p.name.startswith("."))


def test_auto_converts_a_checkpoint_once_and_reuses_the_checked_entry(tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    model, info = tiny_checkpoint(num_classes=1)
    path = save_checkpoint(tmp_path / "models" / "best.pt", info)
    runtime = Runtime.resolve("cpu", "fp32", backend="auto")
    first = models_io.open_model(path, runtime)
    assert first.runtime.backend == "openvino" and "converted and checked" in first.note
    (entry,) = _entries(path.parent)
    second = models_io.open_model(path, runtime)
    assert "cached conversion" in second.note and _entries(path.parent) == [entry]
    x = torch.randn(2, 3, 41, 30)
    torch.testing.assert_close(second.module(x), eager(model, x), atol=1e-4, rtol=0)
    # another precision is another entry; the torch options ask for torch
    models_io.open_model(path, Runtime.resolve("cpu", "bf16", backend="auto"))
    assert len(_entries(path.parent)) == 2
    forced = models_io.open_model(path, Runtime.resolve("cpu", "bf16", channels_last=True,
                                                        backend="auto"))
    assert forced.runtime.backend == "torch" and "torch options" in forced.note


def test_a_corrupt_or_stale_entry_is_rebuilt_never_used(tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    model, info = tiny_checkpoint(num_classes=1)
    path = save_checkpoint(tmp_path / "best.pt", info)
    runtime = Runtime.resolve("cpu", "fp32", backend="auto")
    models_io.open_model(path, runtime)
    (entry,) = _entries(tmp_path)
    weights = entry / "model.bin"
    weights.write_bytes(weights.read_bytes()[:-8] + bytes(8))  # a flipped tail: other logits
    again = models_io.open_model(path, runtime)
    assert "converted and checked" in again.note
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(again.module(x), eager(model, x), atol=1e-4, rtol=0)
    # training rewrites best.pt: the new content gets a new entry, the old one is removed
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    info.state_dict = model.state_dict()
    save_checkpoint(path, info)
    rewritten = models_io.open_model(path, runtime)
    assert "converted and checked" in rewritten.note
    (newer,) = _entries(tmp_path)
    assert newer != entry
    torch.testing.assert_close(rewritten.module(x), eager(model, x), atol=1e-4, rtol=0)


def test_a_read_only_run_folder_caches_in_the_user_cache(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    pytest.importorskip("openvino")
    _, info = tiny_checkpoint(num_classes=1)
    path = save_checkpoint(tmp_path / "run" / "best.pt", info)
    monkeypatch.setenv("UNETZOO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(ov_cache, "_writable", lambda folder: False)  # root ignores chmod
    opened = models_io.open_model(path, Runtime.resolve("cpu", "fp32", backend="auto"))
    assert str(tmp_path / "cache" / "openvino") in opened.note
    assert not (tmp_path / "run" / ".openvino").exists()


def test_auto_falls_back_to_torch_and_says_why(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    _, info = tiny_checkpoint(num_classes=1)
    path = save_checkpoint(tmp_path / "best.pt", info)
    runtime = Runtime.resolve("cpu", "fp32", channels_last=None, backend="auto")

    def fails(*args, **kwargs):
        raise ExportError("the graph differs")

    monkeypatch.setattr(ov_cache, "trace_openvino", fails)
    opened = models_io.open_model(path, runtime)
    assert opened.runtime.backend == "torch"
    assert "does not convert to OpenVINO (the graph differs)" in opened.note
    with pytest.raises(ExportError):  # asked for explicitly: the error stands
        models_io.open_model(path, Runtime.resolve("cpu", "fp32", backend="openvino"))
    monkeypatch.setattr(models_io.importlib.util, "find_spec", lambda name: None)
    opened = models_io.open_model(path, runtime)
    assert opened.runtime.backend == "torch" and "openvino is not installed" in opened.note


# -- INT8 ------------------------------------------------------------------------------------
def test_int8_export_is_checked_on_the_validation_split(tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("nncf")
    from unetzoo.engine.export.quantize import QuantizationError

    data = write_pairs(tmp_path / "data", count=10, size=40)
    split_dataset(data, train_size=0.6, val_size=0.2, seed=0)
    _, info = tiny_checkpoint(num_classes=1)
    info.config = {"dataset": str(data), "csvfile": "split.csv", "seed": 0}
    checkpoint = save_checkpoint(tmp_path / "run" / "models" / "best.pt", info)
    out = tmp_path / "int8.xml"
    with pytest.raises(QuantizationError, match="--accept-drop"):  # any drop refused
        exporter.export_checkpoint(checkpoint, "openvino", out, int8=True, max_dice_drop=-1,
                                 calibration_images=6)
    assert not out.exists() and not out.with_suffix(".bin").exists()
    result = exporter.export_checkpoint(checkpoint, "openvino", out, int8=True,
                                      max_dice_drop=-1, accept_drop=True,
                                      calibration_images=6)
    report = result.quality
    assert report is not None and report["accepted"] and report["images"] == 2
    assert report["dice_drop"] == pytest.approx(report["float_dice"] - report["int8_dice"])
    opened = open_exported(out, precision=report["int8_precision"])
    assert opened.metadata["int8"]["int8_dice"] == report["int8_dice"]
    # the file evaluates to the Dice its report gives (the same images and precision)
    options = InferenceOptions(Runtime.resolve("cpu", report["int8_precision"],
                                               backend="openvino"))
    evaluated = evaluate_checkpoint(out, data, "split.csv", "val", options=options,
                                    progress=False)
    assert evaluated.summary["global"]["dice"] == report["int8_dice"]
    assert "could not refuse" not in caplog.text  # allowed -1: any drop counts
    with caplog.at_level(logging.WARNING, logger="unetzoo"):  # float Dice <= 1: nothing to lose
        exporter.export_checkpoint(checkpoint, "openvino", out, int8=True, max_dice_drop=1.0,
                                 overwrite=True, calibration_images=6)
    assert "within the allowed drop (1), so this check could not refuse any INT8" in caplog.text
    with pytest.raises(ConfigError, match="--dataset"):
        info.config = {"dataset": str(tmp_path / "gone")}
        exporter.export_checkpoint(save_checkpoint(tmp_path / "other.pt", info), "openvino",
                                 tmp_path / "x.xml", int8=True)


def test_the_parity_check_scales_with_the_logits() -> None:
    """float32 rounding grows with |logit| (a trained DPSAU2-Net gives ~1e5 on noise, and
    eager PyTorch on 1 and 2 threads differs by 0.2 there): the bound is relative to
    max(1, max |logit|), so such a graph passes while an error on unit logits is caught."""
    model, _ = tiny_checkpoint(num_classes=1)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    logits = eager(graphs.Exportable(model).eval(), x).numpy()
    scale = 1e5 / float(np.abs(logits).max())
    with torch.no_grad():  # logits ~ 1e5: the head's weights and bias scaled
        head = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
        head.weight.mul_(scale)
        head.bias.mul_(scale)
    big = eager(graphs.Exportable(model).eval(), x).numpy()
    assert 0.5e5 < np.abs(big).max() < 2e5
    parity = graphs._parity(lambda a: big + 0.5, model, x)
    assert parity.difference == pytest.approx(0.5 / np.abs(big).max(), rel=1e-3)  # 5e-6
    assert parity.disagreement == 0.0 and parity.ok  # rounding at this scale: accepted
    small, _ = tiny_checkpoint(num_classes=1)
    unit = eager(graphs.Exportable(small).eval(), x).numpy()
    assert np.abs(unit).max() < 1.0
    assert graphs._parity(lambda a: unit + 0.01, small, x).difference == pytest.approx(
        0.01, rel=1e-3)
    # within the relative bound, but a row of small logits beside huge ones changes label
    logits = np.full((1, 1, 32, 32), -1e5, np.float32)
    logits[..., 0, :] = 1.0  # the first row: foreground, barely
    wrong = logits.copy()
    wrong[..., 0, :] = -1.0

    class Fixed(torch.nn.Module):
        def forward(self, a: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(logits)

    parity = graphs._parity(lambda a: wrong, Fixed(), x)
    assert parity.difference == pytest.approx(2e-5) and parity.difference <= graphs.TOLERANCE
    assert parity.disagreement == pytest.approx(32 / 1024) and not parity.ok
    assert graphs._parity(lambda a: logits, Fixed(), x).ok


def test_int8_leaves_the_attention_gates_products_in_float(tmp_path: Path) -> None:
    """Quantising `x * alpha` of the gates cost a trained Attention U-Net 0.18 Dice: the
    products' inputs get no FakeQuantize, while the convolutions' inputs do."""
    pytest.importorskip("nncf")
    from unetzoo.engine.export.quantize import CalibrationTiles, quantize_graph

    data = write_pairs(tmp_path / "data", count=4, size=32)
    model, info = tiny_checkpoint("attention_unet", num_classes=1)
    graph, _, _ = graphs.trace_openvino(model, (32, 32))
    pairs = find_pairs(data)
    quantised = quantize_graph(graph, CalibrationTiles(pairs, info, 4))

    def inputs(op: object) -> list[str]:
        return [i.get_source_output().get_node().get_type_name() for i in op.inputs()]

    ops = quantised.get_ordered_ops()
    products = [op for op in ops if op.get_type_name() == "Multiply"]
    convolutions = [op for op in ops if op.get_type_name() == "Convolution"]
    assert len(products) >= 4  # one gate per skip connection of the tiny preset
    assert not any("FakeQuantize" in inputs(op) for op in products)
    assert sum("FakeQuantize" in inputs(op) for op in convolutions) >= len(convolutions) // 2


class _Inputs(torch.nn.Module):
    """A stand-in model that keeps every input it is given and returns zeros."""

    num_classes = 1

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen += [t.clone() for t in x]
        return x.new_zeros(x.shape[0], 1, *x.shape[2:])


@pytest.mark.parametrize(("normalization", "resize_mode"), [
    ("image", "crop"), ("percentile", "crop"), ("dataset", "crop"), ("image", "resize")])
def test_int8_calibration_tiles_are_the_predictors_tile_inputs(
        tmp_path: Path, normalization: str, resize_mode: str) -> None:
    """Calibration fits INT8 ranges to what the model sees: each tile must be one of the
    inputs the predictor gives the model for that image (normalised as the whole image,
    then tiled), not a crop normalised by its own statistics."""
    from unetzoo.data.io import read_image
    from unetzoo.engine.export.quantize import CalibrationTiles

    data = write_pairs(tmp_path / "data", count=3, size=72)  # 72 px: 3 x 3 tiles of 32
    pairs = find_pairs(data)
    _, info = tiny_checkpoint(num_classes=1)
    pre = Preprocessing(3, (0.3,) * 3, (0.2,) * 3, SIZE, resize_mode, normalization)
    info.preprocessing = pre
    tiles = list(CalibrationTiles(pairs, info, 6))  # each image twice, another tile
    assert len(tiles) == 6
    for i, tile in enumerate(tiles):
        model = _Inputs()
        predictor = Predictor(model, pre, "binary", InferenceOptions(
            Runtime.resolve("cpu", "fp32", backend="torch"), batch_size=16))
        predictor.logits(read_image(pairs[i % 3].image, 3))
        size = (SIZE, SIZE) if resize_mode == "resize" else tile.shape[-2:]
        assert tile.shape == (1, 3, *size) and tile.dtype == np.float32
        assert any(torch.equal(torch.from_numpy(tile[0]), seen) for seen in model.seen), i
    if resize_mode == "crop":
        assert len(model.seen) == 9  # tiles of the sliding window: one of them was taken
    fixed = next(iter(CalibrationTiles(pairs, info, 1, fixed=(48, 40))))  # a fixed graph
    assert fixed.shape == (1, 3, 48, 40)
